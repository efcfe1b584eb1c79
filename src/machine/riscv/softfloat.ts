// Exact IEEE 754-2008 binary32/binary64 arithmetic as the RISC-V F and D extensions require it (unprivileged
// spec, chapters "F" and "D"): integer significands in 32-bit words, all five rounding modes, and the five
// exception flags with tininess detected after rounding.
//
// JS numbers only round to nearest-even and hide the inexact/underflow conditions, so every operation here
// forms its exact result (or an exact result plus a sticky bit) as an integer in a few 32-bit words and rounds
// it once in roundPack. Scratch words are preallocated: nothing is allocated per operation. Significands of
// unpacked operands (at most 53 bits) are held in JS numbers, which represent such integers exactly.

import * as fast from "./fpu-fast-double.ts";

// Imported bindings copied into module constants (a loader compiling to CommonJS makes each use a getter call).
const FAST_INEXACT = fast.FAST_INEXACT;
const addD = fast.addD;
const mulD = fast.mulD;
const divD = fast.divD;
const sqrtD = fast.sqrtD;
const fmaD = fast.fmaD;
const twoSumErr = fast.twoSumErr;

export const FMT_S = 0;
export const FMT_D = 1;

export const RM_RNE = 0;
export const RM_RTZ = 1;
export const RM_RDN = 2;
export const RM_RUP = 3;
export const RM_RMM = 4;

export const FFLAGS_NV = 16;
export const FFLAGS_DZ = 8;
export const FFLAGS_OF = 4;
export const FFLAGS_UF = 2;
export const FFLAGS_NX = 1;

/** Integer conversion kinds, in the order of the rs2 field of FCVT.W/WU/L/LU. */
export const CVT_W = 0;
export const CVT_WU = 1;
export const CVT_L = 2;
export const CVT_LU = 3;

/** The canonical NaNs: "the canonical NaN has a positive sign and all significand bits clear except the MSB". */
export const CANONICAL_NAN_S = 0x7fc00000;
export const CANONICAL_NAN_D_HI = 0x7ff80000;

/**
 * Result of the last operation: a single in `lo` (with `hi` = -1, its NaN-box), a double or a 64-bit integer
 * in `lo`/`hi` (signed 32-bit halves), and the exception flags the operation raised.
 */
export const sf = { lo: 0, hi: 0, flags: 0 };

const TWO32 = 4294967296;
const NW = 8; // 256-bit scratch integers: enough for an FMA's aligned product plus addend.

/** POW2[k] = 2^k for 0 <= k <= 64. */
const POW2 = new Float64Array(65);
for (let k = 0; k <= 64; k++) POW2[k] = 2 ** k;

const WA = new Uint32Array(NW);
const WB = new Uint32Array(NW);
const WC = new Uint32Array(NW);
const WP = new Uint32Array(NW);
const WR = new Uint32Array(NW);
const WS = new Uint32Array(NW);
const WT = new Uint32Array(NW);

// ---- word arithmetic (little-endian arrays of NW unsigned 32-bit words) ----

function setNum(w: Uint32Array, m: number): void {
  w.fill(0);
  const lo = m >>> 0; // ToUint32 is exact modulo 2^32 for integers below 2^53
  w[0] = lo;
  w[1] = (m - lo) / TWO32;
}

/** Index of the most significant set bit, or -1 for zero. */
function msb(w: Uint32Array): number {
  for (let i = NW - 1; i >= 0; i--) {
    if (w[i] !== 0) return i * 32 + 31 - Math.clz32(w[i]);
  }
  return -1;
}

/** Index of the most significant set bit of an integer 1 <= m < 2^53. */
function msbNum(m: number): number {
  if (m < TWO32) return 31 - Math.clz32(m);
  return 63 - Math.clz32(Math.floor(m / TWO32));
}

function bit(w: Uint32Array, i: number): number {
  if (i < 0 || i >= NW * 32) return 0;
  return (w[i >>> 5] >>> (i & 31)) & 1;
}

/** Whether any of bits [0, n) is set. */
function anyBelow(w: Uint32Array, n: number): boolean {
  if (n <= 0) return false;
  const full = n >>> 5;
  const lim = Math.min(full, NW);
  for (let i = 0; i < lim; i++) if (w[i] !== 0) return true;
  const rem = n & 31;
  return rem !== 0 && full < NW && w[full] << (32 - rem) !== 0;
}

/** The integer in bits [pos, pos + n) for pos >= 0 and n <= 53. */
function bitsAt(w: Uint32Array, pos: number, n: number): number {
  let r = 0;
  let i = pos;
  const end = pos + n;
  while (i < end) {
    const wi = i >>> 5;
    const off = i & 31;
    const room = 32 - off;
    const take = Math.min(room, end - i);
    if (wi < NW) {
      let v = w[wi] >>> off;
      if (take < 32) v = (v & ((1 << take) - 1)) >>> 0;
      r += v * POW2[i - pos];
    }
    i += take;
  }
  return r;
}

/** dst = src << s (bits shifted past the top are lost; callers keep results below 2^256). In-place safe. */
function shlInto(dst: Uint32Array, src: Uint32Array, s: number): void {
  const ws = s >>> 5;
  const bs = s & 31;
  for (let i = NW - 1; i >= 0; i--) {
    const j = i - ws;
    let v = 0;
    if (j >= 0) {
      v = src[j];
      if (bs !== 0) v = (v << bs) | (j > 0 ? src[j - 1] >>> (32 - bs) : 0);
    }
    dst[i] = v;
  }
}

function addInto(dst: Uint32Array, a: Uint32Array, b: Uint32Array): void {
  let c = 0;
  for (let i = 0; i < NW; i++) {
    const s = a[i] + b[i] + c;
    dst[i] = s;
    c = s >= TWO32 ? 1 : 0;
  }
}

