// The shared memory between the board's thread and one hart running on another thread: control words (park
// request, wake-up counter, the hart's interrupt lines, whether it waits in WFI), its instret, and a mailbox
// through which the hart's loads and stores to device windows run on the board's thread, where the devices
// live. All of it is plain Atomics on a SharedArrayBuffer: no host API, the same in Node workers and browsers.

import type { PhysBus } from "../bus/phys-bus.ts";

/** Int32 slots. */
const PARK = 0; // 1: the board asks the hart to stop at its next instruction boundary
const WAKE = 1; // bumped (and notified) whenever the hart should look at the other words again
const LINES = 2; // mip bits the board's devices drive for this hart (MSIP, MTIP, SEIP, MEIP)
const WAITING = 3; // 1 while the hart sleeps in WFI
const REQ = 4; // mailbox: 0 empty, 1 request posted, 2 answer posted
const OP = 5; // 0 load, 1 store
const WIDTH = 6;
const LO = 7;
const HI = 8;
const OK = 9; // 1 when something answered the access
const INT_SLOTS = 10;
/** Float64 slots after the int32s: the physical address of the request, the hart's instret. */
const F64_BASE = 16;
const PA = 0;
const INSTRET = 1;
export const HART_LINK_BYTES = F64_BASE * 4 + 16;

const REQ_EMPTY = 0;
const REQ_POSTED = 1;
const REQ_ANSWERED = 2;

/** Longest a hart sleeps on one wait before looking around again (a safety net: every change notifies). */
const MAX_WAIT_MS = 100;

export class HartLink {
  readonly i32: Int32Array;
  private readonly f64: Float64Array;

  /**
   * @param buffer HART_LINK_BYTES, zeroed when new
   * @param doorbell the board's doorbell word (int32 0): bumped and notified when a request is posted
   */
  constructor(
    readonly buffer: SharedArrayBuffer,
    private readonly doorbell: Int32Array,
  ) {
    if (INT_SLOTS > F64_BASE) throw new Error("hart link layout overlaps");
    this.i32 = new Int32Array(buffer, 0, F64_BASE);
    this.f64 = new Float64Array(buffer, F64_BASE * 4, 2);
  }

  // ---------------------------------------------------------------- the board's side

  /** Asks the hart to park (true) or lets it run (false), and wakes it to see it. */
  requestPark(park: boolean): void {
    Atomics.store(this.i32, PARK, park ? 1 : 0);
    this.poke();
  }

  /** Sets the device-driven mip bits and wakes the hart to take them. */
  setLines(bits: number): void {
    if (Atomics.exchange(this.i32, LINES, bits) !== bits) this.poke();
  }

  get lines(): number {
    return Atomics.load(this.i32, LINES);
  }

  get waiting(): boolean {
    return Atomics.load(this.i32, WAITING) === 1;
  }

  get instret(): number {
    return this.f64[INSTRET]!;
  }

  /** Performs a posted load or store on `bus` and answers it; false when none was posted. */
  serve(bus: PhysBus): boolean {
    const i32 = this.i32;
    if (Atomics.load(i32, REQ) !== REQ_POSTED) return false;
    const pa = this.f64[PA]!;
    const width = i32[WIDTH]!;
    let ok: boolean;
    if (i32[OP] === 0) {
      ok = bus.load(pa, width);
      i32[LO] = bus.lo;
      i32[HI] = bus.hi;
    } else ok = bus.store(pa, width, i32[LO]!, i32[HI]!);
    i32[OK] = ok ? 1 : 0;
    Atomics.store(i32, REQ, REQ_ANSWERED);
    Atomics.notify(i32, REQ);
    return true;
  }

  // ---------------------------------------------------------------- the hart's side

  get parkRequested(): boolean {
    return Atomics.load(this.i32, PARK) === 1;
  }

  get wakeCount(): number {
    return Atomics.load(this.i32, WAKE);
  }

  set instretCount(n: number) {
    this.f64[INSTRET] = n;
  }

  /** Sleeps while in WFI until the wake counter moves from `seen` (or MAX_WAIT_MS pass). */
  sleep(seen: number): void {
    Atomics.store(this.i32, WAITING, 1);
    Atomics.wait(this.i32, WAKE, seen, MAX_WAIT_MS);
    Atomics.store(this.i32, WAITING, 0);
  }

  /**
   * Runs a device load (`store` false) or store of `width` bytes at `pa` on the board's thread and waits for
   * it; the loaded value is in `i32[LO]`, `i32[HI]` after. Returns whether anything answered.
   */
  call(store: boolean, pa: number, width: number, lo: number, hi: number): boolean {
    const i32 = this.i32;
    i32[OP] = store ? 1 : 0;
    this.f64[PA] = pa;
    i32[WIDTH] = width;
    i32[LO] = lo;
    i32[HI] = hi;
    Atomics.store(i32, REQ, REQ_POSTED);
    Atomics.add(this.doorbell, 0, 1);
    Atomics.notify(this.doorbell, 0);
    while (Atomics.load(i32, REQ) === REQ_POSTED) Atomics.wait(i32, REQ, REQ_POSTED, MAX_WAIT_MS);
    Atomics.store(i32, REQ, REQ_EMPTY);
    return i32[OK] === 1;
  }

  get loadedLo(): number {
    return this.i32[LO]!;
  }

  get loadedHi(): number {
    return this.i32[HI]!;
  }

  private poke(): void {
    Atomics.add(this.i32, WAKE, 1);
    Atomics.notify(this.i32, WAKE);
  }
}
