// Translates a region of RV64IMFDC instructions (unprivileged spec v20191213 chapters 2, 5, 7, 11, 12 and 16)
// starting at one guest-physical address into a JavaScript function, so hot code runs without fetch, decode or
// dispatch per instruction.
//
// A region is the straight run of instructions decoded from its start inside one 4 KiB page: at most
// MAX_BLOCK_INSNS, it stops before anything the compiler does not translate (CSRs, SYSTEM, AMOs, FENCE,
// illegal encodings: the interpreter runs those) and after an unconditional jump (JAL, JALR) that no earlier
// branch jumps past (a call back into the region, recursion, goes on), except that a `j` to code of the page
// not decoded yet is followed there (a trace: the region then holds code from several places, in the order it
// runs, and stops at code it already holds, which its last instruction jumps to). A branch or JAL whose target is an
// instruction of the region continues inside the function (a `switch` on the target's label), so loops with
// branches inside them, if/else and loop exits stay compiled, and so does a JALR that returns to the
// instruction after a call in the region; any other taken branch or jump leaves. Guest registers live in JS
// locals while the region runs and are stored back when it leaves. A region calls nothing but the 64-bit
// multiply/divide helpers, the double-precision helpers of fpu-fast-double.ts and the hart's FPU (for other
// FP arithmetic, which it runs on the register files and which never traps there: an instruction it would trap
// on leaves the region unexecuted) and never traps: a load or store (integer or FP) that misses the TLB fast
// path (TLB miss, MMIO, misalignment, a page holding code) leaves before that instruction, so the interpreter
// runs it with pc, registers and the retired count exactly where they would be, and takes any fault itself.
// (Floating point used to end regions: they averaged 3–4 instructions on FP code.)
//
// The retired count stays exact: `n` is the count at the start of the current segment (the instructions from
// one label to the next), so an exit at the j-th instruction of a segment retires n + j. The budget is never
// overrun: the hart enters a region only when all its instructions fit, and every backward jump inside it
// checks that they still do (without one, execution only moves forward, so at most all of them run).

import * as fast from "./fpu-fast-double.ts";
import * as md from "./mul-div-64.ts";
import { MSTATUS_FS } from "./priv-spec.ts";
import { RVC_TABLE as IMPORTED_RVC_TABLE } from "./rvc.ts";

const RVC_TABLE = IMPORTED_RVC_TABLE;

/** Most instructions one region holds: bounds both V8's compile time per region and one pass's length. */
export const MAX_BLOCK_INSNS = 96;
/** Mask of the hart's direct-mapped TLB index (512 entries). */
export const TLB_MASK = 511;

/**
 * The compiled form of a block. Arguments: the hart (its TLB arrays and pc/count fields), the
 * register file, RAM views, pc of the first instruction as halves, the retired count at entry and the count
 * the block must not pass. On return the hart's pcLo/pcHi/count say where execution continues, and the result
 * is the block's link slot for that exit (a branch or direct jump to a constant pc in the block's own page, or a
 * JALR to a pc in it, so the next block is known without looking it up: see `CompiledCode.exits`), or -1 for
 * any other exit.
 */
export type BlockFn = (
  h: unknown,
  x: Int32Array,
  u8: Uint8Array,
  u16: Uint16Array,
  i32: Int32Array,
  pl: number,
  ph: number,
  n: number,
  end: number,
) => number;

/** The helpers generated code calls (MULH*, divide and remainder through `wide`; double arithmetic). */
const RUNTIME = {
  mulh64: md.mulh64,
  mulhsu64: md.mulhsu64,
  mulhu64: md.mulhu64,
  div64: md.div64,
  divu64: md.divu64,
  wide: md.wide,
  remainder: md.remainder,
  addD: fast.addD,
  mulD: fast.mulD,
  divD: fast.divD,
  sqrtD: fast.sqrtD,
  fmaD: fast.fmaD,
  fx: fast.FAST_INEXACT,
};

/** Double arithmetic is inlined on a Float64Array over the FP registers' Int32Array: words in host order. */
const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** One decoded instruction of a block. */
interface Insn {
  /** The 32-bit form (RVC expanded). */
  readonly insn: number;
  /** 2 or 4. */
  readonly len: number;
  /** Byte offset from the block's first instruction. */
  readonly delta: number;
}

/** What compile() made: the function and how many instructions run at most before it checks the budget. */
export interface CompiledCode {
  readonly fn: BlockFn;
  readonly len: number;
  /** Link slots, numbered 0.. as `fn` returns them: one per distinct constant pc in the block's page that an
   * exit after a branch, a jump or the last instruction goes to, and two per JALR for the targets it finds in
   * the page (a function returning to two call sites by turns, as fib's two calls do). A JALR returns the
   * first of its two whatever its target, so a block kept in them is run only when it starts at the pc the
   * exit left at. An exit before an instruction the block could not run (a TLB miss, FP the hart must run)
   * and a JALR out of the page return -1: the interpreter or a lookup goes on. */
  readonly exits: number;
  /** The first slot of each JALR's two. */
  readonly pairs: readonly number[];
}

/**
 * Compiles the block at byte `off` of RAM (`u16` views it). Returns null when the first instruction is not one
 * this compiler translates.
 */
/**
 * @param atomic64 harts on other threads share RAM: an aligned 64-bit access must be one host access
 *        (through the hart's `ramF64`), single-copy atomic as RVWMO requires
 */
export function compileBlock(u16: Uint16Array, off: number, atomic64 = false): CompiledCode | null {
  const insns = decodeBlock(u16, off);
  if (insns.length === 0) return null;
  const gen = generate(insns, off, atomic64);
  const factory = new Function("rt", gen.src) as (rt: typeof RUNTIME) => BlockFn;
  return { fn: factory(RUNTIME), len: insns.length, exits: gen.exits, pairs: gen.pairs };
}

