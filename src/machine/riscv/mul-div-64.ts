// 64-bit multiply and divide on 32-bit halves for the RISC-V "M" extension (unprivileged spec §13, RV64M).
//
// Results land in `wide` (wide[0] = low 32 bits, wide[1] = high 32 bits) so nothing is allocated per
// instruction and no BigInt is needed.

/** Result of the last operation: [low 32 bits, high 32 bits]. */
export const wide = new Int32Array(2);

const TWO_POW_32 = 4294967296;
const TWO_POW_52 = 4503599627370496;

/** Unsigned 32×32 → 64 product of a and b (any signedness in, treated as uint32) into `wide`. */
export function mulu32(a: number, b: number): void {
  const a0 = a & 0xffff;
  const a1 = a >>> 16;
  const b0 = b & 0xffff;
  const b1 = b >>> 16;
  // s < 2^34: exact in a double.
  const s = a1 * b0 + a0 * b1 + ((a0 * b0) >>> 16);
  wide[0] = Math.imul(a, b);
  wide[1] = (a1 * b1 + Math.floor(s / 65536)) | 0;
}

/** Low 64 bits of the product of two 64-bit values (MUL). */
export function mul64(al: number, ah: number, bl: number, bh: number): void {
  mulu32(al, bl);
  wide[1] = (wide[1] + Math.imul(al, bh) + Math.imul(ah, bl)) | 0;
}

/**
 * High 64 bits of the unsigned 128-bit product (MULHU), schoolbook on 16-bit digits: each column's sum of
 * products and carry stays below 2^37, exact in a double, and `& 0xffff` of such a double is its low digit.
 * (Four calls of mulu32 with float modulo cost ~330 ns a call, in a 128-bit modexp the second-largest cost.)
 */
export function mulhu64(al: number, ah: number, bl: number, bh: number): void {
  const a0 = al & 0xffff;
  const a1 = al >>> 16;
  const a2 = ah & 0xffff;
  const a3 = ah >>> 16;
  const b0 = bl & 0xffff;
  const b1 = bl >>> 16;
  const b2 = bh & 0xffff;
  const b3 = bh >>> 16;
  let c = a0 * b0;
  c = Math.floor(c / 65536) + a0 * b1 + a1 * b0;
  c = Math.floor(c / 65536) + a0 * b2 + a1 * b1 + a2 * b0;
  c = Math.floor(c / 65536) + a0 * b3 + a1 * b2 + a2 * b1 + a3 * b0;
  c = Math.floor(c / 65536) + a1 * b3 + a2 * b2 + a3 * b1;
  const r0 = c & 0xffff;
  c = Math.floor(c / 65536) + a2 * b3 + a3 * b2;
  const r1 = c & 0xffff;
  c = Math.floor(c / 65536) + a3 * b3;
  wide[0] = r0 | (r1 << 16);
  wide[1] = (c & 0xffff) | (Math.floor(c / 65536) << 16);
}

/** High 64 bits of the signed×signed product (MULH). */
export function mulh64(al: number, ah: number, bl: number, bh: number): void {
  mulhu64(al, ah, bl, bh);
  // Reinterpreting a negative operand as unsigned adds 2^64·(other operand) to the product.
  if (ah < 0) sub64From(bl, bh);
  if (bh < 0) sub64From(al, ah);
}

/** High 64 bits of the signed×unsigned product (MULHSU: rs1 signed, rs2 unsigned). */
export function mulhsu64(al: number, ah: number, bl: number, bh: number): void {
  mulhu64(al, ah, bl, bh);
  if (ah < 0) sub64From(bl, bh);
}

function sub64From(l: number, h: number): void {
  const lo = wide[0];
  const r = (lo - l) | 0;
  const borrow = lo >>> 0 < l >>> 0 ? 1 : 0;
  wide[0] = r;
  wide[1] = (wide[1] - h - borrow) | 0;
}

