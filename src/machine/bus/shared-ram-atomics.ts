// Compare-and-swap on guest RAM shared between threads, for the AMOs and SC of harts running in parallel
// (unprivileged spec chapter 8 "A" extension): a 32-bit word with Atomics on Int32, a 64-bit doubleword with
// Atomics on BigInt64 (the only 64-bit atomic JavaScript has; its BigInts are made only here, on this path
// of the threaded machine), and FENCE as a full barrier.

import type { GuestRam } from "./guest-ram.ts";

export class SharedRamAtomics {
  private readonly i32: Int32Array;
  private readonly i64: BigInt64Array;
  /** Converts two int32 halves to a BigInt64 without arithmetic on BigInts. */
  private readonly halves = new Int32Array(2);
  private readonly whole = new BigInt64Array(this.halves.buffer);
  private readonly barrier = new Int32Array(new SharedArrayBuffer(4));

  constructor(ram: GuestRam) {
    this.i32 = ram.i32;
    this.i64 = new BigInt64Array(ram.buffer);
  }

  /**
   * Stores new at the naturally aligned word (`dw` false) or doubleword of int32 index `w` if it still holds
   * expected, as one atomic step against every thread; returns whether it did.
   */
  cas(w: number, dw: boolean, expLo: number, expHi: number, newLo: number, newHi: number): boolean {
    if (!dw) return Atomics.compareExchange(this.i32, w, expLo, newLo) === expLo;
    const halves = this.halves;
    halves[0] = expLo;
    halves[1] = expHi;
    const expected = this.whole[0]!;
    halves[0] = newLo;
    halves[1] = newHi;
    return Atomics.compareExchange(this.i64, w >> 1, expected, this.whole[0]!) === expected;
  }

  /** FENCE between threads: a locked read-modify-write orders every earlier access before every later one. */
  fence(): void {
    Atomics.add(this.barrier, 0, 0);
  }
}