/** The source compileBlock would compile (for tests and debugging). */
export function blockSource(u16: Uint16Array, off: number, atomic64 = false): string | null {
  const insns = decodeBlock(u16, off);
  return insns.length === 0 ? null : generate(insns, off, atomic64).src;
}

function decodeBlock(u16: Uint16Array, off: number): Insn[] {
  const out: Insn[] = [];
  const pageStart = off & -4096;
  const pageEnd = pageStart + 4096;
  /** Offsets (from `off`) decoded so far. */
  const seen = new Set<number>();
  let at = off;
  /** Furthest branch target ahead seen so far (byte offset from `off`): code up to it may be reached. */
  let reach = 0;
  while (out.length < MAX_BLOCK_INSNS && at < pageEnd && !seen.has(at - off)) {
    let insn = u16[at >> 1]!;
    let len = 4;
    if ((insn & 3) === 3) {
      // A 32-bit instruction whose upper half lies on the next page may map elsewhere: leave it to the
      // interpreter's fetch.
      if (at + 4 > pageEnd) break;
      insn = insn | (u16[(at >> 1) + 1]! << 16) | 0;
    } else {
      len = 2;
      insn = RVC_TABLE[insn]!;
      if (insn === 0) break;
    }
    if (!supported(insn)) break;
    const delta = at - off;
    out.push({ insn, len, delta });
    seen.add(delta);
    at += len;
    const op = insn & 0x7f;
    /** A `j` (JAL x0): its target counts as reached only when decoding goes on past it. */
    const j = op === 0x6f && ((insn >> 7) & 31) === 0;
    if (op === 0x63) reach = Math.max(reach, delta + branchOffset(insn));
    else if (op === 0x6f && !j) reach = Math.max(reach, delta + jalOffset(insn));
    // After an unconditional jump only a branch from before it can reach the next instruction, or a return
    // from a call into the region (a JAL with rd ≠ x0 back to an instruction of it: recursion).
    const callIn =
      op === 0x6f && ((insn >> 7) & 31) !== 0 && delta + jalOffset(insn) >= 0 && jalOffset(insn) <= 0;
    if ((op === 0x6f || op === 0x67) && at - off > reach && !callIn) {
      // A `j` (JAL x0) to code of this page not decoded yet: the region goes on there (a trace), so the jump
      // stays inside it. Decoding stops at code already decoded, which the last instruction then jumps to.
      const target = at - len + (j ? jalOffset(insn) : 0);
      if (!j || target < pageStart || target >= pageEnd) break;
      at = target;
      // Branch targets ahead of the code left behind say nothing about the code from here on.
      reach = at - off;
    } else if (j) reach = Math.max(reach, delta + jalOffset(insn));
  }
  return out;
}

/** Whether `insn` is an encoding this compiler translates; the legality rules are the interpreter's. */
function supported(insn: number): boolean {
  const f3 = (insn >> 12) & 7;
  switch (insn & 0x7f) {
    case 0x13: // OP-IMM
      if (f3 === 1) return insn >>> 26 === 0;
      if (f3 === 5) return insn >>> 26 === 0 || insn >>> 26 === 0x10;
      return true;
    case 0x1b: // OP-IMM-32
      if (f3 === 0) return true;
      if (f3 === 1) return insn >>> 25 === 0;
      if (f3 === 5) return insn >>> 25 === 0 || insn >>> 25 === 0x20;
      return false;
    case 0x33: {
      const f7 = insn >>> 25;
      return f7 === 0 || f7 === 1 || (f7 === 0x20 && (f3 === 0 || f3 === 5));
    }
    case 0x3b: {
      const f7 = insn >>> 25;
      if (f7 === 0) return f3 === 0 || f3 === 1 || f3 === 5;
      if (f7 === 0x20) return f3 === 0 || f3 === 5;
      if (f7 === 1) return f3 === 0 || f3 >= 4;
      return false;
    }
    case 0x37: // LUI
    case 0x17: // AUIPC
    case 0x6f: // JAL
      return true;
    case 0x67: // JALR
      return f3 === 0;
    case 0x03: // LOAD
      return f3 !== 7;
    case 0x23: // STORE
      return f3 <= 3;
    case 0x63: // BRANCH
      return f3 !== 2 && f3 !== 3;
    case 0x07: // LOAD-FP: FLW, FLD
    case 0x27: // STORE-FP: FSW, FSD
      return f3 === 2 || f3 === 3;
    case 0x43: // FMADD, FMSUB, FNMSUB, FNMADD, OP-FP: the hart runs them (an illegal one leaves the region)
    case 0x47:
    case 0x4b:
    case 0x4f:
    case 0x53:
      return true;
    default:
      return false;
  }
}

// OP-FP funct5 values whose rs1 is an integer register (FCVT.fmt.W/L…, FMV.fmt.X) or whose rd is (FEQ/FLT/FLE,
// FCVT.W/L….fmt, FMV.X.fmt and FCLASS).
const F5_CVT_FI = 0x1a;
const F5_MV_F_X = 0x1e;
const F5_CMP = 0x14;
const F5_CVT_IF = 0x18;
const F5_MV_X_F = 0x1c;

/** Bit r set when `insn` reads integer register r (x0 included). */
function intReads(insn: number): number {
  const a = 1 << ((insn >> 15) & 31);
  const b = 1 << ((insn >> 20) & 31);
  switch (insn & 0x7f) {
    case 0x37:
    case 0x17:
    case 0x6f:
    case 0x43:
    case 0x47:
    case 0x4b:
    case 0x4f:
      return 0;
    case 0x33:
    case 0x3b:
    case 0x23:
    case 0x63:
      return a | b;
    case 0x53: {
      const f5 = insn >>> 27;
      return f5 === F5_CVT_FI || f5 === F5_MV_F_X ? a : 0;
    }
    default:
      return a;
  }
}

