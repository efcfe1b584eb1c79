// Moving a RUNNING VM to another host while it runs (docs/cluster.md "Moving a running VM"): the daemons
// drive the VMM-to-VMM live migration stream (migration-stream.ts).
//
//   source daemon                       target daemon                        target VMM
//   live move's file (definition,  →    verifies it, checks name and room,
//   disk nodes, snapshots; not the      puts the files in place (not the
//   active disk) over the cluster       record), launches a gated VMM   →    listens
//   API                            ←    {port, ticket}
//   source VMM: RAM in rounds while the guest runs, pause, flush, the active disk (DISK frames), the last
//   pages, the state, END                                              →    verifies END's digest, puts the
//                                                                           disk in place, tells its daemon
//                                       takes the record over at the   ←
//                                       source's revision, says run    →    restores, runs, answers
//   source VMM exits "migrated", the source lets go of the VM's files  ←    "running"
//
// A VM never runs on two hosts: the target's guest runs only after its daemon took the record over, and a
// source whose stream went whole but heard no answer keeps its guest paused until it knows the owner — it
// runs it again only after rewriting the record at the revision it saw (fence), which makes any later
// takeover fail. Anything failing before the takeover leaves the guest running on the source and nothing
// on the target.

import { randomBytes } from "node:crypto";
import { HypervisorError } from "../hypervisor-error.ts";
import type { Operation } from "../operations.ts";
import type { VmPaths } from "../store.ts";
import type { VmRecord } from "../vm-record.ts";
import type { LaunchOptions, VmmHandle } from "../vmm.ts";
import type { MigrationFigures, VmmMigrateParams } from "../vmm-protocol.ts";
import type { LiveMoveAnswer, LiveMoveOffer, MoveTransport } from "./move-transport.ts";

/** How long the target VMM waits for the source's stream before it gives up (and the target cleans up). */
const LIVE_WAIT_MS = 60_000;
/** How long a source with an unconfirmed stream keeps asking etcd who owns the VM before it gives up. */
const OWNER_WAIT_MS = 60_000;

/** What a live move asks of the source Hypervisor about the VM (on its queue; the VM RUNNING). */
export interface LiveMovingVm {
  /** Whether its VMM can send the guest live; false sends it the stop-and-copy way. */
  canMigrateLive(): Promise<boolean>;
  /** The active disk's virtual size; undefined when it cannot go in a stream (an older VM's raw disk). */
  diskBytes(): Promise<number | undefined>;
  /** The live move's file: the VM's export without its active disk (and with no saved state). */
  archive(): Promise<{ readonly bytes: number; readonly stream: AsyncIterable<Buffer> }>;
  /**
   * Its VMM's migrateOut: resolves once the guest runs on the target (the VMM exited "migrated"); rejects
   * with the guest running here, or with code "migration-unconfirmed" and the guest paused.
   */
  migrateOut(target: VmmMigrateParams): Promise<MigrationFigures>;
  /** After "migration-unconfirmed": run the guest here again, or let the VMM exit (it runs elsewhere). */
  settle(resume: boolean): Promise<void>;
  /**
   * Rewrites the VM's record at the revision this host saw, so that no takeover at that revision can
   * succeed any more; resolves false when the record had changed (another host took it over).
   */
  fence(): Promise<boolean>;
}

/** How a live move ended on the source: moved, or not started (why), so that the caller copies it cold. */
export type LiveMoveOutcome =
  | {
      readonly moved: true;
      readonly figures: MigrationFigures;
      /** Bytes sent: the live move's file and the stream. */
      readonly bytes: number;
    }
  | { readonly moved: false; readonly why: string };

/** The VM as moveLive sees it: its live steps, its name and revision, and how this host lets go of it. */
type MovingLive = LiveMovingVm & {
  readonly name: string;
  revision(): Promise<number>;
  forget(to: string): Promise<void>;
};

/**
 * The source's side: prepares the target with the live move's file, then has the VMM send the guest.
 * Resolves moved (the target runs it, the VM's record is the target's), or not moved when the live path
 * could not start (the guest runs on here untouched: copy it cold). Rejects move-failed, with the guest
 * running here, when the stream failed.
 */
export async function moveLive(
  op: Operation,
  vm: MovingLive,
  target: string,
  transport: MoveTransport,
): Promise<LiveMoveOutcome> {
  if (!(await vm.canMigrateLive())) return { moved: false, why: "its engine cannot migrate a running guest" };
  const diskBytes = await vm.diskBytes();
  if (diskBytes === undefined) return { moved: false, why: "its disk is an older raw disk.img" };
  const archive = await vm.archive();
  let where: { host: string; port: number; ticket: string };
  try {
    where = await transport.prepareLive(
      target,
      { name: vm.name, revision: await vm.revision(), from: transport.host, diskBytes },
      archive,
    );
  } catch (e) {
    return { moved: false, why: (e as Error).message };
  }
  op.progress = 30;
  try {
    const figures = await vm.migrateOut({ ...where, disk: true });
    return { moved: true, figures, bytes: archive.bytes + figures.bytes };
  } catch (e) {
    if ((e as HypervisorError).code !== "migration-unconfirmed")
      throw new HypervisorError(
        "move-failed",
        `moving '${vm.name}' live to host '${target}' failed: ${(e as Error).message}; it runs on here`,
      );
    return settleUnconfirmed(vm, target, transport, e as Error);
  }
}