/** dst = a - b for a >= b. */
function subInto(dst: Uint32Array, a: Uint32Array, b: Uint32Array): void {
  let c = 0;
  for (let i = 0; i < NW; i++) {
    let d = a[i] - b[i] - c;
    c = 0;
    if (d < 0) {
      d += TWO32;
      c = 1;
    }
    dst[i] = d;
  }
}

function cmpWords(a: Uint32Array, b: Uint32Array): number {
  for (let i = NW - 1; i >= 0; i--) {
    if (a[i] !== b[i]) return a[i] > b[i] ? 1 : -1;
  }
  return 0;
}

// mul32's result [lo, hi], in a typed array so that values beyond the small-integer range are not boxed.
const MUL = new Float64Array(2);

/** MUL[1]:MUL[0] = a * b for unsigned 32-bit a, b, through 16-bit halves so every partial product is exact. */
function mul32(a: number, b: number): void {
  const al = a & 0xffff;
  const ah = a >>> 16;
  const bl = b & 0xffff;
  const bh = b >>> 16;
  const mid = al * bh + ah * bl; // < 2^33
  const lo = al * bl + (mid % 65536) * 65536; // < 2^33
  MUL[0] = lo >>> 0;
  MUL[1] = ah * bh + Math.floor(mid / 65536) + (lo >= TWO32 ? 1 : 0);
}

function addAt(dst: Uint32Array, k: number, v: number): void {
  while (v !== 0 && k < NW) {
    const s = dst[k] + v;
    dst[k] = s;
    v = s >= TWO32 ? 1 : 0;
    k++;
  }
}

/** dst = a * b where a and b use only their low 4 words; dst is distinct from both. */
function mulInto(dst: Uint32Array, a: Uint32Array, b: Uint32Array): void {
  dst.fill(0);
  for (let i = 0; i < 4; i++) {
    if (a[i] === 0) continue;
    for (let j = 0; j < 4; j++) {
      if (b[j] === 0) continue;
      mul32(a[i], b[j]);
      addAt(dst, i + j, MUL[0]);
      addAt(dst, i + j + 1, MUL[1]);
    }
  }
}

// ---- unpack / pack ----

const C_ZERO = 0;
const C_FINITE = 1;
const C_INF = 2;
const C_QNAN = 3;
const C_SNAN = 4;

// The operand last unpacked: class, sign, integer significand and the exponent of its least significant bit.
// The significand (up to 2^53) lives in a typed array so that storing it does not box a heap number.
let uCls = 0;
let uSign = 0;
const U_SIG = new Float64Array(1);
let uExp = 0;

function unpack(fmt: number, lo: number, hi: number): void {
  if (fmt === FMT_S) {
    uSign = lo >>> 31;
    const ex = (lo >>> 23) & 0xff;
    const fr = lo & 0x7fffff;
    if (ex === 0xff) {
      uCls = fr === 0 ? C_INF : (fr & 0x400000) !== 0 ? C_QNAN : C_SNAN;
    } else if (ex === 0) {
      uCls = fr === 0 ? C_ZERO : C_FINITE;
      U_SIG[0] = fr;
      uExp = -149;
    } else {
      uCls = C_FINITE;
      U_SIG[0] = fr + 0x800000;
      uExp = ex - 150;
    }
    return;
  }
  uSign = hi >>> 31;
  const ex = (hi >>> 20) & 0x7ff;
  const frHi = hi & 0xfffff;
  const fr = frHi * TWO32 + (lo >>> 0);
  if (ex === 0x7ff) {
    uCls = fr === 0 ? C_INF : (frHi & 0x80000) !== 0 ? C_QNAN : C_SNAN;
  } else if (ex === 0) {
    uCls = fr === 0 ? C_ZERO : C_FINITE;
    U_SIG[0] = fr;
    uExp = -1074;
  } else {
    uCls = C_FINITE;
    U_SIG[0] = fr + 4503599627370496; // the implicit 2^52
    uExp = ex - 1075;
  }
}

function pack(sign: number, biased: number, mant: number, fmt: number): void {
  if (fmt === FMT_S) {
    sf.lo = (sign << 31) | (biased << 23) | mant;
    sf.hi = -1;
  } else {
    sf.lo = mant | 0; // ToInt32 keeps the low 32 bits exactly
    sf.hi = (sign << 31) | (biased << 20) | Math.floor(mant / TWO32);
  }
}

function packZero(sign: number, fmt: number): void {
  pack(sign, 0, 0, fmt);
}

function packInf(sign: number, fmt: number): void {
  pack(sign, fmt === FMT_S ? 0xff : 0x7ff, 0, fmt);
}

function packDefaultNaN(fmt: number): void {
  if (fmt === FMT_S) {
    sf.lo = CANONICAL_NAN_S;
    sf.hi = -1;
  } else {
    sf.lo = 0;
    sf.hi = CANONICAL_NAN_D_HI;
  }
}

function invalid(fmt: number): void {
  sf.flags |= FFLAGS_NV;
  packDefaultNaN(fmt);
}

// Set by roundAt: whether the bits it dropped were not all zero.
let rInexact = false;

/**
 * Rounds the integer w (most significant bit p) to drop its low `shift` bits under rm and returns the kept
 * integer (which may have carried to one bit more). shift <= 0 means the value is kept exactly, scaled up.
 */
