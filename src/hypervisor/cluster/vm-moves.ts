// Moving a VM to another host of the cluster (`tsvm move VM --host H`, docs/cluster.md "Moving VMs"): a VM
// at rest (TERMINATED or SUSPENDED) goes as its export file and is taken over by the target at the record's
// revision; a RUNNING one goes live when its engine can (live-moves.ts: its guest pauses only for the
// stream's last part), else it is suspended first, sent with its saved state, and resumed there
// (stop-and-copy: its guest does not run meanwhile, and that time is the move's downtime). Until the target owns the
// record the VM stays the source's: any failure before leaves it where it was (a RUNNING one resumed).

import { HypervisorError } from "../hypervisor-error.ts";
import type { VmStatus } from "../lifecycle.ts";
import type { Operation } from "../operations.ts";
import type { SuspendFigures } from "../vmm-protocol.ts";
import { type LiveMovingVm, moveLive } from "./live-moves.ts";
import type { MoveTransport } from "./move-transport.ts";

/** What a move asks of the Hypervisor about the VM it moves (run on the VM's queue). */
export interface MovingVm {
  readonly name: string;
  /** On the cluster's shared storage: nothing is copied, the target takes its files where they are. */
  readonly shared: boolean;
  status(): VmStatus;
  /** The record's revision as this host last saw it. */
  revision(): Promise<number>;
  /**
   * RUNNING → SUSPENDED: CPU and memory into the saved state (RAM first in rounds while the guest runs);
   * the VMM's figures, when it gave them.
   */
  suspend(): Promise<SuspendFigures | undefined>;
  /** SUSPENDED → RUNNING again on this host, after a failed move of a RUNNING VM. */
  resumeHere(why: string): Promise<void>;
  /** The VM's export file (definition, disk, saved state, snapshots). */
  archive(): Promise<{ readonly bytes: number; readonly stream: AsyncIterable<Buffer> }>;
  /** The VM is the target's now: this host lets go of it (its files go, its record stays). */
  forget(to: string): Promise<void>;
  /** A RUNNING VM's live move (live-moves.ts); absent: it always goes the stop-and-copy way. */
  readonly live?: LiveMovingVm;
}

export class VmMoves {
  /** VMs with a move in flight (a second move of one is refused at once). */
  private readonly moving = new Set<string>();

  constructor(private readonly transport: MoveTransport | undefined) {}

  /** Whether a move of `name` is in flight. */
  isMoving(name: string): boolean {
    return this.moving.has(name);
  }

  /**
   * Checks a move of `name` to `target` (or, when undefined, to the other host the scheduler picks) before
   * it is queued, and reserves the VM for it: this host is in a cluster, the target is another host, UP,
   * with room; no other move of the VM is in flight. Resolves with the target's name. Call `end` when the
   * move is over (or was not queued).
   */
  async begin(
    name: string,
    target: string | undefined,
    need: { readonly cpus: number; readonly memoryMiB: number },
  ): Promise<string> {
    const transport = this.transport;
    if (!transport)
      throw new HypervisorError(
        "invalid-argument",
        "this daemon is not in a cluster: a VM moves only between the hosts of one (docs/cluster.md)",
      );
    if (target === transport.host)
      throw new HypervisorError("invalid-argument", `the VM '${name}' is already on host '${target}'`);
    if (this.moving.has(name))
      throw new HypervisorError(
        "move-in-progress",
        `the VM '${name}' is being moved already; wait for that move`,
      );
    this.moving.add(name);
    try {
      return await transport.chooseTarget(need, target);
    } catch (e) {
      this.moving.delete(name);
      throw e;
    }
  }

  end(name: string): void {
    this.moving.delete(name);
  }