/**
 * The whole guest went but the target's answer did not come: who owns the record decides. This host's
 * still: fenced first (no takeover can succeed after), then the guest runs on here. The target's: this VMM
 * lets go. Unknown (etcd unreachable): the guest stays paused — running it could make it run twice.
 */
async function settleUnconfirmed(
  vm: MovingLive,
  target: string,
  transport: MoveTransport,
  cause: Error,
): Promise<LiveMoveOutcome> {
  const deadline = Date.now() + OWNER_WAIT_MS;
  for (;;) {
    try {
      const owner = await transport.ownerOf(vm.name);
      if (owner === transport.host && (await vm.fence())) {
        await vm.settle(true);
        throw new HypervisorError(
          "move-failed",
          `moving '${vm.name}' live to host '${target}' failed: ${cause.message}; host '${target}' did not take it over, so it runs on here`,
        );
      }
      if (owner !== transport.host) {
        await vm.settle(false);
        await vm.forget(owner ?? target);
        throw new HypervisorError(
          "move-failed",
          `moving '${vm.name}' live to host '${target}' did not confirm (${cause.message}), but host '${owner}' took the VM over, so it is there now`,
        );
      }
    } catch (e) {
      if (e instanceof HypervisorError && e.code === "move-failed") throw e;
      if (Date.now() > deadline)
        throw new HypervisorError(
          "move-failed",
          `moving '${vm.name}' live to host '${target}' did not confirm, and who owns it now cannot be read (${(e as Error).message}): its guest stays paused here so that it never runs twice`,
        );
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** What the target Hypervisor lends a live move in. */
export interface LiveMoveInHost {
  /**
   * Verifies the live move's file and puts the VM's files in place (its record stays the source's): name
   * free, engine present, room for it here. Then runs `prepared` with the record while no disk garbage
   * collection may run (the VM's nodes are not reached by any disk until its stream brings it) and the
   * name stays reserved. Rejects with nothing left when any of it fails.
   */
  importLive(
    input: AsyncIterable<Uint8Array>,
    name: string,
    prepared: (record: VmRecord) => Promise<void>,
  ): Promise<void>;
  paths(name: string): VmPaths;
  launch(
    record: VmRecord,
    paths: VmPaths,
    incoming: NonNullable<LaunchOptions["incoming"]>,
  ): Promise<VmmHandle>;
  /** The record becomes this host's at the source's revision (RevisionConflictError when it changed). */
  takeOver(record: VmRecord, offer: LiveMoveOffer): Promise<VmRecord>;
  /** The VM is known here, RUNNING in `vmm`. */
  welcome(record: VmRecord, vmm: VmmHandle): Promise<void>;
  /** Removes the VM's files put in place for a move that did not happen (its nodes, once unreached, later). */
  discard(name: string): Promise<void>;
  /** The record was taken over but the guest did not run here: the VM is known here, TERMINATED, saying why. */
  lost(record: VmRecord, why: string): Promise<void>;
}

/**
 * The target's side: resolves with where the gated VMM waits (`listenHost`, the address the source
 * reached this host's API at), once it listens; the move goes on in the background and cleans up after
 * itself when it fails. Rejects, with nothing left here, when the VM cannot come here.
 */
export function acceptLiveMove(
  host: LiveMoveInHost,
  input: AsyncIterable<Uint8Array>,
  offer: LiveMoveOffer,
  listenHost: string,
): Promise<LiveMoveAnswer> {
  const ticket = randomBytes(24).toString("hex");
  return new Promise((resolve, reject) => {
    let answered = false;
    const done = host.importLive(input, offer.name, async (record) => {
      let owned: VmRecord | undefined;
      let vmm: VmmHandle;
      try {
        vmm = await host.launch(record, host.paths(record.name), {
          host: listenHost,
          ticket,
          waitMs: LIVE_WAIT_MS,
          diskBytes: offer.diskBytes,
          onListening: (port) => {
            answered = true;
            resolve({ kind: "tsvm#liveMoveIn", port, ticket });
          },
          onReceived: async () => {
            owned = await host.takeOver(record, offer);
          },
        });
      } catch (e) {
        if (owned)
          await host.lost(owned, `moved here live from host '${offer.from}', but: ${(e as Error).message}`);
        else await host.discard(record.name);
        throw e;
      }
      await host.welcome(owned!, vmm);
    });
    done.then(
      () => {},
      (e: Error) => {
        if (!answered) reject(e);
        else
          process.stderr.write(
            `live move of '${offer.name}' from host '${offer.from}' failed here: ${e.message}\n`,
          );
      },
    );
  });
}