/** The integer register `insn` writes, or 0 (x0, or none). */
function intWrite(insn: number): number {
  const d = (insn >> 7) & 31;
  switch (insn & 0x7f) {
    case 0x23:
    case 0x63:
    case 0x07:
    case 0x27:
    case 0x43:
    case 0x47:
    case 0x4b:
    case 0x4f:
      return 0;
    case 0x53: {
      const f5 = insn >>> 27;
      return f5 === F5_CMP || f5 === F5_CVT_IF || f5 === F5_MV_X_F ? d : 0;
    }
    default:
      return d;
  }
}

/** Whether `insn` uses the FP registers (and so needs mstatus.FS on). */
function isFp(insn: number): boolean {
  const op = insn & 0x7f;
  return (
    op === 0x07 || op === 0x27 || op === 0x43 || op === 0x47 || op === 0x4b || op === 0x4f || op === 0x53
  );
}

const L = (r: number): string => (r === 0 ? "0" : `r${r}l`);
const H = (r: number): string => (r === 0 ? "0" : `r${r}h`);

function generate(
  insns: Insn[],
  off: number,
  atomic64: boolean,
): { src: string; exits: number; pairs: number[] } {
  const count = insns.length;
  const touched = new Set<number>();
  const written = new Set<number>();
  let loads = false;
  let stores = false;
  let fp = false;
  /** Whether a 64-bit load or store (integer or FP) is in the region. */
  let wide = false;
  /** Instruction index of each decoded offset; the label (switch case) of each instruction jumped to. */
  const index = new Map<number, number>();
  for (let i = 0; i < count; i++) index.set(insns[i]!.delta, i);
  const label = new Map<number, number>([[0, 0]]);
  const inside = (target: number): number | undefined => index.get(target);
  for (let i = 0; i < count; i++) {
    const { insn, delta } = insns[i]!;
    const op = insn & 0x7f;
    const reads = intReads(insn);
    for (let r = 1; r < 32; r++) if ((reads >>> r) & 1) touched.add(r);
    const w = intWrite(insn);
    if (w !== 0) {
      touched.add(w);
      written.add(w);
    }
    if (op === 0x03 || op === 0x07) loads = true;
    if (op === 0x23 || op === 0x27) stores = true;
    if ((op === 0x03 || op === 0x07 || op === 0x23 || op === 0x27) && ((insn >>> 12) & 7) === 3) wide = true;
    if (isFp(insn)) fp = true;
    const t =
      op === 0x63
        ? inside(delta + branchOffset(insn))
        : op === 0x6f
          ? inside(delta + jalOffset(insn))
          : undefined;
    if (t !== undefined && !label.has(t) && !traced(insns, i, t)) label.set(t, label.size);
  }
  // The instruction after a call (JAL or JALR with rd ≠ x0) in the region is where a return (JALR) may land:
  // a JALR whose target is one of these goes on inside the region, so a function that calls itself (or a
  // callee in the region) returns without leaving.
  const returnPoints: number[] = [];
  for (let i = 0; i < count; i++) {
    const { insn, len, delta } = insns[i]!;
    const op = insn & 0x7f;
    const r = inside(delta + len);
    if ((op === 0x6f || op === 0x67) && ((insn >> 7) & 31) !== 0 && r !== undefined) {
      returnPoints.push(r);
      if (!label.has(r)) label.set(r, label.size);
    }
  }
  // The last instruction falls through into code the region holds when decoding stopped there (after a trace).
  const lastInsn = insns[count - 1]!;
  const fallTo = inside(lastInsn.delta + lastInsn.len);
  if (fallTo !== undefined && !label.has(fallTo)) label.set(fallTo, label.size);
  touched.delete(0);
  written.delete(0);
  // Jumps inside the region go through `for(;;) switch(p)`; a region without any runs straight.
  const jumps =
    label.size > 1 || fallTo !== undefined || insns.some(({ insn, delta }) => jumpTarget(insn, delta) === 0);

  // Every exit but JALR's goes through one epilogue: it stores the registers the region writes back to x
  // and sets pc = first pc + eC (a constant offset that fits int32, with the carry into the high half) and
  // count = n + eR. An exit is then two constant assignments and a break: no property access, call or
  // arithmetic that V8 would have no type feedback for when it optimizes the region before that exit was ever
  // taken (each such site costs a deoptimization and a recompile). Registers: all the region writes, as a
  // write may have happened on an earlier pass; every touched register was loaded at entry, so storing an
  // unwritten one is harmless.
  let wb = "";
  for (const r of written) wb += `x[${2 * r}]=${L(r)};x[${2 * r + 1}]=${H(r)};`;
  /** Link slot of each constant exit offset inside the block's page, and the two of each JALR
   * (CompiledCode.exits); `pairs` lists the first of each JALR's two. */
  const slots = new Map<number | string, number>();
  const pairs: number[] = [];
  const slotOf = (c: number | string): number => {
    const at = typeof c === "string" ? 0 : (off & 4095) + c;
    if (at < 0 || at >= 4096) return -1;
    let k = slots.get(c);
    if (k === undefined) {
      k = slots.size;
      slots.set(c, k);
    }
    return k;
  };
  /** Leave to pc = first pc + c with `retired` instructions of this segment retired; `linked` for an exit
   * after the instruction before it completed (a taken branch or jump, the end), which may go straight to
   * the block at c. */
  const leave = (c: number, retired: number, linked = false): string =>
    `{eC=${c};eR=${retired};${linked ? `eL=${slotOf(c)};` : ""}break X;}`;
  /** Go on at instruction `t` of the region after `retired` of this segment, or leave there when a backward
   * jump finds the budget too small for another pass. */
  const goTo = (t: number, i: number, retired: number): string => {
    const go = `n+=${retired};p=${label.get(t)};`;
    if (t > i) return `{${go}continue;}`;
    return `{${go}if(n+${count}<=end)continue;${leave(insns[t]!.delta, 0, true)}}`;
  };

  let s = '"use strict";\n';
  s += "const {mulh64,mulhsu64,mulhu64,div64,divu64,wide,remainder,addD,mulD,divD,sqrtD,fmaD,fx}=rt;\n";
  // Named after its RAM offset, so profiles and V8 traces tell regions apart.
  s += `return function block_${off.toString(16)}(h,x,u8,u16,i32,pl,ph,n,end){\n`;
  if (loads) s += "const rTL=h.rTagLo,rTH=h.rTagHi,rO=h.rOff;\n";
  if (stores) s += "const wTL=h.wTagLo,wTH=h.wTagHi,wO=h.wOff;\n";
  // A doubleword as one 8-byte access, split into halves through P64/P32 (hart.ts `ramF64`).
  const atomic = atomic64 && wide;
  if (atomic) s += "const F64=h.ramF64,P64=h.pair64,P32=h.pair32;\n";
  // mstatus.FS cannot change while a region runs (only CSR writes and traps change it, and neither happens
  // inside one): read it once. With FS off every FP instruction leaves, so the interpreter raises the trap.
  // frm does not change either: whether DYN rounds to nearest-even is known at entry.
  if (fp) s += `const fr=h.fr,fd=h.fd,fsOn=(h.mstatus&${MSTATUS_FS})!==0,rne=h.frm===0;\n`;
  for (const r of touched) s += `let ${L(r)}=x[${2 * r}],${H(r)}=x[${2 * r + 1}];\n`;
  s += "let eC=0,eR=0,eL=-1;\nX:{\n";
  if (jumps) s += "let p=0;\nfor(;;){switch(p){\ncase 0:\n";

  /** First instruction of the current segment. */
  let seg = 0;
  for (let i = 0; i < count; i++) {
    const { insn, len, delta } = insns[i]!;
    if (i > 0 && label.has(i)) {
      // Falling through into a label: the segment before is all retired.
      s += `n+=${i - seg};\ncase ${label.get(i)}:\n`;
      seg = i;
    }
    const j = i - seg;
    const op = insn & 0x7f;
    const d = (insn >> 7) & 31;
    const a = (insn >> 15) & 31;
    const b = (insn >> 20) & 31;
    const f3 = (insn >> 12) & 7;
    const f7 = insn >>> 25;
    const imm = insn >> 20;
    const ih = imm >> 31;
    /** Assign lo/hi expressions (evaluated before either is assigned) to rd. */
    const set = (lo: string, hi: string): string =>
      d === 0 ? "" : `{const tl=${lo},th=${hi};${L(d)}=tl;${H(d)}=th;}`;
    const al = L(a);
    const ah = H(a);
    const bl = L(b);
    const bh = H(b);
    s += `// ${i}: +${delta} ${(insn >>> 0).toString(16)}\n`;
    switch (op) {
      case 0x13: {
        const sh = imm & 63;
        switch (f3) {
          case 0:
            if (d === 0) break;
            if (a === 0) s += set(`${imm}`, `${ih}`);
            else
              s += `{const q=${al},lo=(q+${imm})|0;${H(d)}=(${ah}+${ih}+(lo>>>0<q>>>0?1:0))|0;${L(d)}=lo;}`;
            break;
          case 4:
            s += set(`${al}^${imm}`, `${ah}^${ih}`);
            break;
          case 6:
            s += set(`${al}|${imm}`, `${ah}|${ih}`);
            break;
          case 7:
            s += set(`${al}&${imm}`, `${ah}&${ih}`);
            break;
          case 1:
            if (sh >= 32) s += set("0", `${al}<<${sh - 32}`);
            else if (sh !== 0) s += set(`${al}<<${sh}`, `(${ah}<<${sh})|(${al}>>>${32 - sh})`);
            else s += set(al, ah);
            break;
          case 5: {
            const arith = insn >>> 26 !== 0;
            if (sh >= 32)
              s += set(arith ? `${ah}>>${sh - 32}` : `(${ah}>>>${sh - 32})|0`, arith ? `${ah}>>31` : "0");
            else if (sh !== 0)
              s += set(`(${al}>>>${sh})|(${ah}<<${32 - sh})`, arith ? `${ah}>>${sh}` : `(${ah}>>>${sh})|0`);
            else s += set(al, ah);
            break;
          }
          case 2:
            s += set(`${ah}<${ih}||(${ah}===${ih}&&${al}>>>0<${imm >>> 0})?1:0`, "0");
            break;
          default:
            s += set(`${ah}>>>0<${ih >>> 0}||(${ah}===${ih}&&${al}>>>0<${imm >>> 0})?1:0`, "0");
        }
        break;
      }
      case 0x1b: {
        const sh = imm & 31;
        const r =
          f3 === 0
            ? `(${al}+${imm})|0`
            : f3 === 1
              ? `${al}<<${sh}`
              : f7 === 0
                ? `(${al}>>>${sh})|0`
                : `${al}>>${sh}`;
        if (d !== 0) s += `{const r=${r};${L(d)}=r;${H(d)}=r>>31;}`;
        break;
      }
      case 0x33:
        if (d !== 0) s += genOp(f3, f7, al, ah, bl, bh, L(d), H(d));
        break;
      case 0x3b:
        if (d !== 0) s += `{const r=${genOp32(f3, f7, al, bl)};${L(d)}=r;${H(d)}=r>>31;}`;
        break;
      case 0x37: {
        const v = insn & 0xfffff000;
        s += set(`${v}`, `${v >> 31}`);
        break;
      }
      case 0x17: {
        // pc + imm as the first pc plus a constant c, which may leave int32's range: imm near ±2^31 and a delta
        // of up to a page either way (negative after a trace went back). So c is split into its low 32 bits
        // (unsigned, added with a carry) and its high half (0 or −1), rather than `c >> 31`, which wraps.
        const c = (insn & 0xfffff000) + delta;
        const cl = c >>> 0;
        const ch = (c - cl) / 4294967296;
        if (d !== 0) s += `{const t=(pl+${cl})|0;${H(d)}=(ph+${ch}+(t>>>0<pl>>>0?1:0))|0;${L(d)}=t;}`;
        break;
      }
      case 0x03: {
        const width = f3 & 3;
        const mask = [-4096, -4095, -4093, -4089][width]!;
        // rd from v (and vh for LD), extended as f3 says; nothing for x0, whose load still happens.
        let put = "";
        if (d !== 0) {
          if (f3 === 0) put = `${L(d)}=(v<<24)>>24;${H(d)}=${L(d)}>>31;`;
          else if (f3 === 1) put = `${L(d)}=(v<<16)>>16;${H(d)}=${L(d)}>>31;`;
          else if (f3 === 2) put = `${L(d)}=v;${H(d)}=v>>31;`;
          else if (f3 === 3) put = `${L(d)}=v;${H(d)}=vh;`;
          else put = `${L(d)}=v;${H(d)}=0;`;
        }
        s += `{const q=${al},lo=(q+${imm})|0,hi=(${ah}+${ih}+(lo>>>0<q>>>0?1:0))|0,k=(lo>>>12)&${TLB_MASK};`;
        s += `if(rTH[k]===hi&&rTL[k]===(lo&${mask})){`;
        if (width === 0) s += "const v=u8[rO[k]+(lo&4095)];";
        else if (width === 1) s += "const v=u16[(rO[k]+(lo&4095))>>1];";
        else if (width === 2) s += "const v=i32[(rO[k]+(lo&4095))>>2];";
        else if (atomic) s += "P64[0]=F64[(rO[k]+(lo&4095))>>3];const v=P32[0],vh=P32[1];";
        else s += "const w=(rO[k]+(lo&4095))>>2,v=i32[w],vh=i32[w+1];";
        // A TLB miss, MMIO or misaligned access leaves the region before this instruction; the interpreter
        // runs it (and any trap it takes) with exactly the state it would have had.
        s += `${put}}else${leave(delta, j)}}\n`;
        break;
      }
      case 0x23: {
        const width = f3;
        const mask = [-4096, -4095, -4093, -4089][width]!;
        const sImm = ((insn >> 25) << 5) | ((insn >> 7) & 31);
        s += `{const q=${al},lo=(q+${sImm})|0,hi=(${ah}+${sImm >> 31}+(lo>>>0<q>>>0?1:0))|0,k=(lo>>>12)&${TLB_MASK};`;
        s += `if(wTH[k]===hi&&wTL[k]===(lo&${mask})){`;
        if (width === 0) s += `u8[wO[k]+(lo&4095)]=${bl};`;
        else if (width === 1) s += `u16[(wO[k]+(lo&4095))>>1]=${bl};`;
        else if (width === 2) s += `i32[(wO[k]+(lo&4095))>>2]=${bl};`;
        else if (atomic) s += `P32[0]=${bl};P32[1]=${bh};F64[(wO[k]+(lo&4095))>>3]=P64[0];`;
        else s += `const w=(wO[k]+(lo&4095))>>2;i32[w]=${bl};i32[w+1]=${bh};`;
        // Likewise for stores; a page holding compiled code (this region's own, perhaps) never has a write-TLB
        // entry, so a store into code always leaves here and the interpreter's store drops the stale regions.
        s += `}else${leave(delta, j)}}\n`;
        break;
      }
      case 0x63: {
        const target = delta + branchOffset(insn);
        const cond = branchCond(f3, al, ah, bl, bh);
        const t = inside(target);
        s += `if(${cond})${t === undefined ? leave(target, j + 1, true) : goTo(t, i, j + 1)}\n`;
        break;
      }
      case 0x6f: {
        const target = delta + jalOffset(insn);
        if (d !== 0) s += `{const t=(pl+${delta + len})|0;${H(d)}=${carried("t", delta + len)};${L(d)}=t;}`;
        const t = inside(target);
        // A `j` the region was traced through: its target is the next instruction here (no label, no switch).
        if (t !== undefined && traced(insns, i, t)) break;
        s += `${t === undefined ? leave(target, j + 1, true) : goTo(t, i, j + 1)}\n`;
        break;
      }
      case 0x67: {
        // Target first: rd may be rs1.
        s += `{const q=${al},t=(q+${imm})|0,th=(${ah}+${ih}+(t>>>0<q>>>0?1:0))|0;`;
        if (d !== 0) s += `const u=(pl+${delta + len})|0;${H(d)}=${carried("u", delta + len)};${L(d)}=u;`;
        if (returnPoints.length > 0) {
          // A target in this region's page (same high half; the region never crosses a page) at a return
          // point: go on there when another pass fits the budget.
          let pick = "-1";
          for (const r of returnPoints) pick = `o===${insns[r]!.delta}?${label.get(r)}:${pick}`;
          s += `if(th===ph){const o=((t&-2)-pl)|0,g=${pick};if(g>=0&&n+${j + 1 + count}<=end){n+=${j + 1};p=g;continue;}}`;
        }
        // A target in this block's page (a return to a call site there, recursion's cascade of returns) leaves
        // through this JALR's pair of link slots, which keep the last two blocks found there: the hart runs the
        // one that starts at the new pc (see `exits`).
        const pair = slotOf(`jalr${i}`);
        slotOf(`jalr${i}'`);
        pairs.push(pair);
        s += `${wb}h.pcLo=t&-2;h.pcHi=th;h.count=n+${j + 1};return th===ph&&((t^pl)&-4096)===0?${pair}:-1;}\n`;
        break;
      }
      case 0x07: {
        // FLW/FLD through the read TLB as integer loads go; FLW NaN-boxes, both mark FS dirty.
        const mask = f3 === 2 ? -4093 : -4089;
        s += `if(!fsOn)${leave(delta, j)}`;
        s += `{const q=${al},lo=(q+${imm})|0,hi=(${ah}+${ih}+(lo>>>0<q>>>0?1:0))|0,k=(lo>>>12)&${TLB_MASK};`;
        s += `if(rTH[k]===hi&&rTL[k]===(lo&${mask})){const w=(rO[k]+(lo&4095))>>2;`;
        s +=
          f3 === 2
            ? `fr[${2 * d}]=i32[w];fr[${2 * d + 1}]=-1;`
            : atomic
              ? `P64[0]=F64[w>>1];fr[${2 * d}]=P32[0];fr[${2 * d + 1}]=P32[1];`
              : `fr[${2 * d}]=i32[w];fr[${2 * d + 1}]=i32[w+1];`;
        s += `h.mstatus|=${MSTATUS_FS};}else${leave(delta, j)}}\n`;
        break;
      }
      case 0x27: {
        const mask = f3 === 2 ? -4093 : -4089;
        const sImm = ((insn >> 25) << 5) | ((insn >> 7) & 31);
        s += `if(!fsOn)${leave(delta, j)}`;
        s += `{const q=${al},lo=(q+${sImm})|0,hi=(${ah}+${sImm >> 31}+(lo>>>0<q>>>0?1:0))|0,k=(lo>>>12)&${TLB_MASK};`;
        s += `if(wTH[k]===hi&&wTL[k]===(lo&${mask})){const w=(wO[k]+(lo&4095))>>2;`;
        if (f3 !== 3) s += `i32[w]=fr[${2 * b}];`;
        else if (atomic) s += `P32[0]=fr[${2 * b}];P32[1]=fr[${2 * b + 1}];F64[w>>1]=P64[0];`;
        else s += `i32[w]=fr[${2 * b}];i32[w+1]=fr[${2 * b + 1}];`;
        s += `}else${leave(delta, j)}}\n`;
        break;
      }
      case 0x43:
      case 0x47:
      case 0x4b:
      case 0x4f:
      case 0x53: {
        // The hart's FPU runs it on the register files: integer operands go to x first, an integer result
        // comes back from it. It touches no memory, so it either completes or changes nothing and says it
        // would trap (an illegal encoding or rounding mode): then the region leaves for the interpreter.
        const reads = intReads(insn);
        const w = intWrite(insn);
        let viaFpu = "";
        if (reads !== 0 && a !== 0) viaFpu += `x[${2 * a}]=${al};x[${2 * a + 1}]=${ah};`;
        viaFpu += `if(h.fpFromBlock(${insn}))${leave(delta, j)}`;
        if (w !== 0) viaFpu += `${L(w)}=x[${2 * w}];${H(w)}=x[${2 * w + 1}];`;
        const inline = LITTLE_ENDIAN ? inlineDouble(insn, al, ah) : null;
        s += `if(!fsOn)${leave(delta, j)}`;
        s += inline === null ? viaFpu : `${inline.replace("VIA_FPU", `{${viaFpu}}`)}`;
        s += "\n";
        break;
      }
    }
  }
  const last = insns[count - 1]!;
  const op = last.insn & 0x7f;
  if (op !== 0x6f && op !== 0x67)
    s +=
      fallTo !== undefined
        ? `${goTo(fallTo, count - 1, count - seg)}\n`
        : `${leave(last.delta + last.len, count - seg, true)}\n`;
  if (jumps) s += "}}\n";
  s += `}\n${wb}\nconst t=(pl+eC)|0;h.pcLo=t;h.pcHi=(ph+(eC>>31)+(t>>>0<pl>>>0?1:0))|0;h.count=n+eR;\n`;
  s += "return eL;\n};\n";
  return { src: s, exits: slots.size, pairs };
}

