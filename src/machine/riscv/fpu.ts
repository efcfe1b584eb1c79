// Decode and execution of the RV64 "F" and "D" standard extensions (unprivileged spec chapters 11 and 12:
// LOAD-FP, STORE-FP, the fused multiply-adds and OP-FP) over a hart's raw FP register bits.
//
// Registers are never read into a JS number and written back: moves, sign injection, loads and stores work
// on the raw bits, so NaN payloads survive; arithmetic goes through softfloat.ts, which rounds exactly.

import * as softfloat from "./softfloat.ts";

// Imported bindings copied into module constants: a loader that compiles modules to CommonJS (tsx) turns
// every use of an imported name into a getter call, which would cost more than the operation itself.
const FMT_D = softfloat.FMT_D;
const FMT_S = softfloat.FMT_S;
const sf = softfloat.sf;
const sfAdd = softfloat.sfAdd;
const sfClass = softfloat.sfClass;
const sfCompare = softfloat.sfCompare;
const sfCvtFF = softfloat.sfCvtFF;
const sfCvtFromInt = softfloat.sfCvtFromInt;
const sfCvtToInt = softfloat.sfCvtToInt;
const sfDiv = softfloat.sfDiv;
const sfFma = softfloat.sfFma;
const sfMinMax = softfloat.sfMinMax;
const sfMul = softfloat.sfMul;
const sfSqrt = softfloat.sfSqrt;

/** What the FPU needs from a hart (Rv64Hart implements it structurally). */
export interface FpuHost {
  /** Integer registers: x[2i] = low 32 bits, x[2i+1] = high 32 bits; x0 (indices 0/1) is never written. */
  readonly x: Int32Array;
  /** FP registers as raw bits, same layout. */
  readonly fr: Int32Array;
  /** Accrued exception flags NV=16 DZ=8 OF=4 UF=2 NX=1. */
  fflags: number;
  /** Dynamic rounding mode 0..4 (RNE, RTZ, RDN, RUP, RMM); 5..7 are invalid. */
  frm: number;
  /** Result of loadFp64. */
  tmpLo: number;
  tmpHi: number;
  /** Loads 32 bits at virtual address (lo, hi); throws on a fault. */
  loadFp32(lo: number, hi: number): number;
  /** Loads 64 bits into tmpLo/tmpHi; throws on a fault. */
  loadFp64(lo: number, hi: number): void;
  storeFp32(lo: number, hi: number, v: number): void;
  storeFp64(lo: number, hi: number, vlo: number, vhi: number): void;
  /** mstatus.FS != Off. */
  fpEnabled(): boolean;
  markFsDirty(): void;
  raiseIllegalInstruction(insn: number): never;
}

const OP_LOAD_FP = 0x07;
const OP_STORE_FP = 0x27;
const OP_MADD = 0x43;
const OP_MSUB = 0x47;
const OP_NMSUB = 0x4b;
const OP_NMADD = 0x4f;
const OP_FP = 0x53;

/** The dynamic rounding-mode encoding of the rm field. */
const RM_DYN = 7;

/** Upper word of a NaN-boxed single: "the upper bits of a valid NaN-boxed value must be all 1s". */
const NAN_BOX = -1;
const CANONICAL_NAN_S = 0x7fc00000;

// The address computed by effectiveAddress, [lo, hi]; a typed array so that storing a 32-bit value that is not
// a small integer does not box it on every access.
const EA = new Int32Array(2);

/** x[rs1] + sign-extended imm as a 64-bit add with carry between the halves. */
// Guest-controlled: the address is any 64-bit value; the host's load/store translates and checks it, and
// throws (a page or access fault) before executeFp changes anything.
function effectiveAddress(h: FpuHost, rs1: number, imm: number): void {
  const sum = (h.x[2 * rs1] >>> 0) + imm;
  EA[0] = sum | 0;
  EA[1] = h.x[2 * rs1 + 1] + Math.floor(sum / 4294967296);
}

/**
 * The rm field, or frm when it says DYN: "If the rounding mode is invalid [5, 6, or DYN with an invalid
 * frm], the instruction raises an illegal-instruction exception."
 */
function roundingMode(h: FpuHost, insn: number): number {
  let rm = (insn >>> 12) & 7;
  if (rm === RM_DYN) rm = h.frm;
  // Guest-controlled: rm and frm index the softfloat rounding switch; only 0..4 get through.
  if (rm > 4 || rm < 0) h.raiseIllegalInstruction(insn);
  return rm;
}

/**
 * A single-precision operand: "If [the upper bits are all 1s], the n least-significant bits of the input are
 * used as the input value, otherwise the input value is treated as an n-bit canonical NaN."
 */
function readS(h: FpuHost, r: number): number {
  return h.fr[2 * r + 1] === NAN_BOX ? h.fr[2 * r] : CANONICAL_NAN_S;
}

function writeS(h: FpuHost, rd: number, v: number): void {
  h.fr[2 * rd] = v;
  h.fr[2 * rd + 1] = NAN_BOX;
  h.markFsDirty();
}

