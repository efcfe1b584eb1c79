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
const DROP_REQ = 10; // bumped when the board asks the hart to drop its write TLB (dirty-page tracking)
const DROP_ACK = 11; // the last DROP_REQ the hart acted on
const RUNNING = 12; // 1 while the hart's thread runs it (in runUntilParked)
const INT_SLOTS = 13;
/** Float64 slots after the int32s: the physical address of the request, the hart's instret, then counters. */
const F64_BASE = 16;
const PA = 0;
const INSTRET = 1;
/** Counters the hart's thread keeps (only it writes them): where its time goes (HartThreadStats). */
const RUN_MS = 2;
const SLEEPS = 3;
const SLEEP_MS = 4;
const CALLS = 5;
const CALL_MS = 6;
/** Per device window (in the order of the setup's windows): round trips, then their ms. */
const WINDOW_CALLS = 7;
export const LINK_MAX_WINDOWS = 16;
const F64_SLOTS = WINDOW_CALLS + 2 * LINK_MAX_WINDOWS;
export const HART_LINK_BYTES = F64_BASE * 4 + F64_SLOTS * 8;

/** Where a hart's thread spent its time since the link was made (host ms from its clock). */
export interface HartThreadStats {
  /** Running guest code (including the device round trips made from it). */
  readonly runMs: number;
  /** Sleeps in WFI and their total time. */
  readonly sleeps: number;
  readonly sleepMs: number;
  /** Device accesses performed by the board's thread, and the time waited for them. */
  readonly calls: number;
  readonly callMs: number;
  /** Per device window id: round trips and ms waited. */
  readonly windows: Readonly<Record<string, { readonly calls: number; readonly ms: number }>>;
}

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
    this.f64 = new Float64Array(buffer, F64_BASE * 4, F64_SLOTS);
  }

  // ---------------------------------------------------------------- the board's side

  /** Asks the hart to park (true) or lets it run (false), and wakes it to see it. */
  requestPark(park: boolean): void {
    Atomics.store(this.i32, PARK, park ? 1 : 0);
    this.wake();
  }

  /** Sets the device-driven mip bits and wakes the hart to take them. */
  setLines(bits: number): void {
    if (Atomics.exchange(this.i32, LINES, bits) !== bits) this.wake();
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

  /** The hart's counters; `windowIds` are the setup's window ids in order. */
  stats(windowIds: readonly string[]): HartThreadStats {
    const f = this.f64;
    const windows: Record<string, { calls: number; ms: number }> = {};
    for (let w = 0; w < windowIds.length && w < LINK_MAX_WINDOWS; w++) {
      const calls = f[WINDOW_CALLS + 2 * w]!;
      if (calls > 0) windows[windowIds[w]!] = { calls, ms: f[WINDOW_CALLS + 2 * w + 1]! };
    }
    return {
      runMs: f[RUN_MS]!,
      sleeps: f[SLEEPS]!,
      sleepMs: f[SLEEP_MS]!,
      calls: f[CALLS]!,
      callMs: f[CALL_MS]!,
      windows,
    };
  }

  /** Asks the hart to drop its write-TLB entries; returns the request to wait for (`awaitDrop`). */
  requestDrop(): number {
    const req = Atomics.add(this.i32, DROP_REQ, 1) + 1;
    this.wake();
    return req;
  }

  /**
   * Waits until the hart dropped its write-TLB entries for `req`, or is not running (it acts on the request
   * before it runs again); performs the hart's device accesses meanwhile, which it may be waiting for.
   */
  awaitDrop(req: number, serve: () => void): void {
    const i32 = this.i32;
    for (;;) {
      const ack = Atomics.load(i32, DROP_ACK);
      if (ack - req >= 0 || Atomics.load(i32, RUNNING) === 0) return;
      serve();
      Atomics.wait(i32, DROP_ACK, ack, 1);
    }
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

  /** The last write-TLB drop the board asked for. */
  get dropRequest(): number {
    return Atomics.load(this.i32, DROP_REQ);
  }

  /** The hart dropped its write TLB for request `req`. */
  ackDrop(req: number): void {
    Atomics.store(this.i32, DROP_ACK, req);
    Atomics.notify(this.i32, DROP_ACK);
  }

  /** Whether the hart's thread is running it (the board waits for its acknowledgements only then). */
  set running(on: boolean) {
    Atomics.store(this.i32, RUNNING, on ? 1 : 0);
    Atomics.notify(this.i32, DROP_ACK);
  }

  get wakeCount(): number {
    return Atomics.load(this.i32, WAKE);
  }

  set instretCount(n: number) {
    this.f64[INSTRET] = n;
  }

  /** Sleeps while in WFI until the wake counter moves from `seen` or `ms` pass (at most MAX_WAIT_MS). */
  sleep(seen: number, ms: number): void {
    Atomics.store(this.i32, WAITING, 1);
    Atomics.wait(this.i32, WAKE, seen, Math.min(ms, MAX_WAIT_MS));
    Atomics.store(this.i32, WAITING, 0);
  }

  /** Counts `ms` of running guest code. */
  countRun(ms: number): void {
    this.f64[RUN_MS] += ms;
  }

  /** Counts a WFI sleep of `ms`. */
  countSleep(ms: number): void {
    this.f64[SLEEPS]++;
    this.f64[SLEEP_MS] += ms;
  }

  /** Counts a round trip to device window `w` that waited `ms`. */
  countCall(w: number, ms: number): void {
    const f = this.f64;
    f[CALLS]++;
    f[CALL_MS] += ms;
    if (w < LINK_MAX_WINDOWS) {
      f[WINDOW_CALLS + 2 * w]++;
      f[WINDOW_CALLS + 2 * w + 1] += ms;
    }
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
    this.ringDoorbell();
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

  /** Wakes the hart (from either side, or from another hart's thread) to look at its lines again. */
  wake(): void {
    Atomics.add(this.i32, WAKE, 1);
    Atomics.notify(this.i32, WAKE);
  }

  /** Wakes the board's thread (its host listens on the doorbell), e.g. for an IPI sent to hart 0. */
  ringDoorbell(): void {
    Atomics.add(this.doorbell, 0, 1);
    Atomics.notify(this.doorbell, 0);
  }
}