/**
 * The common double-precision instructions inline: arithmetic under round-to-nearest-even on host numbers
 * (fpu-fast-double.ts proves the inexact flag; anything it cannot vouch for, and every other rounding mode,
 * goes to the FPU at VIA_FPU), sign injection and moves on raw bits, comparisons of non-NaN operands. Null
 * for the rest, which the FPU runs. A result written to f marks FS dirty as the FPU's would.
 */
function inlineDouble(insn: number, al: string, ah: string): string | null {
  const op = insn & 0x7f;
  const d = (insn >> 7) & 31;
  const a = (insn >> 15) & 31;
  const b = (insn >> 20) & 31;
  const f3 = (insn >> 12) & 7;
  if (((insn >>> 25) & 3) !== 1) return null; // not D
  const dirty = `h.mstatus|=${MSTATUS_FS};`;
  // Arithmetic: static RNE, or DYN with frm = RNE.
  const arith = (expr: string): string | null => {
    if (f3 !== 0 && f3 !== 7) return null;
    const guard = f3 === 0 ? "r===r" : "rne&&r===r";
    return `{const r=${expr};if(${guard}){if(fx[0]!==0)h.fflags|=1;fd[${d}]=r;${dirty}}else VIA_FPU}`;
  };
  if (op !== 0x53) {
    const c = insn >>> 27;
    const neg = (r: number, yes: boolean) => (yes ? `-fd[${r}]` : `fd[${r}]`);
    // FMADD: a*b + c; FMSUB: a*b − c; FNMSUB: −(a*b) + c; FNMADD: −(a*b) − c.
    return arith(
      `fmaD(${neg(a, op === 0x4b || op === 0x4f)},fd[${b}],${neg(c, op === 0x47 || op === 0x4f)})`,
    );
  }
  switch (insn >>> 27) {
    case 0x00:
      return arith(`addD(fd[${a}],fd[${b}])`);
    case 0x01:
      return arith(`addD(fd[${a}],-fd[${b}])`);
    case 0x02:
      return arith(`mulD(fd[${a}],fd[${b}])`);
    case 0x03:
      return arith(`divD(fd[${a}],fd[${b}])`);
    case 0x0b:
      return b === 0 ? arith(`sqrtD(fd[${a}],fr[${2 * a + 1}])`) : null;
    case 0x04: {
      // FSGNJ.D/FSGNJN.D/FSGNJX.D (FMV.D, FNEG.D, FABS.D): the sign from rs2, its complement, or the xor.
      const sign =
        f3 === 0
          ? `fr[${2 * b + 1}]&-2147483648`
          : f3 === 1
            ? `~fr[${2 * b + 1}]&-2147483648`
            : f3 === 2
              ? `(fr[${2 * a + 1}]^fr[${2 * b + 1}])&-2147483648`
              : null;
      if (sign === null) return null;
      return `{const l=fr[${2 * a}],u=(fr[${2 * a + 1}]&2147483647)|(${sign});fr[${2 * d}]=l;fr[${2 * d + 1}]=u;${dirty}}`;
    }
    case F5_CMP: {
      // FLE/FLT/FEQ raise no flag when neither operand is a NaN.
      if (f3 > 2) return null;
      const rel = f3 === 0 ? "<=" : f3 === 1 ? "<" : "===";
      const put = d === 0 ? "" : `${L(d)}=p${rel}q?1:0;${H(d)}=0;`;
      return `{const p=fd[${a}],q=fd[${b}];if(p===p&&q===q){${put}}else VIA_FPU}`;
    }
    case F5_MV_X_F:
      // FMV.X.D (FCLASS.D is f3 = 1: the FPU's).
      if (f3 !== 0 || b !== 0) return null;
      return d === 0 ? "" : `${L(d)}=fr[${2 * a}];${H(d)}=fr[${2 * a + 1}];`;
    case F5_MV_F_X:
      if (f3 !== 0 || b !== 0) return null;
      return `fr[${2 * d}]=${al};fr[${2 * d + 1}]=${ah};${dirty}`;
    default:
      return null;
  }
}