  /** The move itself, as the operation `op` on the VM's queue (after begin()). */
  async run(op: Operation, vm: MovingVm, target: string): Promise<void> {
    const transport = this.transport!;
    const started = Date.now();
    const wasRunning = vm.status() === "RUNNING";
    let coldWhy: string | undefined;
    if (wasRunning && vm.live) {
      const live = await moveLive(
        op,
        { ...vm.live, name: vm.name, revision: () => vm.revision(), forget: (to) => vm.forget(to) },
        target,
        transport,
      );
      if (live.moved) {
        await vm.forget(target);
        const ended = Date.now();
        const { figures } = live;
        op.migration = {
          from: transport.host,
          to: target,
          totalMs: ended - started,
          downtimeMs: Math.round(figures.pausedMs),
          rounds: figures.rounds,
          bytes: live.bytes,
        };
        op.statusMessage =
          `moved live to host '${target}' in ${seconds(ended - started)}, ${live.bytes} bytes sent, ` +
          `${figures.rounds} rounds of RAM while the guest ran, guest paused ${Math.round(figures.pausedMs)} ms`;
        return;
      }
      coldWhy = live.why;
    }
    let downSince: number | undefined;
    let suspendMs = 0;
    let rounds = 0;
    if (wasRunning) {
      const asked = Date.now();
      const figures = await vm.suspend();
      // The guest ran on while its RAM was written in rounds: it stopped only after them.
      downSince = asked + Math.min(figures?.runningMs ?? 0, Date.now() - asked);
      suspendMs = Date.now() - downSince;
      rounds = figures?.rounds ?? 0;
    }
    op.progress = 20;
    const archive = await vm.archive();
    let sent = 0;
    const counted = (async function* () {
      for await (const chunk of archive.stream) {
        sent += chunk.length;
        op.progress = 20 + Math.floor((70 * sent) / Math.max(1, archive.bytes));
        yield chunk;
      }
    })();
    try {
      const answer = await transport.send(
        target,
        {
          name: vm.name,
          revision: await vm.revision(),
          from: transport.host,
          resume: wasRunning,
          ...(vm.shared ? { shared: true } : {}),
        },
        { bytes: archive.bytes, stream: counted },
      );
      // The guest runs on the target once it answered: letting go of the files here is not downtime.
      const answered = Date.now();
      await vm.forget(target);
      const ended = Date.now();
      op.migration = {
        from: transport.host,
        to: target,
        totalMs: ended - started,
        downtimeMs: downSince === undefined ? 0 : answered - downSince,
        rounds,
        bytes: sent,
      };
      op.statusMessage =
        `moved to host '${target}' in ${seconds(ended - started)}, ${sent} bytes sent` +
        (wasRunning
          ? answer.resumed
            ? `, guest stopped for ${seconds(answered - downSince!)} (suspend ${seconds(suspendMs)}, ` +
              `send and verify ${seconds(answered - downSince! - suspendMs - answer.resumeMs)}, resume ${seconds(answer.resumeMs)})`
            : `; resuming it there failed (${answer.resumeError}): it is SUSPENDED on '${target}'`
          : "") +
        (coldWhy ? `; not moved live: ${coldWhy}` : "");
    } catch (e) {
      // A failure after the target took the record over (its answer lost) must not run the VM here too.
      if (await this.ownedElsewhere(vm.name)) {
        await vm.forget(target);
        throw new HypervisorError(
          "move-failed",
          `${(e as Error).message}; but host '${target}' took the VM over, so it is there now`,
        );
      }
      if (wasRunning)
        await vm.resumeHere(`move to '${target}' failed`).catch((r: Error) => {
          throw new HypervisorError(
            "move-failed",
            `${(e as Error).message}; resuming it on this host failed too (${r.message}): it is SUSPENDED here`,
          );
        });
      throw e;
    }
  }

  private async ownedElsewhere(name: string): Promise<boolean> {
    const owner = await this.transport!.ownerOf(name).catch(() => undefined);
    return owner !== undefined && owner !== this.transport!.host;
  }
}

function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)} s`;
}