function roundAt(w: Uint32Array, shift: number, p: number, sign: number, rm: number): number {
  if (shift <= 0) {
    rInexact = false;
    return bitsAt(w, 0, p + 1) * POW2[-shift];
  }
  let kept = p >= shift ? bitsAt(w, shift, p - shift + 1) : 0;
  const half = bit(w, shift - 1);
  const sticky = anyBelow(w, shift - 1);
  rInexact = half !== 0 || sticky;
  if (!rInexact) return kept;
  switch (rm) {
    case RM_RNE:
      if (half !== 0 && (sticky || kept % 2 === 1)) kept++;
      break;
    case RM_RDN:
      if (sign !== 0) kept++;
      break;
    case RM_RUP:
      if (sign === 0) kept++;
      break;
    case RM_RMM:
      if (half !== 0) kept++;
      break;
    default: // RM_RTZ truncates
      break;
  }
  return kept;
}

function overflow(sign: number, fmt: number, rm: number): void {
  sf.flags |= FFLAGS_OF | FFLAGS_NX;
  const toInf =
    rm === RM_RNE || rm === RM_RMM || (rm === RM_RUP && sign === 0) || (rm === RM_RDN && sign !== 0);
  if (toInf) packInf(sign, fmt);
  else if (fmt === FMT_S) pack(sign, 0xfe, 0x7fffff, fmt);
  else pack(sign, 0x7fe, 4503599627370495, fmt);
}

/** Rounds (-1)^sign * w * 2^e to the format under rm, writing sf.lo/sf.hi and accruing flags. */
function roundPack(sign: number, w: Uint32Array, e: number, fmt: number, rm: number): void {
  const P = fmt === FMT_S ? 24 : 53;
  const emin = fmt === FMT_S ? -126 : -1022;
  const emax = fmt === FMT_S ? 127 : 1023;
  const p = msb(w);
  if (p < 0) {
    packZero(sign, fmt);
    return;
  }
  let E = p + e; // exponent of the leading bit
  let shift = p - (P - 1);
  let tiny = false;
  if (E < emin) {
    // "Tininess is detected after rounding": tiny unless rounding to P bits with an unbounded exponent
    // range reaches 2^emin, which only a value in the binade just below can do.
    tiny = !(E === emin - 1 && roundAt(w, shift, p, sign, rm) === POW2[P]);
    shift = emin - (P - 1) - e;
  }
  let kept = roundAt(w, shift, p, sign, rm);
  const inexact = rInexact;
  let biased: number;
  if (E >= emin) {
    if (kept === POW2[P]) {
      kept = POW2[P - 1];
      E++;
    }
    if (E > emax) {
      overflow(sign, fmt, rm);
      return;
    }
    biased = E + emax;
    kept -= POW2[P - 1];
  } else {
    if (tiny && inexact) sf.flags |= FFLAGS_UF;
    // A subnormal that rounds up to 2^emin carries into the exponent field by itself.
    biased = kept >= POW2[P - 1] ? 1 : 0;
    if (biased === 1) kept -= POW2[P - 1];
  }
  if (inexact) sf.flags |= FFLAGS_NX;
  pack(sign, biased, kept, fmt);
}

/** NaN result of an operation with a NaN operand: "the canonical NaN", and NV for a signalling one. */
function nanResult(fmt: number, c1: number, c2: number, c3: number): void {
  if (c1 === C_SNAN || c2 === C_SNAN || c3 === C_SNAN) sf.flags |= FFLAGS_NV;
  packDefaultNaN(fmt);
}

// The larger-magnitude term of a sum moves left by this much when the other lies entirely below its rounding
// position; the other then only contributes its sign and non-zeroness. Must exceed P + 3 = 56.
const ADD_GAP = 64;

/** Rounds (-1)^sx * X * 2^ex + (-1)^sy * Y * 2^ey (both non-zero, each below 2^106). */
function addTerms(
  sx: number,
  X: Uint32Array,
  ex: number,
  sy: number,
  Y: Uint32Array,
  ey: number,
  fmt: number,
  rm: number,
): void {
  let px = msb(X);
  let py = msb(Y);
  if (px + ex < py + ey) {
    const tw = X;
    X = Y;
    Y = tw;
    let t = sx;
    sx = sy;
    sy = t;
    t = ex;
    ex = ey;
    ey = t;
    t = px;
    px = py;
    py = t;
  }
  let e: number;
  if (px + ex - (py + ey) > ADD_GAP) {
    shlInto(WS, X, ADD_GAP);
    setNum(WT, 1);
    e = ex - ADD_GAP;
  } else if (ex >= ey) {
    shlInto(WS, X, ex - ey);
    WT.set(Y);
    e = ey;
  } else {
    WS.set(X);
    shlInto(WT, Y, ey - ex);
    e = ex;
  }
  let sign = sx;
  if (sx === sy) {
    addInto(WR, WS, WT);
  } else {
    const c = cmpWords(WS, WT);
    if (c === 0) {
      // "x + (-x) = +0 ... except under RDN, -0" (IEEE 754-2008 6.3).
      packZero(rm === RM_RDN ? 1 : 0, fmt);
      return;
    }
    if (c > 0) {
      subInto(WR, WS, WT);
    } else {
      subInto(WR, WT, WS);
      sign = sy;
    }
  }
  roundPack(sign, WR, e, fmt, rm);
}

// ---- round-to-nearest-even fast paths ----
//
// JS arithmetic is IEEE binary64 with round-to-nearest-even, so under RNE the host computes the result and
// only the flags need proof: error-free transformations (TwoSum, Dekker's TwoProduct) tell whether the
// rounded result is exact. Singles go through binary64 and Math.fround, which rounds correctly for + - * /
// and sqrt because 53 >= 2 * 24 + 2 (double rounding is innocuous). Anything near overflow, underflow or the
// limits of the transformations, and every NaN or infinity, falls back to the exact integer path.

let fastPaths = true;

/** Turns the fast paths off (tests run the vectors through both paths) or back on. */
export function sfSetFastPaths(on: boolean): void {
  fastPaths = on;
}