/** Whether instruction i is a `j` the region was traced through: its target t is the next one decoded. */
function traced(insns: Insn[], i: number, t: number): boolean {
  return t === i + 1 && ((insns[i]!.insn >> 7) & 31) === 0 && (insns[i]!.insn & 0x7f) === 0x6f;
}

/** The high half of pc + c, whose low half is in `lo` (c: a constant offset, negative after a trace went back). */
function carried(lo: string, c: number): string {
  return c >= 0 ? `${lo}>>>0<pl>>>0?(ph+1)|0:ph` : `${lo}>>>0>pl>>>0?(ph-1)|0:ph`;
}

/** Offset of a branch's or JAL's target from the region's start, or -1 for other instructions. */
function jumpTarget(insn: number, delta: number): number {
  const op = insn & 0x7f;
  if (op === 0x63) return delta + branchOffset(insn);
  if (op === 0x6f) return delta + jalOffset(insn);
  return -1;
}

function branchOffset(insn: number): number {
  return (
    ((insn >> 31) << 12) |
    (((insn >> 7) & 1) << 11) |
    (((insn >> 25) & 0x3f) << 5) |
    (((insn >> 8) & 0xf) << 1)
  );
}

function jalOffset(insn: number): number {
  return ((insn >> 31) << 20) | (insn & 0xff000) | (((insn >> 20) & 1) << 11) | (((insn >> 21) & 0x3ff) << 1);
}

