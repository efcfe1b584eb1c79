// The "C" extension for RV64 (unprivileged spec §16, RVC): every 16-bit instruction expanded to the
// 32-bit instruction it stands for, precomputed once into a 64 Ki-entry table.
//
// Table entry 0 means the encoding is reserved or not RV64C (illegal instruction): no valid expansion is 0.

const OP_LOAD = 0x03;
const OP_LOAD_FP = 0x07;
const OP_IMM = 0x13;
const OP_IMM_32 = 0x1b;
const OP_STORE = 0x23;
const OP_STORE_FP = 0x27;
const OP = 0x33;
const OP_LUI = 0x37;
const OP_32 = 0x3b;
const OP_BRANCH = 0x63;
const OP_JALR = 0x67;
const OP_JAL = 0x6f;
const EBREAK = 0x00100073;

function iType(op: number, f3: number, rd: number, rs1: number, imm: number): number {
  return ((imm & 0xfff) << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function sType(op: number, f3: number, rs1: number, rs2: number, imm: number): number {
  return (((imm >> 5) & 0x7f) << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | ((imm & 31) << 7) | op;
}
function rType(f7: number, f3: number, rd: number, rs1: number, rs2: number, op: number): number {
  return (f7 << 25) | (rs2 << 20) | (rs1 << 15) | (f3 << 12) | (rd << 7) | op;
}
function bType(f3: number, rs1: number, rs2: number, imm: number): number {
  return (
    (((imm >> 12) & 1) << 31) |
    (((imm >> 5) & 0x3f) << 25) |
    (rs2 << 20) |
    (rs1 << 15) |
    (f3 << 12) |
    (((imm >> 1) & 0xf) << 8) |
    (((imm >> 11) & 1) << 7) |
    OP_BRANCH
  );
}
function jType(rd: number, imm: number): number {
  return (
    (((imm >> 20) & 1) << 31) |
    (((imm >> 1) & 0x3ff) << 21) |
    (((imm >> 11) & 1) << 20) |
    (((imm >> 12) & 0xff) << 12) |
    (rd << 7) |
    OP_JAL
  );
}

function bit(h: number, n: number): number {
  return (h >> n) & 1;
}
function bits(h: number, hi: number, lo: number): number {
  return (h >> lo) & ((1 << (hi - lo + 1)) - 1);
}
/** Sign-extend the low `n` bits of v. */
function sext(v: number, n: number): number {
  return (v << (32 - n)) >> (32 - n);
}

/** Expand one 16-bit instruction (bits 1:0 ≠ 11) to its 32-bit form, or 0 when reserved/illegal. */
export function expandCompressed(h: number): number {
  const f3 = h >> 13;
  const rdp = bits(h, 4, 2) + 8; // rd′/rs2′
  const rs1p = bits(h, 9, 7) + 8; // rs1′/rd′
  const rd = bits(h, 11, 7);
  const rs2 = bits(h, 6, 2);
  const imm6 = sext((bit(h, 12) << 5) | bits(h, 6, 2), 6);
  // Offsets of the doubleword and word loads/stores.
  const ldOff = (bits(h, 12, 10) << 3) | (bits(h, 6, 5) << 6);
  const lwOff = (bits(h, 12, 10) << 3) | (bit(h, 6) << 2) | (bit(h, 5) << 6);
  switch (h & 3) {
    case 0:
      switch (f3) {
        case 0: {
          // C.ADDI4SPN: "nzuimm=0 are reserved" (this also makes the all-zero halfword illegal).
          const imm = (bits(h, 12, 11) << 4) | (bits(h, 10, 7) << 6) | (bit(h, 6) << 2) | (bit(h, 5) << 3);
          return imm === 0 ? 0 : iType(OP_IMM, 0, rdp, 2, imm);
        }
        case 1:
          return iType(OP_LOAD_FP, 3, rdp, rs1p, ldOff); // C.FLD
        case 2:
          return iType(OP_LOAD, 2, rdp, rs1p, lwOff); // C.LW
        case 3:
          return iType(OP_LOAD, 3, rdp, rs1p, ldOff); // C.LD
        case 5:
          return sType(OP_STORE_FP, 3, rs1p, rdp, ldOff); // C.FSD
        case 6:
          return sType(OP_STORE, 2, rs1p, rdp, lwOff); // C.SW
        case 7:
          return sType(OP_STORE, 3, rs1p, rdp, ldOff); // C.SD
        default:
          return 0;
      }
    case 1:
      switch (f3) {
        case 0:
          return iType(OP_IMM, 0, rd, rd, imm6); // C.ADDI / C.NOP (hints execute as ADDI)
        case 1:
          return rd === 0 ? 0 : iType(OP_IMM_32, 0, rd, rd, imm6); // C.ADDIW: rd=0 reserved
        case 2:
          return iType(OP_IMM, 0, rd, 0, imm6); // C.LI
        case 3: {
          if (rd === 2) {
            // C.ADDI16SP: nzimm[9|4|6|8:7|5]
            const imm = sext(
              (bit(h, 12) << 9) |
                (bit(h, 6) << 4) |
                (bit(h, 5) << 6) |
                (bits(h, 4, 3) << 7) |
                (bit(h, 2) << 5),
              10,
            );
            return imm === 0 ? 0 : iType(OP_IMM, 0, 2, 2, imm);
          }
          // C.LUI: nzimm=0 reserved.
          if (imm6 === 0) return 0;
          return ((imm6 << 12) & 0xfffff000) | (rd << 7) | OP_LUI;
        }
        case 4: {
          const f2 = bits(h, 11, 10);
          const shamt = (bit(h, 12) << 5) | bits(h, 6, 2);
          if (f2 === 0) return iType(OP_IMM, 5, rs1p, rs1p, shamt); // C.SRLI
          if (f2 === 1) return iType(OP_IMM, 5, rs1p, rs1p, shamt | 0x400); // C.SRAI
          if (f2 === 2) return iType(OP_IMM, 7, rs1p, rs1p, imm6); // C.ANDI
          const op2 = bits(h, 6, 5);
          if (bit(h, 12) === 0) {
            if (op2 === 0) return rType(0x20, 0, rs1p, rs1p, rdp, OP); // C.SUB
            if (op2 === 1) return rType(0, 4, rs1p, rs1p, rdp, OP); // C.XOR
            if (op2 === 2) return rType(0, 6, rs1p, rs1p, rdp, OP); // C.OR
            return rType(0, 7, rs1p, rs1p, rdp, OP); // C.AND
          }
          if (op2 === 0) return rType(0x20, 0, rs1p, rs1p, rdp, OP_32); // C.SUBW
          if (op2 === 1) return rType(0, 0, rs1p, rs1p, rdp, OP_32); // C.ADDW
          return 0;
        }
        case 5: {
          // C.J: imm[11|4|9:8|10|6|7|3:1|5]
          const imm = sext(
            (bit(h, 12) << 11) |
              (bit(h, 11) << 4) |
              (bits(h, 10, 9) << 8) |
              (bit(h, 8) << 10) |
              (bit(h, 7) << 6) |
              (bit(h, 6) << 7) |
              (bits(h, 5, 3) << 1) |
              (bit(h, 2) << 5),
            12,
          );
          return jType(0, imm);
        }
        default: {
          // C.BEQZ / C.BNEZ: imm[8|4:3] imm[7:6|2:1|5]
          const imm = sext(
            (bit(h, 12) << 8) |
              (bits(h, 11, 10) << 3) |
              (bits(h, 6, 5) << 6) |
              (bits(h, 4, 3) << 1) |
              (bit(h, 2) << 5),
            9,
          );
          return bType(f3 === 6 ? 0 : 1, rs1p, 0, imm);
        }
      }
    case 2: {
      const ldspOff = (bit(h, 12) << 5) | (bits(h, 6, 5) << 3) | (bits(h, 4, 2) << 6);
      const sdspOff = (bits(h, 12, 10) << 3) | (bits(h, 9, 7) << 6);
      switch (f3) {
        case 0:
          return iType(OP_IMM, 1, rd, rd, (bit(h, 12) << 5) | bits(h, 6, 2)); // C.SLLI
        case 1:
          return iType(OP_LOAD_FP, 3, rd, 2, ldspOff); // C.FLDSP
        case 2: {
          if (rd === 0) return 0; // C.LWSP: rd=0 reserved
          const off = (bit(h, 12) << 5) | (bits(h, 6, 4) << 2) | (bits(h, 3, 2) << 6);
          return iType(OP_LOAD, 2, rd, 2, off);
        }
        case 3:
          return rd === 0 ? 0 : iType(OP_LOAD, 3, rd, 2, ldspOff); // C.LDSP: rd=0 reserved
        case 4:
          if (bit(h, 12) === 0) {
            if (rs2 === 0) return rd === 0 ? 0 : iType(OP_JALR, 0, 0, rd, 0); // C.JR: rs1=0 reserved
            return rType(0, 0, rd, 0, rs2, OP); // C.MV
          }
          if (rs2 === 0) {
            if (rd === 0) return EBREAK; // C.EBREAK
            return iType(OP_JALR, 0, 1, rd, 0); // C.JALR
          }
          return rType(0, 0, rd, rd, rs2, OP); // C.ADD
        case 5:
          return sType(OP_STORE_FP, 3, 2, rs2, sdspOff); // C.FSDSP
        case 6:
          return sType(OP_STORE, 2, 2, rs2, (bits(h, 12, 9) << 2) | (bits(h, 8, 7) << 6)); // C.SWSP
        default:
          return sType(OP_STORE, 3, 2, rs2, sdspOff); // C.SDSP
      }
    }
    default:
      return 0;
  }
}

/** RVC_TABLE[h] = expansion of halfword h (0 when illegal or when h is not a 16-bit instruction). */
export const RVC_TABLE: Int32Array = (() => {
  const t = new Int32Array(65536);
  for (let h = 0; h < 65536; h++) if ((h & 3) !== 3) t[h] = expandCompressed(h);
  return t;
})();