const F64 = new Float64Array(1);
const F32 = new Float32Array(F64.buffer, 0, 1);
const I32 = new Int32Array(F64.buffer);
// Word order of a binary64 in a typed array follows the host's endianness.
F64[0] = 1;
const HI = I32[1] === 0x3ff00000 ? 1 : 0;
const LO = 1 - HI;

const TWO_M125 = 2 ** -125;

function toDouble(lo: number, hi: number): number {
  I32[LO] = lo;
  I32[HI] = hi;
  return F64[0];
}

function toSingle(bits: number): number {
  I32[0] = bits;
  return F32[0];
}

function putDouble(x: number): void {
  F64[0] = x;
  sf.lo = I32[LO];
  sf.hi = I32[HI];
}

function putSingle(x: number): void {
  F32[0] = x;
  sf.lo = I32[0];
  sf.hi = -1;
}

/** Puts a result of fpu-fast-double.ts in sf, or says (false) that the exact path must compute it. */
function putFastDouble(x: number): boolean {
  if (Number.isNaN(x)) return false;
  if (FAST_INEXACT[0] !== 0) sf.flags = FFLAGS_NX;
  putDouble(x);
  return true;
}

function finiteD(hi: number): boolean {
  return (hi & 0x7ff00000) !== 0x7ff00000;
}

function finiteS(bits: number): boolean {
  return (bits & 0x7f800000) !== 0x7f800000;
}

function fastAdd(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  subtract: boolean,
): boolean {
  if (fmt === FMT_D) {
    if (!finiteD(aHi) || !finiteD(bHi)) return false;
    const b = toDouble(bLo, bHi);
    return putFastDouble(addD(toDouble(aLo, aHi), subtract ? -b : b));
  }
  if (!finiteS(aLo) || !finiteS(bLo)) return false;
  const a = toSingle(aLo);
  const b = subtract ? -toSingle(bLo) : toSingle(bLo);
  const s = a + b;
  const r = Math.fround(s);
  if (r === Number.POSITIVE_INFINITY || r === Number.NEGATIVE_INFINITY) return false;
  if (r !== s || twoSumErr(a, b, s) !== 0) sf.flags = FFLAGS_NX;
  putSingle(r);
  return true;
}

function fastMul(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  if (fmt === FMT_D) {
    if (!finiteD(aHi) || !finiteD(bHi)) return false;
    return putFastDouble(mulD(toDouble(aLo, aHi), toDouble(bLo, bHi)));
  }
  if (!finiteS(aLo) || !finiteS(bLo)) return false;
  const p = toSingle(aLo) * toSingle(bLo); // exact: 48 significant bits at most
  const r = Math.fround(p);
  const m = Math.abs(r);
  if (m === Number.POSITIVE_INFINITY || (m < TWO_M125 && p !== 0)) return false;
  if (r !== p) sf.flags = FFLAGS_NX;
  putSingle(r);
  return true;
}

function fastDiv(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number): boolean {
  if (fmt === FMT_D) {
    if (!finiteD(aHi) || !finiteD(bHi)) return false;
    return putFastDouble(divD(toDouble(aLo, aHi), toDouble(bLo, bHi)));
  }
  if (!finiteS(aLo) || !finiteS(bLo)) return false;
  const a = toSingle(aLo);
  const b = toSingle(bLo);
  if (b === 0) return false;
  const r = Math.fround(a / b);
  const m = Math.abs(r);
  if (m === Number.POSITIVE_INFINITY || (m < TWO_M125 && a !== 0)) return false;
  if (r * b !== a) sf.flags = FFLAGS_NX; // r * b is exact in binary64
  putSingle(r);
  return true;
}

function fastSqrt(fmt: number, aLo: number, aHi: number): boolean {
  if (fmt === FMT_D) {
    if (!finiteD(aHi)) return false;
    return putFastDouble(sqrtD(toDouble(aLo, aHi), aHi));
  }
  if (!finiteS(aLo) || aLo < 0) return false;
  const a = toSingle(aLo);
  const r = Math.fround(Math.sqrt(a));
  if (r * r !== a) sf.flags = FFLAGS_NX; // exact in binary64
  putSingle(r);
  return true;
}

/**
 * Fused multiply-add under RNE. Doubles follow Boldo and Melquiond ("Emulation of FMA and correctly rounded
 * sums: proved algorithms using rounding to odd", IEEE TC 2008): a*b = uh + ul exactly (TwoProduct),
 * c + uh = th + tl exactly (TwoSum), then RN(th + RO(tl + ul)) is the correctly rounded a*b + c; round-to-odd
 * is emulated by nudging an even RN result towards its TwoSum error. The result is inexact exactly when
 * tl + ul was not representable, or when th + v rounded. Singles: a*b is exact in binary64, and RN(p + c)
 * rounded again to single is right unless it sits exactly on a single-precision midpoint, where the TwoSum
 * error says which way the exact value lies.
 */
function fastFma(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  cLo: number,
  cHi: number,
  negProduct: boolean,
  negAddend: boolean,
): boolean {
  if (fmt === FMT_S) {
    if (!finiteS(aLo) || !finiteS(bLo) || !finiteS(cLo)) return false;
    const p = negProduct ? -(toSingle(aLo) * toSingle(bLo)) : toSingle(aLo) * toSingle(bLo);
    const c = negAddend ? -toSingle(cLo) : toSingle(cLo);
    let s = p + c;
    const err = twoSumErr(p, c, s);
    if (err !== 0) {
      F64[0] = s;
      // A single-precision midpoint has its 29 low binary64 fraction bits equal to 1 followed by zeros.
      if ((I32[LO] & 0x1fffffff) === 0x10000000) {
        I32[LO] += err > 0 === s > 0 ? 1 : -1;
        s = F64[0];
      }
    }
    const r = Math.fround(s);
    const m = Math.abs(r);
    if (m === Number.POSITIVE_INFINITY || (m < TWO_M125 && (s !== 0 || err !== 0))) return false;
    if (err !== 0 || r !== s) sf.flags = FFLAGS_NX;
    putSingle(r);
    return true;
  }
  if (!finiteD(aHi) || !finiteD(bHi) || !finiteD(cHi)) return false;
  const a = toDouble(aLo, aHi);
  const c = toDouble(cLo, cHi);
  return putFastDouble(fmaD(negProduct ? -a : a, toDouble(bLo, bHi), negAddend ? -c : c));
}