function branchCond(f3: number, al: string, ah: string, bl: string, bh: string): string {
  switch (f3) {
    case 0:
      return `${al}===${bl}&&${ah}===${bh}`;
    case 1:
      return `${al}!==${bl}||${ah}!==${bh}`;
    case 4:
      return `${ah}<${bh}||(${ah}===${bh}&&${al}>>>0<${bl}>>>0)`;
    case 5:
      return `${ah}>${bh}||(${ah}===${bh}&&${al}>>>0>=${bl}>>>0)`;
    case 6:
      return `${ah}>>>0<${bh}>>>0||(${ah}===${bh}&&${al}>>>0<${bl}>>>0)`;
    default:
      return `${ah}>>>0>${bh}>>>0||(${ah}===${bh}&&${al}>>>0>=${bl}>>>0)`;
  }
}

/** OP (and M): rd = rs1 op rs2 on 64-bit halves. */
function genOp(
  f3: number,
  f7: number,
  al: string,
  ah: string,
  bl: string,
  bh: string,
  dl: string,
  dh: string,
) {
  const fromWide = `${dl}=wide[0];${dh}=wide[1];`;
  const two = (lo: string, hi: string) => `{const tl=${lo},th=${hi};${dl}=tl;${dh}=th;}`;
  if (f7 === 0) {
    switch (f3) {
      case 0:
        return `{const q=${al},lo=(q+${bl})|0;${dh}=(${ah}+${bh}+(lo>>>0<q>>>0?1:0))|0;${dl}=lo;}`;
      case 1:
        return shiftLeft(al, ah, bl, dl, dh);
      case 2:
        return two(`${ah}<${bh}||(${ah}===${bh}&&${al}>>>0<${bl}>>>0)?1:0`, "0");
      case 3:
        return two(`${ah}>>>0<${bh}>>>0||(${ah}===${bh}&&${al}>>>0<${bl}>>>0)?1:0`, "0");
      case 4:
        return two(`${al}^${bl}`, `${ah}^${bh}`);
      case 5:
        return shiftRight(al, ah, bl, dl, dh, false);
      case 6:
        return two(`${al}|${bl}`, `${ah}|${bh}`);
      default:
        return two(`${al}&${bl}`, `${ah}&${bh}`);
    }
  }
  if (f7 === 0x20) {
    if (f3 === 0) return two(`(${al}-${bl})|0`, `(${ah}-${bh}-(${al}>>>0<${bl}>>>0?1:0))|0`);
    return shiftRight(al, ah, bl, dl, dh, true);
  }
  const args = `(${al},${ah},${bl},${bh});`;
  switch (f3) {
    case 0:
      return mulLow(al, ah, bl, bh, dl, dh);
    case 1:
      return `mulh64${args}${fromWide}`;
    case 2:
      return `mulhsu64${args}${fromWide}`;
    case 3:
      return `mulhu64${args}${fromWide}`;
    case 4:
      return divSmall(al, ah, bl, bh, "q", dl, dh, `div64${args}${fromWide}`);
    case 5:
      return divSmall(al, ah, bl, bh, "q", dl, dh, `divu64${args}${fromWide}`);
    case 6:
      return divSmall(al, ah, bl, bh, "r", dl, dh, `div64${args}${dl}=remainder[0];${dh}=remainder[1];`);
    default:
      return divSmall(al, ah, bl, bh, "r", dl, dh, `divu64${args}${dl}=remainder[0];${dh}=remainder[1];`);
  }
}