/** Remainder of the last `divu64`, as halves. */
export const remainder = new Int32Array(2);

// The last long division's operands and results. C's `n / d` and `n % d` become a DIVU and a REMU (or DIV and
// REM) of the same operands one after the other (libgcc's 128-bit division does it too, and RISC-V has no
// instruction for both), so the second is answered from here. The divisor 0 never matches: it returns first.
let keptAl = 0;
let keptAh = 0;
let keptBl = 0;
let keptBh = 0;
const kept = new Int32Array(4);
/** Divisions answered from the last one's results (for tests). */
export let divisionsKept = 0;

function keep(al: number, ah: number, bl: number, bh: number): void {
  keptAl = al;
  keptAh = ah;
  keptBl = bl;
  keptBh = bh;
  kept[0] = wide[0];
  kept[1] = wide[1];
  kept[2] = remainder[0];
  kept[3] = remainder[1];
}

/**
 * Unsigned 64-bit division: quotient into `wide`, remainder into `remainder`. Division by zero gives
 * quotient 2^64−1 and remainder = dividend, as the spec's table (§13.2) requires.
 */
export function divu64(al: number, ah: number, bl: number, bh: number): void {
  if (bl === 0 && bh === 0) {
    wide[0] = -1;
    wide[1] = -1;
    remainder[0] = al;
    remainder[1] = ah;
    return;
  }
  if (al === keptAl && ah === keptAh && bl === keptBl && bh === keptBh) {
    divisionsKept++;
    wide[0] = kept[0];
    wide[1] = kept[1];
    remainder[0] = kept[2];
    remainder[1] = kept[3];
    return;
  }
  const a = (ah >>> 0) * TWO_POW_32 + (al >>> 0);
  const b = (bh >>> 0) * TWO_POW_32 + (bl >>> 0);
  if (ah === 0 && bh === 0) {
    const q = Math.floor((al >>> 0) / (bl >>> 0));
    wide[0] = q | 0;
    wide[1] = 0;
    remainder[0] = ((al >>> 0) - q * (bl >>> 0)) | 0;
    remainder[1] = 0;
    return;
  }
  if (a < TWO_POW_52 && b < TWO_POW_52) {
    // Doubles are exact here; one correction step fixes the rounding of the quotient.
    let q = Math.floor(a / b);
    let r = a - q * b;
    if (r < 0) {
      q -= 1;
      r += b;
    } else if (r >= b) {
      q += 1;
      r -= b;
    }
    wide[0] = (q % TWO_POW_32) | 0;
    wide[1] = Math.floor(q / TWO_POW_32) | 0;
    remainder[0] = (r % TWO_POW_32) | 0;
    remainder[1] = Math.floor(r / TWO_POW_32) | 0;
    keep(al, ah, bl, bh);
    return;
  }
  if (ah >>> 0 < bh >>> 0 || (ah === bh && al >>> 0 < bl >>> 0)) {
    wide[0] = 0;
    wide[1] = 0;
    remainder[0] = al;
    remainder[1] = ah;
    return;
  }
  if (bh === 0) {
    // Divisor below 2^32: long division by 32- then 16-bit digits; every partial dividend is below 2^48, so
    // the doubles are exact.
    const dv = bl >>> 0;
    const uh = ah >>> 0;
    const qh = Math.floor(uh / dv);
    let r = uh - qh * dv;
    let t = r * 65536 + (al >>> 16);
    const q1 = Math.floor(t / dv);
    r = t - q1 * dv;
    t = r * 65536 + (al & 0xffff);
    const q0 = Math.floor(t / dv);
    wide[0] = (q1 * 65536 + q0) | 0;
    wide[1] = qh | 0;
    remainder[0] = (t - q0 * dv) | 0;
    remainder[1] = 0;
    keep(al, ah, bl, bh);
    return;
  }
  if (bh < 0) {
    // Divisor at least 2^63 and not above the dividend: the quotient is 1.
    wide[0] = 1;
    wide[1] = 0;
    remainder[0] = (al - bl) | 0;
    remainder[1] = (ah - bh - (al >>> 0 < bl >>> 0 ? 1 : 0)) | 0;
    return;
  }
  // 2^32 ≤ divisor < 2^63: the quotient is below 2^32 and the rounded doubles' quotient is within 1 of it (a
  // relative error of a few 2^-53). Start one below, so a − q·b is exact in 64 bits (0 ≤ it ≤ a), and step up
  // at most twice. Was a 64-step shift-and-subtract: 4.6 s of a 13 s run of 128-bit modular exponentiation.
  let q = Math.floor(a / b) - 1;
  if (q < 0) q = 0;
  const qi = q | 0;
  mulu32(qi, bl);
  const pl = wide[0];
  const ph = (wide[1] + Math.imul(qi, bh)) | 0;
  let rl = (al - pl) | 0;
  let rh = (ah - ph - (al >>> 0 < pl >>> 0 ? 1 : 0)) | 0;
  while (rh >>> 0 > bh >>> 0 || (rh === bh && rl >>> 0 >= bl >>> 0)) {
    const borrow = rl >>> 0 < bl >>> 0 ? 1 : 0;
    rl = (rl - bl) | 0;
    rh = (rh - bh - borrow) | 0;
    q++;
  }
  wide[0] = q | 0;
  wide[1] = 0;
  remainder[0] = rl;
  remainder[1] = rh;
  keep(al, ah, bl, bh);
}