function writeD(h: FpuHost, rd: number, lo: number, hi: number): void {
  h.fr[2 * rd] = lo;
  h.fr[2 * rd + 1] = hi;
  h.markFsDirty();
}

function writeX(h: FpuHost, rd: number, lo: number, hi: number): void {
  if (rd === 0) return;
  h.x[2 * rd] = lo;
  h.x[2 * rd + 1] = hi;
}

/** Accrues the flags of the operation just done in sf. */
function accrue(h: FpuHost): void {
  if (sf.flags !== 0) {
    h.fflags |= sf.flags;
    h.markFsDirty();
  }
}

/** Writes sf's result to f[rd] in the format and accrues its flags. */
function writeResult(h: FpuHost, fmt: number, rd: number): void {
  if (fmt === FMT_S) writeS(h, rd, sf.lo);
  else writeD(h, rd, sf.lo, sf.hi);
  accrue(h);
}

/** Executes one LOAD-FP, STORE-FP, FMADD/FMSUB/FNMSUB/FNMADD or OP-FP instruction. */
export function executeFp(h: FpuHost, insn: number): void {
  // "Any attempt to read or write [FP state] when FS=Off raises an illegal-instruction exception."
  if (!h.fpEnabled()) h.raiseIllegalInstruction(insn);
  switch (insn & 0x7f) {
    case OP_LOAD_FP:
      loadFp(h, insn);
      return;
    case OP_STORE_FP:
      storeFp(h, insn);
      return;
    case OP_MADD:
    case OP_MSUB:
    case OP_NMSUB:
    case OP_NMADD:
      fusedMultiplyAdd(h, insn);
      return;
    case OP_FP:
      opFp(h, insn);
      return;
    default:
      h.raiseIllegalInstruction(insn);
  }
}

function loadFp(h: FpuHost, insn: number): void {
  const width = (insn >>> 12) & 7;
  const rd = (insn >>> 7) & 31;
  effectiveAddress(h, (insn >>> 15) & 31, insn >> 20);
  if (width === 2) {
    // FLW: the load faults before anything changes; the loaded bits are NaN-boxed unmodified.
    writeS(h, rd, h.loadFp32(EA[0], EA[1]));
  } else if (width === 3) {
    h.loadFp64(EA[0], EA[1]);
    writeD(h, rd, h.tmpLo, h.tmpHi);
  } else {
    h.raiseIllegalInstruction(insn);
  }
}

function storeFp(h: FpuHost, insn: number): void {
  const width = (insn >>> 12) & 7;
  const rs2 = (insn >>> 20) & 31;
  effectiveAddress(h, (insn >>> 15) & 31, ((insn >> 25) << 5) | ((insn >>> 7) & 31));
  // FSW stores the low 32 bits whether or not they are NaN-boxed ("bits are not modified").
  if (width === 2) h.storeFp32(EA[0], EA[1], h.fr[2 * rs2]);
  else if (width === 3) h.storeFp64(EA[0], EA[1], h.fr[2 * rs2], h.fr[2 * rs2 + 1]);
  else h.raiseIllegalInstruction(insn);
}

function fusedMultiplyAdd(h: FpuHost, insn: number): void {
  const fmt = (insn >>> 25) & 3;
  if (fmt > FMT_D) h.raiseIllegalInstruction(insn); // H and Q are not implemented
  const rm = roundingMode(h, insn);
  const rd = (insn >>> 7) & 31;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  const rs3 = insn >>> 27;
  const op = insn & 0x7f;
  // FMSUB: a*b - c; FNMSUB: -(a*b) + c; FNMADD: -(a*b) - c.
  const negProduct = op === OP_NMSUB || op === OP_NMADD;
  const negAddend = op === OP_MSUB || op === OP_NMADD;
  if (fmt === FMT_S) {
    sfFma(FMT_S, readS(h, rs1), 0, readS(h, rs2), 0, readS(h, rs3), 0, negProduct, negAddend, rm);
  } else {
    const f = h.fr;
    sfFma(
      FMT_D,
      f[2 * rs1],
      f[2 * rs1 + 1],
      f[2 * rs2],
      f[2 * rs2 + 1],
      f[2 * rs3],
      f[2 * rs3 + 1],
      negProduct,
      negAddend,
      rm,
    );
  }
  writeResult(h, fmt, rd);
}

// OP-FP funct5 values (funct7 = funct5 << 2 | fmt).
const F5_ADD = 0x00;
const F5_SUB = 0x01;
const F5_MUL = 0x02;
const F5_DIV = 0x03;
const F5_SGNJ = 0x04;
const F5_MINMAX = 0x05;
const F5_CVT_FF = 0x08;
const F5_SQRT = 0x0b;
const F5_CMP = 0x14;
const F5_CVT_IF = 0x18; // FCVT.W/WU/L/LU.fmt: float to integer
const F5_CVT_FI = 0x1a; // FCVT.fmt.W/WU/L/LU: integer to float
const F5_MV_X_F = 0x1c; // FMV.X.W/FMV.X.D and FCLASS
const F5_MV_F_X = 0x1e; // FMV.W.X/FMV.D.X

