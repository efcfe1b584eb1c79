// The VMM's side of a VM's network cards (docs/networking.md): for the NAT card it starts and supervises
// passt (PasstProcess, its socket in the VM's directory; a restart is reported, the VM runs on; --one-off,
// so a VMM killed outright leaves no passt holding its forwarded ports), for a private
// network's card it connects to the switch with the VM's hello line; each card's frames go through a
// StreamFrameSocket, counted per card for `stats`, and the guest is announced to a peer that (re)connects.

import { join } from "node:path";
import type { FrameBackend } from "../engines/backends/frame-backend.ts";
import { PASST_MTU, PasstProcess } from "../engines/backends/passt-process.ts";
import { StreamFrameSocket } from "../engines/backends/stream-frame-socket.ts";
import { macBytes, type NicSpec } from "./network-interfaces.ts";

/** One card as the engine adapter plugs it into the machine. */
export interface GuestNic {
  readonly mac: Uint8Array;
  /** The card's MTU: passt's for the NAT card; private networks carry standard Ethernet frames (default). */
  readonly mtu?: number;
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

const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;

/**
 * One card's backend: a StreamFrameSocket to passt or a switch, counting what passes it — guest → network
 * (tx) and network → guest taken by the guest (rx) — and announcing the guest on every (re)connection.
 */
class CardBackend implements FrameBackend {
  txFrames = 0;
  txBytes = 0;
  rxFrames = 0;
  rxBytes = 0;
  onFrame: ((frame: Uint8Array) => boolean) | null = null;
  readonly inner: StreamFrameSocket;
  /** The guest's IPv4 address as its own frames last showed it (0.0.0.0 until they do). */
  private readonly guestIp = new Uint8Array(4);

  constructor(
    private readonly mac: Uint8Array,
    path: string,
    options: { readonly hello?: Uint8Array; readonly log: (line: string) => void; readonly name: string },
  ) {
    this.inner = new StreamFrameSocket(path, {
      ...(options.hello ? { hello: options.hello } : {}),
      onConnectionChange: (up) => {
        options.log(`${options.name}: ${up ? "connected to" : "lost"} ${path}`);
        if (up) this.inner.send(this.announcement());
      },
    });
    this.inner.onFrame = (frame) => {
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
    this.noteGuestIp(frame);
    this.inner.send(frame);
  }

  resume(): void {
    this.inner.resume();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  /** Keeps the source IPv4 address of the guest's IPv4 and ARP frames (a few byte reads, nothing allocated). */
  private noteGuestIp(frame: Uint8Array): void {
    if (frame.length < 42) return;
    const type = (frame[12]! << 8) | frame[13]!;
    const at = type === ETHERTYPE_IPV4 ? 26 : type === ETHERTYPE_ARP ? 28 : -1;
    if (at < 0 || (frame[at]! | frame[at + 1]! | frame[at + 2]! | frame[at + 3]!) === 0) return;
    for (let i = 0; i < 4; i++) this.guestIp[i] = frame[at + i]!;
  }

  /**
   * A gratuitous ARP from the guest (its MAC, its last address as sender and target). A peer that was
   * restarted (passt after kill -9) knows nothing of the guest until the guest sends a frame: passt would
   * address frames for forwarded connections to the broadcast MAC, which the guest's TCP discards, and an
   * idle guest might send nothing for minutes. passt learns the guest's MAC from any frame, and ignores a
   * gratuitous ARP otherwise; a switch learns nothing new (the hello names the MAC).
   */
  private announcement(): Uint8Array {
    const f = new Uint8Array(60);
    f.fill(0xff, 0, 6);
    f.set(this.mac, 6);
    f[12] = ETHERTYPE_ARP >> 8;
    f[13] = ETHERTYPE_ARP & 0xff;
    // Ethernet, IPv4, 6-byte and 4-byte addresses, a request.
    f.set([0, 1, 8, 0, 6, 4, 0, 1], 14);
    f.set(this.mac, 22);
    f.set(this.guestIp, 28);
    f.set(this.guestIp, 38);
    return f;
  }
}

export class VmmNetwork {
  private constructor(
    readonly nics: readonly GuestNic[],
    private readonly counted: readonly CardBackend[],
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
    const counted: CardBackend[] = [];
    try {
      const guestNics = [];
      for (const [index, nic] of nics.entries()) {
        let socketPath: string;
        let hello: Uint8Array | undefined;
        if (nic.attach.kind === "passt") {
          if (passt) throw new Error("a VM has at most one NAT card");
          passt = new PasstProcess({
            socketPath: join(passtDirOf(vmDir), PASST_SOCKET),
            // TSVM_PASST (in the daemon's environment, passed on to its VMMs): another passt, for tests.
            ...(process.env.TSVM_PASST ? { executable: process.env.TSVM_PASST } : {}),
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
        const backend = new CardBackend(macBytes(nic.mac), socketPath, {
          ...(hello ? { hello } : {}),
          log: hooks.log,
          name: `eth${index} (${nic.mac})`,
        });
        counted.push(backend);
        guestNics.push({
          mac: macBytes(nic.mac),
          ...(nic.attach.kind === "passt" ? { mtu: PASST_MTU } : {}),
          backend,
        });
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
    if (this.passt) {
      out.passtRestarts = this.passt.restarts;
      // 0 while passt is down (between its death and its restart).
      out.passtPid = this.passt.pid ?? 0;
    }
    return out;
  }

  async close(): Promise<void> {
    for (const c of this.counted) await c.close().catch(() => {});
    await this.passt?.stop();
  }
}
