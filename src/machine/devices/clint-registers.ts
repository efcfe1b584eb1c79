// The CLINT's registers and its time origin in one buffer, so that CLINT views on several threads (a board's
// and those of harts on worker threads, smp/) are one device: a hart programs its own mtimecmp, reads mtime
// and sends IPIs without a round trip to the board's thread. In a SharedArrayBuffer for that; a board whose
// harts all run on one thread gives a plain ArrayBuffer (Atomics work on both).
//
// Guest time is originTicks at host time originMs (the Clock every thread shares) and runs at the timebase
// frequency from there. The origin is two doubles under a sequence lock whose writers take it with a
// compare-and-swap (any thread may write mtime), so a reader never sees half of a moved origin.

/** Int32 slot of the sequence counter (odd while a writer holds it). */
const SEQ = 0;
/** Byte offsets. */
const ORIGIN = 8;
const MSIP = 24;

export class ClintRegisters {
  /** Bytes for `harts` harts. */
  static bytes(harts: number): number {
    return MSIP + harts * 4 * 3 + harts * 8 + 8;
  }

  private readonly seq: Int32Array;
  private readonly origin: Float64Array;
  /** Per hart: msip bit 0. */
  readonly msip: Int32Array;
  /** Per hart: the low and high halves of mtimecmp. */
  readonly cmpLo: Int32Array;
  readonly cmpHi: Int32Array;
  /** Per hart: mtimecmp as a double, for the comparison (exact below 2^53 ticks = 28 years). Written after
   * the halves by whoever writes them; a reader on another thread sees the old or the new value (an aligned
   * 8-byte access), and the comparison is redone at the next look anyway. */
  readonly cmp: Float64Array;

  constructor(
    readonly buffer: ArrayBuffer | SharedArrayBuffer,
    readonly harts: number,
  ) {
    if (buffer.byteLength < ClintRegisters.bytes(harts)) throw new Error("CLINT register buffer too small");
    this.seq = new Int32Array(buffer, 0, 1);
    this.origin = new Float64Array(buffer, ORIGIN, 2);
    this.msip = new Int32Array(buffer, MSIP, harts);
    this.cmpLo = new Int32Array(buffer, MSIP + harts * 4, harts);
    this.cmpHi = new Int32Array(buffer, MSIP + harts * 8, harts);
    // 8-aligned: after three int32 arrays, rounded up.
    const cmpAt = (MSIP + harts * 12 + 7) & ~7;
    this.cmp = new Float64Array(buffer, cmpAt, harts);
  }

  /** Guest ticks at host time `nowMs` (exact, maybe fractional). */
  ticksAt(nowMs: number): number {
    this.readOrigin();
    const elapsed = nowMs - this.originMs;
    // A Clock never goes backwards; should one, guest time stands still rather than running backwards.
    return this.originTicks + (elapsed > 0 ? elapsed * TICKS_PER_MS : 0);
  }

  /** Host time (ms) at which guest time reaches `ticks`. */
  msAt(ticks: number): number {
    this.readOrigin();
    return this.originMs + (ticks - this.originTicks) / TICKS_PER_MS;
  }

  /** The origin as last read whole (readOrigin), in fields: no allocation per read. */
  private originMs = 0;
  private originTicks = 0;

  /** Reads the origin into originMs/originTicks, again until no writer moved it meanwhile. */
  private readOrigin(): void {
    const seq = this.seq;
    const origin = this.origin;
    for (;;) {
      const before = Atomics.load(seq, SEQ);
      this.originMs = origin[0]!;
      this.originTicks = origin[1]!;
      if ((before & 1) === 0 && Atomics.load(seq, SEQ) === before) return;
    }
  }

  /** Moves the origin: guest time is `ticks` at host time `nowMs`. */
  setOrigin(nowMs: number, ticks: number): void {
    const seq = this.seq;
    let s: number;
    do s = Atomics.load(seq, SEQ);
    while ((s & 1) !== 0 || Atomics.compareExchange(seq, SEQ, s, s + 1) !== s);
    this.origin[0] = nowMs;
    this.origin[1] = ticks;
    Atomics.store(seq, SEQ, s + 2);
  }

  /** Sets hart `h`'s mtimecmp from its halves. */
  setCmp(h: number, lo: number, hi: number): void {
    this.cmpLo[h] = lo;
    this.cmpHi[h] = hi;
    this.cmp[h] = (hi >>> 0) * TWO_32 + (lo >>> 0);
  }
}

/** "timebase-frequency" of QEMU virt's /cpus node, in Hz. */
export const CLINT_TIMEBASE_FREQ = 10_000_000;
const TICKS_PER_MS = CLINT_TIMEBASE_FREQ / 1000;
const TWO_32 = 4294967296;
