// A small seeded pseudo-random generator (mulberry32) for guest-hostile fuzzing: the same seed gives the same
// inputs on every host, so a failure names a seed that reproduces it.

export class SeededRandom {
  private state: number;

  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }

  /** A uniformly distributed unsigned 32-bit integer. */
  u32(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  }

  /** An integer in [0, n) for 1 ≤ n ≤ 2^32. */
  below(n: number): number {
    return Math.floor((this.u32() / 4294967296) * n);
  }

  /** True with probability p. */
  chance(p: number): boolean {
    return this.u32() / 4294967296 < p;
  }

  pick<T>(xs: readonly T[]): T {
    return xs[this.below(xs.length)]!;
  }

  /** A 32-bit value a hostile guest likes: the edges (0, 1, all ones, the sign bit, small numbers) half the
   *  time, else anything. */
  value32(): number {
    switch (this.below(8)) {
      case 0:
        return 0;
      case 1:
        return 1;
      case 2:
        return 0xffffffff;
      case 3:
        return 0x80000000 + this.below(2) * 0x7fffffff;
      case 4:
        return this.below(16);
      default:
        return this.u32();
    }
  }
}