/**
 * Signed 64-bit division (DIV/REM): quotient into `wide`, remainder into `remainder`. By zero: quotient −1,
 * remainder = dividend; overflow (−2^63 / −1): quotient −2^63, remainder 0 — both per §13.2.
 */
export function div64(al: number, ah: number, bl: number, bh: number): void {
  if (bl === 0 && bh === 0) {
    wide[0] = -1;
    wide[1] = -1;
    remainder[0] = al;
    remainder[1] = ah;
    return;
  }
  const negA = ah < 0;
  const negB = bh < 0;
  if (negA) {
    ah = al === 0 ? -ah | 0 : ~ah;
    al = -al | 0;
  }
  if (negB) {
    bh = bl === 0 ? -bh | 0 : ~bh;
    bl = -bl | 0;
  }
  // Magnitudes are now unsigned; −2^63 stays 0x8000…0 which is its correct unsigned magnitude.
  divu64(al, ah, bl, bh);
  if (negA !== negB) negateInPlace(wide);
  if (negA) negateInPlace(remainder);
}

function negateInPlace(v: Int32Array): void {
  const lo = v[0];
  v[1] = lo === 0 ? -v[1] | 0 : ~v[1];
  v[0] = -lo | 0;
}

// 64-bit shifts into `wide` (s in 0..63).
export function shl64(lo: number, hi: number, s: number): void {
  if (s === 0) {
    wide[0] = lo;
    wide[1] = hi;
  } else if (s < 32) {
    wide[1] = (hi << s) | (lo >>> (32 - s));
    wide[0] = lo << s;
  } else {
    wide[1] = lo << (s - 32);
    wide[0] = 0;
  }
}

export function srl64(lo: number, hi: number, s: number): void {
  if (s === 0) {
    wide[0] = lo;
    wide[1] = hi;
  } else if (s < 32) {
    wide[0] = (lo >>> s) | (hi << (32 - s));
    wide[1] = hi >>> s;
  } else {
    wide[0] = hi >>> (s - 32);
    wide[1] = 0;
  }
}

export function sra64(lo: number, hi: number, s: number): void {
  if (s === 0) {
    wide[0] = lo;
    wide[1] = hi;
  } else if (s < 32) {
    wide[0] = (lo >>> s) | (hi << (32 - s));
    wide[1] = hi >> s;
  } else {
    wide[0] = hi >> (s - 32);
    wide[1] = hi >> 31;
  }
}