/**
 * DIV/DIVU/REM/REMU inline when both operands are below 2^52 (so non-negative: signed and unsigned agree) and
 * the divisor is not 0, else `helper` (mul-div-64.ts). Doubles are exact there, and so is the floor of their
 * rounded quotient: a true quotient k − ε (ε ≥ 1/B) is not rounded up to k, as k·B < A + B < 2^53 makes half
 * an ulp of k below 1/B. Most of a gcd's divisions are of such operands; a call cost more than the division.
 */
function divSmall(
  al: string,
  ah: string,
  bl: string,
  bh: string,
  want: "q" | "r",
  dl: string,
  dh: string,
  helper: string,
): string {
  return (
    `{const ql=${al},qh=${ah},rl=${bl},rh=${bh};` +
    "if(((qh|rh)>>>20)===0&&(rl|rh)!==0){const A=qh*4294967296+(ql>>>0),B=rh*4294967296+(rl>>>0);" +
    "const q=Math.floor(A/B),r=A-q*B;" +
    `${dl}=${want}|0;${dh}=(${want}/4294967296)|0;}else{${helper}}}`
  );
}

// Variable 64-bit shifts and MUL inline, on the operands read into constants first (rd may be rs1 or rs2):
// memcpy's unaligned merges and hashes run them often, and a helper call with its result through `wide`
// cost more than the arithmetic.

