// Instruction classes for the real-programs profile: what kind of work one RV64GC instruction (16 or 32
// bits, as fetched) is — loads, stores, ALU, multiply, divide, branches, jumps, calls, returns, FP, atomics,
// CSR/system — decoded from its opcode fields alone.

export const INSN_CLASSES = [
  "load",
  "store",
  "alu",
  "mul",
  "div/rem",
  "branch",
  "jal (direct jump)",
  "call",
  "return",
  "jalr (indirect jump)",
  "fp arith",
  "fp div/sqrt",
  "fp move/convert/compare",
  "atomic (lr/sc/amo)",
  "csr/system/fence",
  "other",
] as const;

export type InsnClass = (typeof INSN_CLASSES)[number];

const RA = 1;
const T0 = 5;
const isLink = (r: number): boolean => r === RA || r === T0;

/** The class of a compressed (16-bit) instruction. */
function compressedClass(insn: number): InsnClass {
  const q = insn & 3;
  const f3 = (insn >>> 13) & 7;
  if (q === 0) return f3 === 0 ? "alu" : f3 < 4 ? "load" : f3 === 4 ? "other" : "store";
  if (q === 1) return f3 === 5 ? "jal (direct jump)" : f3 >= 6 ? "branch" : "alu";
  // Quadrant 2.
  if (f3 === 0) return "alu";
  if (f3 < 4) return "load";
  if (f3 > 4) return "store";
  const rd = (insn >>> 7) & 31;
  const rs2 = (insn >>> 2) & 31;
  if (rs2 !== 0) return "alu"; // c.mv, c.add
  if (((insn >>> 12) & 1) === 0) return rd === RA ? "return" : "jalr (indirect jump)"; // c.jr
  return rd === 0 ? "csr/system/fence" : "call"; // c.ebreak, c.jalr
}

/** The class of a 32-bit instruction. */
function fullClass(insn: number): InsnClass {
  const rd = (insn >>> 7) & 31;
  const f3 = (insn >>> 12) & 7;
  const rs1 = (insn >>> 15) & 31;
  const f7 = insn >>> 25;
  switch (insn & 0x7f) {
    case 0x03:
    case 0x07:
      return "load";
    case 0x23:
    case 0x27:
      return "store";
    case 0x13:
    case 0x1b:
    case 0x37:
    case 0x17:
      return "alu";
    case 0x33:
    case 0x3b:
      if (f7 === 1) return f3 < 4 ? "mul" : "div/rem";
      return "alu";
    case 0x63:
      return "branch";
    case 0x6f:
      return isLink(rd) ? "call" : "jal (direct jump)";
    case 0x67:
      if (isLink(rd)) return "call";
      return rd === 0 && isLink(rs1) ? "return" : "jalr (indirect jump)";
    case 0x43:
    case 0x47:
    case 0x4b:
    case 0x4f:
      return "fp arith";
    case 0x53: {
      const op = f7 >>> 2;
      if (op === 0x03 || op === 0x0b) return "fp div/sqrt";
      return op <= 0x02 ? "fp arith" : "fp move/convert/compare";
    }
    case 0x2f:
      return "atomic (lr/sc/amo)";
    case 0x73:
    case 0x0f:
      return "csr/system/fence";
    default:
      return "other";
  }
}

/** The class of the instruction `insn` (its low 16 bits for a compressed one). */
export function insnClass(insn: number): InsnClass {
  return (insn & 3) === 3 ? fullClass(insn) : compressedClass(insn & 0xffff);
}