/** FCVT.S.D under RNE and the exact FCVT.D.S, on host numbers. */
function fastCvtFF(toFmt: number, aLo: number, aHi: number): boolean {
  if (toFmt === FMT_D) {
    if (!finiteS(aLo)) return false;
    putDouble(toSingle(aLo)); // exact
    return true;
  }
  if (!finiteD(aHi)) return false;
  const x = toDouble(aLo, aHi);
  const r = Math.fround(x); // one correct RNE rounding
  const m = Math.abs(r);
  if (m === Number.POSITIVE_INFINITY || (m < TWO_M125 && x !== 0)) return false;
  if (r !== x) sf.flags = FFLAGS_NX;
  putSingle(r);
  return true;
}

const TWO_31 = 2 ** 31;
const TWO_53 = 2 ** 53;

/** Float to integer for results that fit well inside the range: any rounding mode, on host numbers. */
function fastCvtToInt(fmt: number, aLo: number, aHi: number, kind: number, rm: number): boolean {
  let x: number;
  if (fmt === FMT_S) {
    if (!finiteS(aLo)) return false;
    x = toSingle(aLo);
  } else {
    if (!finiteD(aHi)) return false;
    x = toDouble(aLo, aHi);
  }
  let t = Math.trunc(x);
  const f = x - t; // exact: the fraction, with the sign of x
  if (f !== 0) {
    const away = f > 0 ? 1 : -1;
    const af = f > 0 ? f : -f;
    switch (rm) {
      case RM_RNE:
        if (af > 0.5 || (af === 0.5 && t % 2 !== 0)) t += away;
        break;
      case RM_RDN:
        if (f < 0) t -= 1;
        break;
      case RM_RUP:
        if (f > 0) t += 1;
        break;
      case RM_RMM:
        if (af >= 0.5) t += away;
        break;
      default:
        break;
    }
  }
  if (kind === CVT_W || kind === CVT_WU) {
    if (kind === CVT_W ? t < -TWO_31 || t >= TWO_31 : t < 0 || t >= TWO32) return false;
    sf.lo = t | 0; // FCVT.WU's 32-bit result is sign-extended like FCVT.W's
    sf.hi = sf.lo >> 31;
  } else {
    if ((kind === CVT_LU && t < 0) || t >= TWO_53 || t <= -TWO_53) return false;
    const hi = Math.floor(t / TWO32);
    sf.lo = (t - hi * TWO32) | 0;
    sf.hi = hi | 0;
  }
  if (f !== 0) sf.flags = FFLAGS_NX;
  return true;
}

/** Integer to float when the integer is exactly representable: any rounding mode. */
function fastCvtFromInt(fmt: number, lo: number, hi: number, kind: number): boolean {
  let v: number;
  switch (kind) {
    case CVT_W:
      v = lo | 0;
      break;
    case CVT_WU:
      v = lo >>> 0;
      break;
    case CVT_L:
      // hi:lo as a signed 64-bit value; exact as a number only below 2^53 in magnitude.
      if (hi > 0x1fffff || hi < -0x200000) return false;
      v = hi * TWO32 + (lo >>> 0);
      break;
    default:
      if (hi >>> 0 > 0x1fffff) return false;
      v = (hi >>> 0) * TWO32 + (lo >>> 0);
      break;
  }
  if (fmt === FMT_D) {
    if (v >= TWO_53 || v <= -TWO_53) return false;
    putDouble(v);
    return true;
  }
  if (v > 0x1000000 || v < -0x1000000) return false; // 2^24: every smaller integer is a single
  putSingle(v);
  return true;
}

// ---- operations: each clears sf.flags, then leaves its result and flags in sf ----

/** a + b, or a - b when `subtract`. */
export function sfAdd(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  subtract: boolean,
  rm: number,
): void {
  sf.flags = 0;
  if (rm === RM_RNE && fastPaths && fastAdd(fmt, aLo, aHi, bLo, bHi, subtract)) return;
  unpack(fmt, aLo, aHi);
  const ac = uCls;
  const as = uSign;
  const am = U_SIG[0];
  const ae = uExp;
  unpack(fmt, bLo, bHi);
  const bc = uCls;
  const bs = uSign ^ (subtract ? 1 : 0);
  if (ac >= C_QNAN || bc >= C_QNAN) {
    nanResult(fmt, ac, bc, C_ZERO);
    return;
  }
  if (ac === C_INF || bc === C_INF) {
    if (ac === C_INF && bc === C_INF && as !== bs) {
      invalid(fmt);
      return;
    }
    packInf(ac === C_INF ? as : bs, fmt);
    return;
  }
  if (ac === C_ZERO && bc === C_ZERO) {
    packZero(as === bs ? as : rm === RM_RDN ? 1 : 0, fmt);
    return;
  }
  if (bc === C_ZERO) {
    setNum(WA, am);
    roundPack(as, WA, ae, fmt, rm);
    return;
  }
  setNum(WB, U_SIG[0]);
  if (ac === C_ZERO) {
    roundPack(bs, WB, uExp, fmt, rm);
    return;
  }
  setNum(WA, am);
  addTerms(as, WA, ae, bs, WB, uExp, fmt, rm);
}