/** SLL: rd = rs1 << (rs2 & 63). */
function shiftLeft(al: string, ah: string, bl: string, dl: string, dh: string): string {
  return (
    `{const sa=${bl}&63,ql=${al},qh=${ah};` +
    `if(sa===0){${dl}=ql;${dh}=qh;}else if(sa<32){${dh}=(qh<<sa)|(ql>>>(32-sa));${dl}=ql<<sa;}` +
    `else{${dh}=ql<<(sa-32);${dl}=0;}}`
  );
}

/** SRL or SRA: rd = rs1 >> (rs2 & 63), logical or arithmetic. */
function shiftRight(al: string, ah: string, bl: string, dl: string, dh: string, arith: boolean): string {
  const hiShift = arith ? "qh>>sa" : "(qh>>>sa)|0";
  const fromHi = arith ? "qh>>(sa-32)" : "(qh>>>(sa-32))|0";
  const fill = arith ? "qh>>31" : "0";
  return (
    `{const sa=${bl}&63,ql=${al},qh=${ah};` +
    `if(sa===0){${dl}=ql;${dh}=qh;}else if(sa<32){${dl}=(ql>>>sa)|(qh<<(32-sa));${dh}=${hiShift};}` +
    `else{${dl}=${fromHi};${dh}=${fill};}}`
  );
}

/** MUL: the low 64 bits of rs1 × rs2. The high word of the low halves' 32×32 product from 16-bit digits (each
 * partial sum below 2^34, exact in a double), as mul-div-64.ts's mulu32 does; the cross terms wrap. */
function mulLow(al: string, ah: string, bl: string, bh: string, dl: string, dh: string): string {
  return (
    `{const ql=${al},qh=${ah},rl=${bl},rh=${bh},a0=ql&65535,a1=ql>>>16,b0=rl&65535,b1=rl>>>16,` +
    `m=a1*b0+a0*b1+((a0*b0)>>>16);` +
    `${dh}=(a1*b1+Math.floor(m/65536)+Math.imul(ql,rh)+Math.imul(qh,rl))|0;${dl}=Math.imul(ql,rl);}`
  );
}

/** OP-32 (and M's W forms): the 32-bit result expression, as the interpreter's execOp32 computes it. */
function genOp32(f3: number, f7: number, a: string, b: string): string {
  if (f7 === 0) {
    if (f3 === 0) return `(${a}+${b})|0`;
    if (f3 === 1) return `${a}<<(${b}&31)`;
    return `(${a}>>>(${b}&31))|0`;
  }
  if (f7 === 0x20) return f3 === 0 ? `(${a}-${b})|0` : `${a}>>(${b}&31)`;
  switch (f3) {
    case 0:
      return `Math.imul(${a},${b})`;
    case 4:
      return `${b}===0?-1:${a}===-2147483648&&${b}===-1?${a}:(${a}/${b})|0`;
    case 5:
      return `${b}===0?-1:((${a}>>>0)/(${b}>>>0))|0`;
    case 6:
      return `${b}===0?${a}:${b}===-1?0:(${a}%${b})|0`;
    default:
      return `${b}===0?${a}:((${a}>>>0)%(${b}>>>0))|0`;
  }
}
