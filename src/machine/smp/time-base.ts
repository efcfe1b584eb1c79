// Guest time for harts on other threads: the CLINT's time origin published in shared memory under a sequence
// lock, so a hart anywhere reads the `time` CSR as the CLINT would (origin ticks + elapsed host ms × rate),
// from a host clock every thread shares.

import { CLINT_TIMEBASE_FREQ, type Clint } from "../devices/clint.ts";
import type { Clock } from "../ports.ts";

const TICKS_PER_MS = CLINT_TIMEBASE_FREQ / 1000;
/** Int32 slot of the sequence counter (odd while the origin is being written). */
const SEQ = 0;
/** Byte offset of the two float64s: origin host ms, origin ticks. */
const ORIGIN_BYTES = 8;
export const TIME_BASE_BYTES = ORIGIN_BYTES + 16;

/** The board's side: publishes the CLINT's origin whenever it moved (reset, state loaded, mtime written). */
export class TimeBasePublisher {
  private readonly seq: Int32Array;
  private readonly origin: Float64Array;
  private readonly scratch = new Float64Array(2).fill(Number.NaN);

  constructor(
    readonly buffer: SharedArrayBuffer,
    private readonly clint: Clint,
  ) {
    this.seq = new Int32Array(buffer, 0, 1);
    this.origin = new Float64Array(buffer, ORIGIN_BYTES, 2);
    this.publish();
  }

  publish(): void {
    if (!this.clint.timeBase(this.scratch)) return;
    Atomics.add(this.seq, SEQ, 1);
    this.origin[0] = this.scratch[0]!;
    this.origin[1] = this.scratch[1]!;
    Atomics.add(this.seq, SEQ, 1);
  }
}

/** A hart's side: `mtime()` as the CLINT computes it, for the hart's `time` CSR. */
export class TimeBaseReader {
  private readonly seq: Int32Array;
  private readonly origin: Float64Array;

  constructor(
    buffer: SharedArrayBuffer,
    private readonly clock: Clock,
  ) {
    this.seq = new Int32Array(buffer, 0, 1);
    this.origin = new Float64Array(buffer, ORIGIN_BYTES, 2);
  }

  mtime(): number {
    for (;;) {
      const before = Atomics.load(this.seq, SEQ);
      const originMs = this.origin[0]!;
      const originTicks = this.origin[1]!;
      if ((before & 1) !== 0 || Atomics.load(this.seq, SEQ) !== before) continue;
      const elapsed = this.clock.nowMs() - originMs;
      return Math.floor(originTicks + (elapsed > 0 ? elapsed * TICKS_PER_MS : 0));
    }
  }
}