export function sfMul(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number, rm: number): void {
  sf.flags = 0;
  if (rm === RM_RNE && fastPaths && fastMul(fmt, aLo, aHi, bLo, bHi)) return;
  unpack(fmt, aLo, aHi);
  const ac = uCls;
  const as = uSign;
  const am = U_SIG[0];
  const ae = uExp;
  unpack(fmt, bLo, bHi);
  const bc = uCls;
  if (ac >= C_QNAN || bc >= C_QNAN) {
    nanResult(fmt, ac, bc, C_ZERO);
    return;
  }
  const sign = as ^ uSign;
  if (ac === C_INF || bc === C_INF) {
    if (ac === C_ZERO || bc === C_ZERO) {
      invalid(fmt);
      return;
    }
    packInf(sign, fmt);
    return;
  }
  if (ac === C_ZERO || bc === C_ZERO) {
    packZero(sign, fmt);
    return;
  }
  setNum(WA, am);
  setNum(WB, U_SIG[0]);
  mulInto(WR, WA, WB);
  roundPack(sign, WR, ae + uExp, fmt, rm);
}

export function sfDiv(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number, rm: number): void {
  sf.flags = 0;
  if (rm === RM_RNE && fastPaths && fastDiv(fmt, aLo, aHi, bLo, bHi)) return;
  unpack(fmt, aLo, aHi);
  const ac = uCls;
  const as = uSign;
  const am = U_SIG[0];
  const ae = uExp;
  unpack(fmt, bLo, bHi);
  const bc = uCls;
  if (ac >= C_QNAN || bc >= C_QNAN) {
    nanResult(fmt, ac, bc, C_ZERO);
    return;
  }
  const sign = as ^ uSign;
  if (ac === C_INF) {
    if (bc === C_INF) invalid(fmt);
    else packInf(sign, fmt);
    return;
  }
  if (bc === C_INF) {
    packZero(sign, fmt);
    return;
  }
  if (bc === C_ZERO) {
    if (ac === C_ZERO) {
      invalid(fmt);
      return;
    }
    sf.flags |= FFLAGS_DZ;
    packInf(sign, fmt);
    return;
  }
  if (ac === C_ZERO) {
    packZero(sign, fmt);
    return;
  }
  // Both significands normalised to 53 bits, so the quotient lies in (1/2, 2) and every remainder step
  // (r < 2b < 2^54, and even after doubling) is exact in a JS number.
  const sa = 52 - msbNum(am);
  const sb = 52 - msbNum(U_SIG[0]);
  const ma = am * POW2[sa];
  const mb = U_SIG[0] * POW2[sb];
  const Q = fmt === FMT_S ? 26 : 55; // quotient bits below the leading one: P + 2, so round and sticky fit
  WR.fill(0);
  let r = ma;
  for (let i = Q; i >= 0; i--) {
    if (r >= mb) {
      r -= mb;
      WR[i >>> 5] |= 1 << (i & 31);
    }
    r *= 2;
  }
  if (r !== 0) WR[0] |= 1; // sticky: the quotient is not exact
  roundPack(sign, WR, ae - sa - (uExp - sb) - Q, fmt, rm);
}

export function sfSqrt(fmt: number, aLo: number, aHi: number, rm: number): void {
  sf.flags = 0;
  if (rm === RM_RNE && fastPaths && fastSqrt(fmt, aLo, aHi)) return;
  unpack(fmt, aLo, aHi);
  if (uCls >= C_QNAN) {
    nanResult(fmt, uCls, C_ZERO, C_ZERO);
    return;
  }
  if (uCls === C_ZERO) {
    packZero(uSign, fmt);
    return;
  }
  if (uSign !== 0) {
    invalid(fmt);
    return;
  }
  if (uCls === C_INF) {
    packInf(0, fmt);
    return;
  }
  // N = m * 2^(2K) with m normalised to 53 or 54 bits and the exponent made even; floor(sqrt(N)) then has
  // at least P + 2 bits, and a non-zero remainder becomes the sticky bit.
  const s = 52 - msbNum(U_SIG[0]);
  let m = U_SIG[0] * POW2[s];
  let e = uExp - s;
  if ((e & 1) !== 0) {
    m *= 2;
    e -= 1;
  }
  const K = fmt === FMT_S ? 0 : 28;
  setNum(WT, m);
  shlInto(WA, WT, 2 * K);
  // Digit-by-digit square root: WR = root so far, WB = remainder.
  WR.fill(0);
  WB.fill(0);
  let top = msb(WA);
  if ((top & 1) === 0) top++;
  for (let i = top - 1; i >= 0; i -= 2) {
    shlInto(WB, WB, 2);
    WB[0] |= (bit(WA, i + 1) << 1) | bit(WA, i);
    shlInto(WT, WR, 2);
    WT[0] |= 1;
    shlInto(WR, WR, 1);
    if (cmpWords(WB, WT) >= 0) {
      subInto(WB, WB, WT);
      WR[0] |= 1;
    }
  }
  if (msb(WB) >= 0) WR[0] |= 1;
  roundPack(0, WR, e / 2 - K, fmt, rm);
}

