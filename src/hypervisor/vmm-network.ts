// The VMM's side of a VM's network cards (docs/networking.md): for the NAT card it starts and supervises
// passt (PasstProcess, its socket in the VM's directory; a restart is reported, the VM runs on), for a private
// network's card it connects to the switch with the VM's hello line; each card's frames go through a
// StreamFrameSocket, counted per card for `stats`.

import { join } from "node:path";
import type { FrameBackend } from "../engines/backends/frame-backend.ts";
import { PasstProcess } from "../engines/backends/passt-process.ts";
import { StreamFrameSocket } from "../engines/backends/stream-frame-socket.ts";
import { macBytes, type NicSpec } from "./network-interfaces.ts";

/** One card as the engine adapter plugs it into the machine. */
export interface GuestNic {
  readonly mac: Uint8Array;
  readonly backend: FrameBackend;
}

/** What the engine adapter gets from the VMM besides the spec (vmm-protocol.ts GuestFactory). */
export interface GuestHost {
  readonly nics: readonly GuestNic[];
}

/** The directory of the VM's passt socket: passt, as nobody when the VMM is root, owns it. */
export function passtDirOf(vmDir: string): string {
  return join(vmDir, "passt");
}
const PASST_SOCKET = "passt.sock";

/** Counts what passes a card's backend: guest → network (tx) and network → guest taken by the guest (rx). */
class CountedFrameBackend implements FrameBackend {
  txFrames = 0;
  txBytes = 0;
  rxFrames = 0;
  rxBytes = 0;
  onFrame: ((frame: Uint8Array) => boolean) | null = null;

  constructor(readonly inner: StreamFrameSocket) {
    inner.onFrame = (frame) => {
      const taken = this.onFrame?.(frame) ?? false;
      if (taken) {
        this.rxFrames++;
        this.rxBytes += frame.length;
      }
      return taken;
    };
  }

  send(frame: Uint8Array): void {
    this.txFrames++;
    this.txBytes += frame.length;
    this.inner.send(frame);
  }

  resume(): void {
    this.inner.resume();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

/**
 * passt serving one connection only (--one-off): it quits when the VMM's socket closes. Without it a passt
 * whose VMM was killed (SIGKILL: no clean-up) lives on — it leaves the VMM's session, so a kill of the VMM's
 * process group misses it too — holding the VM's forwarded ports (measured: every VMM killed in the tests
 * left one). When the connection drops for another reason, passt ends and PasstProcess starts it again.
 */
class OneOffPasst extends PasstProcess {
  override args(): string[] {
    const args = super.args();
    return args.includes("--one-off") ? args : [...args, "--one-off"];
  }
}

export class VmmNetwork {
  private constructor(
    readonly nics: readonly GuestNic[],
    private readonly counted: readonly CountedFrameBackend[],
    private readonly passt: PasstProcess | undefined,
  ) {}

  /**
   * Starts passt for the NAT card (failing with PasstMissingError's one line when it is not installed) and
   * connects every card's socket. `notice` reports what the daemon should record as an event (a restart of
   * passt); `log` goes to vmm.log.
   */
  static async open(
    nics: readonly NicSpec[],
    vmDir: string,
    hooks: { readonly log: (line: string) => void; readonly notice: (message: string) => void },
  ): Promise<VmmNetwork> {
    let passt: PasstProcess | undefined;
    const counted: CountedFrameBackend[] = [];
    try {
      const guestNics = [];
      for (const [index, nic] of nics.entries()) {
        let socketPath: string;
        let hello: Uint8Array | undefined;
        if (nic.attach.kind === "passt") {
          if (passt) throw new Error("a VM has at most one NAT card");
          passt = new OneOffPasst({
            socketPath: join(passtDirOf(vmDir), PASST_SOCKET),
            forwards: nic.attach.forwards,
            onRestart: (reason) => {
              const failed = reason.includes("restart failed");
              const message = failed
                ? `the NAT network of eth${index} is down: passt ended (${reason}); trying again, the VM runs on`
                : `passt (the NAT network of eth${index}) ended and was restarted (${reason}); the VM runs on`;
              hooks.log(message);
              hooks.notice(message);
            },
          });
          await passt.start();
          socketPath = passt.socketPath;
        } else {
          socketPath = nic.attach.socketPath;
          hello = new TextEncoder().encode(nic.attach.hello);
        }
        const backend = new CountedFrameBackend(
          new StreamFrameSocket(socketPath, {
            ...(hello ? { hello } : {}),
            onConnectionChange: (up) =>
              hooks.log(`eth${index} (${nic.mac}): ${up ? "connected to" : "lost"} ${socketPath}`),
          }),
        );
        counted.push(backend);
        guestNics.push({ mac: macBytes(nic.mac), backend });
      }
      return new VmmNetwork(guestNics, counted, passt);
    } catch (e) {
      for (const c of counted) await c.close().catch(() => {});
      await passt?.stop().catch(() => {});
      throw e;
    }
  }

  /** Per card (nicN…) and in all (net…): bytes and frames each way, frames dropped, passt restarts. */
  stats(): Record<string, number> {
    const out: Record<string, number> = { netRxBytes: 0, netTxBytes: 0 };
    for (const [i, c] of this.counted.entries()) {
      out[`nic${i}RxBytes`] = c.rxBytes;
      out[`nic${i}RxFrames`] = c.rxFrames;
      out[`nic${i}TxBytes`] = c.txBytes;
      out[`nic${i}TxFrames`] = c.txFrames;
      out[`nic${i}TxDropped`] = c.inner.stats.txDropped;
      out.netRxBytes! += c.rxBytes;
      out.netTxBytes! += c.txBytes;
    }
    if (this.passt) out.passtRestarts = this.passt.restarts;
    return out;
  }

  /** The pid of the NAT card's passt now (for tests and vmm.log). */
  get passtPid(): number | undefined {
    return this.passt?.pid;
  }

  async close(): Promise<void> {
    for (const c of this.counted) await c.close().catch(() => {});
    await this.passt?.stop();
  }
}
