// Binary64 arithmetic under round-to-nearest-even on host numbers, with the inexact flag proved exactly: the
// fast paths of softfloat.ts and of compiled blocks (block-compiler.ts), which run FADD.D … FSQRT.D without
// leaving the block.
//
// JS arithmetic is IEEE binary64 with RNE, so the host computes the result and only the flags need proof:
// error-free transformations (TwoSum, Dekker's TwoProduct) tell whether the rounded result is exact. Each
// function returns NaN when it cannot vouch for its result (a NaN or infinite operand or result, anything near
// overflow, underflow or the limits of the transformations): the caller then takes the exact integer path,
// which also raises the right flags. Otherwise it returns the result and leaves in FAST_INEXACT[0] 1 when it
// was rounded, else 0; no other flag can arise on these paths.

/** 1 after a returned result that was rounded, else 0. */
export const FAST_INEXACT = new Int32Array(1);

const SPLIT = 134217729; // 2^27 + 1: Veltkamp's splitter for binary64
export const TWO_M960 = 2 ** -960;
export const TWO_995 = 2 ** 995;

const F64 = new Float64Array(1);
const I32 = new Int32Array(F64.buffer);
// Word order of a binary64 in a typed array follows the host's endianness.
F64[0] = 1;
const HI = I32[1] === 0x3ff00000 ? 1 : 0;
const LO = 1 - HI;

/** The rounding error of a + b = s (Knuth's TwoSum), exact when s is finite. */
export function twoSumErr(a: number, b: number, s: number): number {
  const bb = s - a;
  return a - (s - bb) + (b - bb);
}

/**
 * The rounding error of a * b = p (Dekker's TwoProduct), exact when |a|, |b| < 2^995 and |p| >= 2^-960, so
 * the split never overflows and every partial product stays above the subnormal range.
 */
export function twoProductErr(a: number, b: number, p: number): number {
  let c = SPLIT * a;
  const ah = c - (c - a);
  const al = a - ah;
  c = SPLIT * b;
  const bh = c - (c - b);
  const bl = b - bh;
  return ah * bh - p + ah * bl + al * bh + al * bl;
}

/** a + b (a − b is a + −b). A sum that lands in the subnormal range is exact, so addition never underflows. */
export function addD(a: number, b: number): number {
  const s = a + b;
  // Finite operands give a finite sum unless it overflowed: s − s is 0 exactly when s is finite.
  if (s - s !== 0) return Number.NaN;
  FAST_INEXACT[0] = twoSumErr(a, b, s) !== 0 ? 1 : 0;
  return s;
}

export function mulD(a: number, b: number): number {
  const p = a * b;
  if (p - p !== 0) return Number.NaN;
  if (a === 0 || b === 0) {
    FAST_INEXACT[0] = 0; // an exact, correctly signed zero
    return p;
  }
  const m = Math.abs(p);
  if (m < TWO_M960 || Math.abs(a) >= TWO_995 || Math.abs(b) >= TWO_995) return Number.NaN;
  FAST_INEXACT[0] = twoProductErr(a, b, p) !== 0 ? 1 : 0;
  return p;
}

export function divD(a: number, b: number): number {
  if (b === 0 || a - a !== 0 || b - b !== 0) return Number.NaN;
  const q = a / b;
  if (a === 0) {
    FAST_INEXACT[0] = 0;
    return q;
  }
  // The quotient is exact exactly when q * b reproduces a with no rounding error.
  if (Math.abs(q) >= TWO_995 || Math.abs(b) >= TWO_995 || Math.abs(a) < TWO_M960 || Math.abs(q) < TWO_M960)
    return Number.NaN;
  const p = q * b;
  FAST_INEXACT[0] = p !== a || twoProductErr(q, b, p) !== 0 ? 1 : 0;
  return q;
}

/** √a for a ≥ +0 (−0 is the slow path's: its sign bit is set). */
export function sqrtD(a: number, aHi: number): number {
  if (aHi < 0 || a - a !== 0) return Number.NaN;
  if (a === 0) {
    FAST_INEXACT[0] = 0;
    return a;
  }
  if (a < TWO_M960) return Number.NaN;
  const r = Math.sqrt(a);
  const p = r * r;
  FAST_INEXACT[0] = p !== a || twoProductErr(r, r, p) !== 0 ? 1 : 0;
  return r;
}

/**
 * a * b + c, rounded once. Boldo and Melquiond ("Emulation of FMA and correctly rounded sums: proved
 * algorithms using rounding to odd", IEEE TC 2008): a*b = uh + ul exactly (TwoProduct), c + uh = th + tl exactly
 * (TwoSum), then RN(th + RO(tl + ul)) is the correctly rounded a*b + c; round-to-odd is emulated by nudging an
 * even RN result towards its TwoSum error. The result is inexact exactly when tl + ul was not representable, or
 * when th + v rounded.
 */
export function fmaD(a: number, b: number, c: number): number {
  if (a - a !== 0 || b - b !== 0 || c - c !== 0) return Number.NaN;
  const uh = a * b;
  if (a === 0 || b === 0) {
    FAST_INEXACT[0] = 0; // an exact zero product: the sum is exact and JS gives the IEEE sign of zero
    return uh + c;
  }
  const mp = Math.abs(uh);
  if (mp < TWO_M960 || mp === Number.POSITIVE_INFINITY || Math.abs(a) >= TWO_995 || Math.abs(b) >= TWO_995)
    return Number.NaN;
  const ul = twoProductErr(a, b, uh);
  const th = c + uh;
  if (th === Number.POSITIVE_INFINITY || th === Number.NEGATIVE_INFINITY) return Number.NaN;
  const tl = twoSumErr(c, uh, th);
  let v = tl + ul;
  const w = twoSumErr(tl, ul, v);
  if (w !== 0) {
    F64[0] = v;
    if ((I32[LO] & 1) === 0) {
      // Round to odd: step the magnitude one ulp towards the exact sum. The low bit is 0, so +1 never carries.
      if (w > 0 === v > 0) I32[LO] += 1;
      else if (I32[LO] === 0) {
        I32[LO] = -1;
        I32[HI] -= 1;
      } else I32[LO] -= 1;
      v = F64[0];
    }
  }
  const z = th + v;
  const m = Math.abs(z);
  if (m === Number.POSITIVE_INFINITY || (m < TWO_M960 && (z !== 0 || w !== 0))) return Number.NaN;
  FAST_INEXACT[0] = w !== 0 || twoSumErr(th, v, z) !== 0 ? 1 : 0;
  return z;
}
