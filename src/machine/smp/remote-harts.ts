// The board's side of harts that run on other threads: for each, a shell Rv64Hart that holds its state while
// it is parked (saved states, reset, the device tree's view of it), its link, and the doorbell every such
// hart rings when it needs the board's thread to perform a device access for it. The CLINT is not reached
// that way: its registers are shared (devices/clint-registers.ts), and each such hart has a view of its own.

import type { MmioRegion } from "../bus/mmio-device.ts";
import type { PhysBus } from "../bus/phys-bus.ts";
import type { Clint } from "../devices/clint.ts";
import type { Rv64Hart, Rv64HartState } from "../riscv/hart.ts";
import { HART_LINK_BYTES, HartLink, type HartThreadStats } from "./hart-link.ts";

/** mip bits devices drive (MSIP, MTIP, SEIP, MEIP). */
export const DEVICE_MIP_BITS: readonly number[] = [3, 7, 9, 11];
/** Those a hart on another thread takes from its link (the PLIC's SEIP, MEIP): it computes the CLINT's
 * MSIP and MTIP itself, from the registers it shares with the board. */
export const LINKED_MIP_BITS: readonly number[] = [9, 11];

/** Everything a thread needs to run one hart of the board (structured-clonable: buffers and numbers). */
export interface AwayHartSetup {
  readonly hartId: number;
  readonly link: SharedArrayBuffer;
  readonly doorbell: SharedArrayBuffer;
  /** Per hart id: the link of each remote hart (null for hart 0, which the doorbell reaches), for IPIs. */
  readonly peers: readonly (SharedArrayBuffer | null)[];
  /** Guest RAM's dirty-page map, one byte per page, which the hart marks always (bus/guest-ram.ts). */
  readonly dirtyMap: SharedArrayBuffer;
  /** The CLINT's registers (devices/clint-registers.ts), its window's id, and the board's hart count. */
  readonly clint: { readonly regs: SharedArrayBuffer; readonly id: string; readonly harts: number };
  readonly ram: SharedArrayBuffer;
  readonly ramBase: number;
  /** The board's device windows: the hart's accesses there run on the board's thread. */
  readonly windows: readonly { readonly base: number; readonly size: number; readonly id: string }[];
  readonly jit: boolean;
  readonly jitThreshold?: number;
}

export class RemoteHart {
  readonly link: HartLink;
  private lines = 0;

  constructor(
    readonly shell: Rv64Hart,
    doorbell: Int32Array,
  ) {
    this.link = new HartLink(new SharedArrayBuffer(HART_LINK_BYTES), doorbell);
  }

  /** A device drives mip bit `bit` of this hart. */
  setLine(bit: number, level: boolean): void {
    this.shell.setPending(bit, level);
    this.lines = level ? this.lines | (1 << bit) : this.lines & ~(1 << bit);
    this.link.setLines(this.lines);
  }

  /** Takes in the state of the parked hart; the lines keep the levels the devices drive now. */
  adopt(state: Rv64HartState): void {
    this.shell.loadState(state);
    for (const bit of DEVICE_MIP_BITS) this.shell.setPending(bit, (this.lines & (1 << bit)) !== 0);
  }

  /** The state the hart runs from next (the shell's); its count shows until the hart publishes its own. */
  stateToRun(): Rv64HartState {
    this.link.instretCount = this.shell.instretCount();
    return this.shell.saveState();
  }

  /** Instructions retired: the running hart's last count, which is the shell's while parked. */
  instretCount(): number {
    return this.link.instret;
  }
}

export class RemoteHarts {
  readonly doorbellBuffer = new SharedArrayBuffer(4);
  /** Int32 0 moves whenever a remote hart posts a device access (a host may Atomics.waitAsync on it). */
  readonly doorbell = new Int32Array(this.doorbellBuffer);
  readonly harts: RemoteHart[] = [];
  private readonly dirtyMap: SharedArrayBuffer;

  /** @param clint the board's CLINT, its registers in a SharedArrayBuffer */
  constructor(
    private readonly clint: Clint,
    private readonly bus: PhysBus,
  ) {
    if (!(clint.regs.buffer instanceof SharedArrayBuffer))
      throw new Error("remote harts need the CLINT's registers in a SharedArrayBuffer");
    this.dirtyMap = new SharedArrayBuffer(bus.ram.size >>> 12);
    bus.ram.shareDirtyMap(new Uint8Array(this.dirtyMap));
  }

  /**
   * Every remote hart drops its write-TLB entries (dirty-page tracking started or took the map); returns
   * once each running one did, performing their device accesses meanwhile (about a slice, a millisecond).
   */
  dropWriteMappings(): void {
    const reqs = this.harts.map((r) => r.link.requestDrop());
    const serve = (): void => {
      this.serve();
    };
    for (let i = 0; i < this.harts.length; i++) this.harts[i]!.link.awaitDrop(reqs[i]!, serve);
  }

  /** Wakes hart `h` (a board's hart id) if it runs on another thread: its CLINT registers changed. */
  wakeHart(h: number): void {
    this.harts[h - 1]?.link.wake();
  }

  add(shell: Rv64Hart): RemoteHart {
    const r = new RemoteHart(shell, this.doorbell);
    this.harts.push(r);
    return r;
  }

  /** Performs the device accesses remote harts posted; true when there was any. */
  serve(): boolean {
    let any = false;
    for (const r of this.harts) if (r.link.serve(this.bus)) any = true;
    return any;
  }

  /** Where each remote hart's thread spent its time. */
  stats(): HartThreadStats[] {
    const ids = this.bus.windows.map((w) => w.device.id);
    return this.harts.map((r) => r.link.stats(ids));
  }

  /** Every remote hart waits in WFI. */
  get allWaiting(): boolean {
    for (const r of this.harts) if (!r.link.waiting) return false;
    return true;
  }

  setupOf(r: RemoteHart, jit: boolean, jitThreshold: number | undefined): AwayHartSetup {
    const ram = this.bus.ram;
    if (!(ram.buffer instanceof SharedArrayBuffer))
      throw new Error("remote harts need RAM in a SharedArrayBuffer");
    return {
      hartId: r.shell.hartId,
      link: r.link.buffer,
      doorbell: this.doorbellBuffer,
      dirtyMap: this.dirtyMap,
      peers: [null, ...this.harts.map((p) => p.link.buffer)],
      clint: {
        regs: this.clint.regs.buffer as SharedArrayBuffer,
        id: this.clint.id,
        harts: this.clint.harts,
      },
      ram: ram.buffer,
      ramBase: ram.base,
      windows: this.bus.windows.map((w: MmioRegion) => ({ base: w.base, size: w.size, id: w.device.id })),
      jit,
      ...(jitThreshold !== undefined ? { jitThreshold } : {}),
    };
  }
}