/** (-1)^negProduct * a * b + (-1)^negAddend * c with a single rounding. */
export function sfFma(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  cLo: number,
  cHi: number,
  negProduct: boolean,
  negAddend: boolean,
  rm: number,
): void {
  sf.flags = 0;
  if (rm === RM_RNE && fastPaths && fastFma(fmt, aLo, aHi, bLo, bHi, cLo, cHi, negProduct, negAddend)) return;
  unpack(fmt, aLo, aHi);
  const ac = uCls;
  const as = uSign;
  const am = U_SIG[0];
  const ae = uExp;
  unpack(fmt, bLo, bHi);
  const bc = uCls;
  const bs = uSign;
  const bm = U_SIG[0];
  const be = uExp;
  unpack(fmt, cLo, cHi);
  const cc = uCls;
  const cs = uSign ^ (negAddend ? 1 : 0);
  // "The fused multiply-add instructions must set the invalid operation exception flag when the
  // multiplicands are infinity and zero, even when the addend is a quiet NaN."
  if ((ac === C_INF && bc === C_ZERO) || (ac === C_ZERO && bc === C_INF)) {
    nanResult(fmt, ac, bc, cc);
    invalid(fmt);
    return;
  }
  if (ac >= C_QNAN || bc >= C_QNAN || cc >= C_QNAN) {
    nanResult(fmt, ac, bc, cc);
    return;
  }
  const sp = as ^ bs ^ (negProduct ? 1 : 0);
  if (ac === C_INF || bc === C_INF) {
    if (cc === C_INF && cs !== sp) {
      invalid(fmt);
      return;
    }
    packInf(sp, fmt);
    return;
  }
  if (cc === C_INF) {
    packInf(cs, fmt);
    return;
  }
  if (ac === C_ZERO || bc === C_ZERO) {
    if (cc === C_ZERO) {
      packZero(sp === cs ? sp : rm === RM_RDN ? 1 : 0, fmt);
      return;
    }
    setNum(WC, U_SIG[0]);
    roundPack(cs, WC, uExp, fmt, rm);
    return;
  }
  setNum(WA, am);
  setNum(WB, bm);
  mulInto(WP, WA, WB);
  if (cc === C_ZERO) {
    roundPack(sp, WP, ae + be, fmt, rm);
    return;
  }
  setNum(WC, U_SIG[0]);
  addTerms(sp, WP, ae + be, cs, WC, uExp, fmt, rm);
}

/** Converts between single and double (FCVT.S.D, FCVT.D.S). */
export function sfCvtFF(toFmt: number, fromFmt: number, aLo: number, aHi: number, rm: number): void {
  sf.flags = 0;
  if (fastPaths && (toFmt === FMT_D || rm === RM_RNE) && fastCvtFF(toFmt, aLo, aHi)) return;
  unpack(fromFmt, aLo, aHi);
  if (uCls >= C_QNAN) {
    nanResult(toFmt, uCls, C_ZERO, C_ZERO);
    return;
  }
  if (uCls === C_INF) {
    packInf(uSign, toFmt);
    return;
  }
  if (uCls === C_ZERO) {
    packZero(uSign, toFmt);
    return;
  }
  setNum(WA, U_SIG[0]);
  roundPack(uSign, WA, uExp, toFmt, rm);
}

/**
 * FCVT.{W,WU,L,LU}.{S,D}: the 64-bit integer result in sf.lo/sf.hi (32-bit results sign-extended, as RV64
 * writes them). Out-of-range inputs saturate and raise NV only, per the spec's table: NaN and too-large
 * positive values give the maximum, too-negative values the minimum.
 */
export function sfCvtToInt(fmt: number, aLo: number, aHi: number, kind: number, rm: number): void {
  sf.flags = 0;
  if (fastPaths && fastCvtToInt(fmt, aLo, aHi, kind, rm)) return;
  unpack(fmt, aLo, aHi);
  let neg = uSign;
  let magLo = 0;
  let magHi = 0;
  let inexact = false;
  let ok = true;
  if (uCls >= C_QNAN) {
    ok = false;
    neg = 0;
  } else if (uCls === C_INF) {
    ok = false;
  } else if (uCls === C_FINITE) {
    setNum(WA, U_SIG[0]);
    if (uExp >= 0) {
      if (msbNum(U_SIG[0]) + uExp >= 64) {
        ok = false;
      } else {
        shlInto(WB, WA, uExp);
        magLo = WB[0];
        magHi = WB[1];
      }
    } else {
      const kept = roundAt(WA, -uExp, msb(WA), neg, rm);
      inexact = rInexact;
      magLo = kept >>> 0;
      magHi = (kept - magLo) / TWO32;
    }
    if (ok) {
      switch (kind) {
        case CVT_W:
          ok = magHi === 0 && magLo <= (neg !== 0 ? 0x80000000 : 0x7fffffff);
          break;
        case CVT_WU:
          ok = neg !== 0 ? magHi === 0 && magLo === 0 : magHi === 0;
          break;
        case CVT_L:
          ok = neg !== 0 ? magHi < 0x80000000 || (magHi === 0x80000000 && magLo === 0) : magHi < 0x80000000;
          break;
        default:
          ok = neg === 0 || (magHi === 0 && magLo === 0);
          break;
      }
    }
  }
  if (!ok) {
    sf.flags |= FFLAGS_NV;
    switch (kind) {
      case CVT_W:
        sf.lo = neg !== 0 ? -0x80000000 : 0x7fffffff;
        sf.hi = neg !== 0 ? -1 : 0;
        break;
      case CVT_WU:
      case CVT_LU:
        sf.lo = neg !== 0 ? 0 : -1;
        sf.hi = sf.lo;
        break;
      default:
        sf.lo = neg !== 0 ? 0 : -1;
        sf.hi = neg !== 0 ? -0x80000000 : 0x7fffffff;
        break;
    }
    return;
  }
  if (inexact) sf.flags |= FFLAGS_NX;
  let lo = magLo | 0;
  let hi = magHi | 0;
  if (neg !== 0) {
    lo = -magLo | 0;
    hi = (~magHi + (magLo === 0 ? 1 : 0)) | 0;
  }
  if (kind === CVT_W || kind === CVT_WU) hi = lo >> 31;
  sf.lo = lo;
  sf.hi = hi;
}