function opFp(h: FpuHost, insn: number): void {
  const fmt = (insn >>> 25) & 3;
  if (fmt > FMT_D) h.raiseIllegalInstruction(insn);
  const funct5 = insn >>> 27;
  const funct3 = (insn >>> 12) & 7;
  const rd = (insn >>> 7) & 31;
  const rs1 = (insn >>> 15) & 31;
  const rs2 = (insn >>> 20) & 31;
  const f = h.fr;
  const s = fmt === FMT_S;
  // Operands, NaN-box checked for singles (the high words are unused for singles).
  const aLo = s ? readS(h, rs1) : f[2 * rs1];
  const aHi = s ? 0 : f[2 * rs1 + 1];
  const bLo = s ? readS(h, rs2) : f[2 * rs2];
  const bHi = s ? 0 : f[2 * rs2 + 1];
  switch (funct5) {
    case F5_ADD:
    case F5_SUB:
      sfAdd(fmt, aLo, aHi, bLo, bHi, funct5 === F5_SUB, roundingMode(h, insn));
      writeResult(h, fmt, rd);
      return;
    case F5_MUL:
      sfMul(fmt, aLo, aHi, bLo, bHi, roundingMode(h, insn));
      writeResult(h, fmt, rd);
      return;
    case F5_DIV:
      sfDiv(fmt, aLo, aHi, bLo, bHi, roundingMode(h, insn));
      writeResult(h, fmt, rd);
      return;
    case F5_SQRT:
      if (rs2 !== 0) break;
      sfSqrt(fmt, aLo, aHi, roundingMode(h, insn));
      writeResult(h, fmt, rd);
      return;
    case F5_SGNJ: {
      // Sign injection works on raw bits (payloads kept); only the sign bit comes from rs2.
      const aSignWord = s ? aLo : aHi;
      const bSign = (s ? bLo : bHi) & 0x80000000;
      let sign: number;
      if (funct3 === 0) sign = bSign;
      else if (funct3 === 1) sign = ~bSign & 0x80000000;
      else if (funct3 === 2) sign = (aSignWord ^ bSign) & 0x80000000;
      else break;
      const word = (aSignWord & 0x7fffffff) | sign;
      if (s) writeS(h, rd, word);
      else writeD(h, rd, aLo, word);
      return;
    }
    case F5_MINMAX:
      if (funct3 > 1) break;
      sfMinMax(fmt, aLo, aHi, bLo, bHi, funct3 === 1);
      writeResult(h, fmt, rd);
      return;
    case F5_CVT_FF: {
      // FCVT.S.D (fmt S, rs2 = D) and FCVT.D.S (fmt D, rs2 = S).
      const from = s ? FMT_D : FMT_S;
      if (rs2 !== from) break;
      const rm = roundingMode(h, insn);
      if (s) sfCvtFF(FMT_S, FMT_D, f[2 * rs1], f[2 * rs1 + 1], rm);
      else sfCvtFF(FMT_D, FMT_S, readS(h, rs1), 0, rm);
      writeResult(h, fmt, rd);
      return;
    }
    case F5_CMP: {
      if (funct3 > 2) break;
      // FLE (0) and FLT (1) are signalling comparisons; FEQ (2) is quiet.
      const c = sfCompare(fmt, aLo, aHi, bLo, bHi, funct3 !== 2);
      const r = funct3 === 0 ? c <= 0 : funct3 === 1 ? c < 0 : c === 0;
      writeX(h, rd, r ? 1 : 0, 0);
      accrue(h);
      return;
    }
    case F5_CVT_IF:
      if (rs2 > 3) break;
      sfCvtToInt(fmt, aLo, aHi, rs2, roundingMode(h, insn));
      writeX(h, rd, sf.lo, sf.hi);
      accrue(h);
      return;
    case F5_CVT_FI:
      if (rs2 > 3) break;
      sfCvtFromInt(fmt, h.x[2 * rs1], h.x[2 * rs1 + 1], rs2, roundingMode(h, insn));
      writeResult(h, fmt, rd);
      return;
    case F5_MV_X_F:
      if (rs2 !== 0) break;
      if (funct3 === 0) {
        // FMV.X.W moves raw bits (no NaN-box check) and sign-extends; FMV.X.D moves all 64.
        const lo = f[2 * rs1];
        writeX(h, rd, lo, s ? lo >> 31 : f[2 * rs1 + 1]);
        return;
      }
      if (funct3 === 1) {
        writeX(h, rd, sfClass(fmt, aLo, aHi), 0);
        return;
      }
      break;
    case F5_MV_F_X:
      if (rs2 !== 0 || funct3 !== 0) break;
      if (s) writeS(h, rd, h.x[2 * rs1]);
      else writeD(h, rd, h.x[2 * rs1], h.x[2 * rs1 + 1]);
      return;
    default:
      break;
  }
  h.raiseIllegalInstruction(insn);
}