/** FCVT.{S,D}.{W,WU,L,LU}: the integer operand is the 64-bit register value in lo/hi. */
export function sfCvtFromInt(fmt: number, lo: number, hi: number, kind: number, rm: number): void {
  sf.flags = 0;
  if (fastPaths && fastCvtFromInt(fmt, lo, hi, kind)) return;
  WA.fill(0);
  let neg = 0;
  switch (kind) {
    case CVT_W:
      neg = lo < 0 ? 1 : 0;
      WA[0] = neg !== 0 ? -lo : lo;
      break;
    case CVT_WU:
      WA[0] = lo;
      break;
    case CVT_L:
      neg = hi < 0 ? 1 : 0;
      if (neg !== 0) {
        WA[0] = -lo;
        WA[1] = ~hi + ((lo | 0) === 0 ? 1 : 0);
      } else {
        WA[0] = lo;
        WA[1] = hi;
      }
      break;
    default:
      WA[0] = lo;
      WA[1] = hi;
      break;
  }
  roundPack(neg, WA, 0, fmt, rm); // zero comes out as +0: neg is only set for a non-zero value
}

/** Whether the operand is a signalling NaN. */
function isSnan(fmt: number, lo: number, hi: number): boolean {
  unpack(fmt, lo, hi);
  return uCls === C_SNAN;
}

function isNan(fmt: number, lo: number, hi: number): boolean {
  unpack(fmt, lo, hi);
  return uCls >= C_QNAN;
}

/** Orders two non-NaN operands by value except that -0 < +0: returns -1, 0 or 1. */
function totalCmp(fmt: number, aLo: number, aHi: number, bLo: number, bHi: number): number {
  const aNeg = fmt === FMT_S ? aLo < 0 : aHi < 0;
  const bNeg = fmt === FMT_S ? bLo < 0 : bHi < 0;
  if (aNeg !== bNeg) return aNeg ? -1 : 1;
  let c: number;
  if (fmt === FMT_S) {
    const a = aLo & 0x7fffffff;
    const b = bLo & 0x7fffffff;
    c = a === b ? 0 : a < b ? -1 : 1;
  } else {
    const ah = aHi & 0x7fffffff;
    const bh = bHi & 0x7fffffff;
    const al = aLo >>> 0;
    const bl = bLo >>> 0;
    c = ah !== bh ? (ah < bh ? -1 : 1) : al === bl ? 0 : al < bl ? -1 : 1;
  }
  return aNeg ? -c : c;
}

function isZero(fmt: number, lo: number, hi: number): boolean {
  return fmt === FMT_S ? (lo & 0x7fffffff) === 0 : (hi & 0x7fffffff) === 0 && lo === 0;
}

/**
 * FEQ/FLT/FLE: returns -1, 0, 1 by value, or 2 when unordered. NV for any NaN if `signaling` (FLT, FLE),
 * otherwise only for a signalling NaN (FEQ).
 */
export function sfCompare(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  signaling: boolean,
): number {
  sf.flags = 0;
  const aNan = isNan(fmt, aLo, aHi);
  const aSnan = uCls === C_SNAN;
  const bNan = isNan(fmt, bLo, bHi);
  const bSnan = uCls === C_SNAN;
  if (aNan || bNan) {
    if (signaling || aSnan || bSnan) sf.flags |= FFLAGS_NV;
    return 2;
  }
  if (isZero(fmt, aLo, aHi) && isZero(fmt, bLo, bHi)) return 0;
  return totalCmp(fmt, aLo, aHi, bLo, bHi);
}

/**
 * FMIN/FMAX as the 2019 spec defines them (IEEE 754-2019 minimumNumber/maximumNumber): -0 < +0, a single
 * NaN operand yields the other operand, two NaNs the canonical NaN, and a signalling NaN raises NV.
 */
export function sfMinMax(
  fmt: number,
  aLo: number,
  aHi: number,
  bLo: number,
  bHi: number,
  max: boolean,
): void {
  sf.flags = 0;
  if (isSnan(fmt, aLo, aHi) || isSnan(fmt, bLo, bHi)) sf.flags |= FFLAGS_NV;
  const aNan = isNan(fmt, aLo, aHi);
  const bNan = isNan(fmt, bLo, bHi);
  let takeA: boolean;
  if (aNan && bNan) {
    packDefaultNaN(fmt);
    return;
  }
  if (aNan) takeA = false;
  else if (bNan) takeA = true;
  else {
    const c = totalCmp(fmt, aLo, aHi, bLo, bHi);
    takeA = max ? c >= 0 : c <= 0;
  }
  sf.lo = takeA ? aLo : bLo;
  sf.hi = fmt === FMT_S ? -1 : takeA ? aHi : bHi;
}

/** FCLASS: the 10-bit mask (bit 0 -inf ... bit 7 +inf, bit 8 signalling NaN, bit 9 quiet NaN). */
export function sfClass(fmt: number, lo: number, hi: number): number {
  unpack(fmt, lo, hi);
  switch (uCls) {
    case C_SNAN:
      return 1 << 8;
    case C_QNAN:
      return 1 << 9;
    case C_INF:
      return uSign !== 0 ? 1 << 0 : 1 << 7;
    case C_ZERO:
      return uSign !== 0 ? 1 << 3 : 1 << 4;
    default: {
      const subnormal = U_SIG[0] < (fmt === FMT_S ? 0x800000 : 4503599627370496);
      if (uSign !== 0) return subnormal ? 1 << 2 : 1 << 1;
      return subnormal ? 1 << 5 : 1 << 6;
    }
  }
}
