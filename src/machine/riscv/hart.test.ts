// Rv64Hart against real RISC-V code assembled by Debian's riscv64-linux-gnu toolchain at test time.

import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { skipUnless } from "../../../tests/skip-unless.ts";
import {
  assembleStart as assemble,
  assembleBinary,
  haveCrossAssembler,
} from "../../engines/riscv/cross-assembler.ts";
import { GuestRam } from "../bus/guest-ram.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { mapWarmUpRom, Rv64Hart } from "./hart.ts";
import { WARM_UP_BASE, WARM_UP_PROGRAM, WARM_UP_RAM_BYTES } from "./warm-up-program.ts";

const RAM_BASE = 0x80000000;
const EXIT_BASE = 0x100000;

const TOOLCHAIN = haveCrossAssembler();
const skip = skipUnless(
  TOOLCHAIN,
  "riscv64-linux-gnu-gcc is missing (apt-get install gcc-riscv64-linux-gnu)",
);

/** The test's way out: a store to EXIT_BASE ends the run with that value. */
class ExitDevice implements MmioDevice {
  readonly id = "exit";
  code: number | null = null;
  read(): number {
    return 0;
  }
  write(offset: number, _w: AccessWidth, value: number): void {
    if (offset === 0) this.code = value;
  }
}

class FakeTime {
  now = 0;
  mtime(): number {
    return this.now;
  }
}

export interface Machine {
  hart: Rv64Hart;
  bus: PhysBus;
  ram: GuestRam;
  exit: ExitDevice;
  time: FakeTime;
  /** Run until the exit device is written or `max` instructions; returns the exit code. */
  run(max?: number): number | null;
  reg(i: number): bigint;
  mem64(addr: number): bigint;
}

export function boot(source: string, ramSize = 1 << 20): Machine {
  const image = assemble(source);
  const ram = new GuestRam(RAM_BASE, ramSize);
  ram.u8.set(image, 0);
  const bus = new PhysBus(ram);
  const exit = new ExitDevice();
  bus.map(EXIT_BASE, 0x1000, exit);
  const time = new FakeTime();
  const hart = new Rv64Hart(0, bus, time);
  hart.setPc(RAM_BASE, 0);
  return {
    hart,
    bus,
    ram,
    exit,
    time,
    run(max = 1_000_000) {
      let n = 0;
      while (exit.code === null && n < max) {
        const k = hart.run(Math.min(1000, max - n));
        if (k === 0 && hart.waiting) break;
        n += k;
      }
      return exit.code;
    },
    reg(i: number) {
      return BigInt.asUintN(64, (BigInt(hart.x[2 * i + 1]) << 32n) | BigInt(hart.x[2 * i] >>> 0));
    },
    mem64(addr: number) {
      return ram.view.getBigUint64(addr - RAM_BASE, true);
    },
  };
}

const EXIT = `li t6, ${EXIT_BASE}\n sw a0, 0(t6)\n1: j 1b\n`;

test("runs a small program to its exit store", { skip }, () => {
  const m = boot(`li a0, 5\n li a1, 7\n add a0, a0, a1\n ${EXIT}`);
  assert.equal(m.run(), 12);
});

// ---------------------------------------------------------------- integer ALU vs a BigInt reference

const M64 = (1n << 64n) - 1n;
const s64 = (v: bigint) => BigInt.asIntN(64, v);
const u64 = (v: bigint) => BigInt.asUintN(64, v);
const s32 = (v: bigint) => BigInt.asIntN(32, v);
const u32 = (v: bigint) => BigInt.asUintN(32, v);
const MIN64 = -(1n << 63n);

const REG_OPS: Record<string, (a: bigint, b: bigint) => bigint> = {
  add: (a, b) => a + b,
  sub: (a, b) => a - b,
  sll: (a, b) => a << (b & 63n),
  srl: (a, b) => u64(a) >> (b & 63n),
  sra: (a, b) => s64(a) >> (b & 63n),
  slt: (a, b) => (s64(a) < s64(b) ? 1n : 0n),
  sltu: (a, b) => (u64(a) < u64(b) ? 1n : 0n),
  xor: (a, b) => a ^ b,
  or: (a, b) => a | b,
  and: (a, b) => a & b,
  mul: (a, b) => a * b,
  mulh: (a, b) => (s64(a) * s64(b)) >> 64n,
  mulhsu: (a, b) => (s64(a) * u64(b)) >> 64n,
  mulhu: (a, b) => (u64(a) * u64(b)) >> 64n,
  div: (a, b) => (b === 0n ? -1n : s64(a) === MIN64 && s64(b) === -1n ? MIN64 : s64(a) / s64(b)),
  divu: (a, b) => (b === 0n ? M64 : u64(a) / u64(b)),
  rem: (a, b) => (b === 0n ? a : s64(a) === MIN64 && s64(b) === -1n ? 0n : s64(a) % s64(b)),
  remu: (a, b) => (b === 0n ? a : u64(a) % u64(b)),
  addw: (a, b) => s32(a + b),
  subw: (a, b) => s32(a - b),
  sllw: (a, b) => s32(a << (b & 31n)),
  srlw: (a, b) => s32(u32(a) >> (b & 31n)),
  sraw: (a, b) => s32(a) >> (b & 31n),
  mulw: (a, b) => s32(a * b),
  divw: (a, b) =>
    s32(b) === 0n ? -1n : s32(a) === -(1n << 31n) && s32(b) === -1n ? s32(a) : s32(s32(a) / s32(b)),
  divuw: (a, b) => (u32(b) === 0n ? -1n : s32(u32(a) / u32(b))),
  remw: (a, b) => (s32(b) === 0n ? s32(a) : s32(b) === -1n ? 0n : s32(s32(a) % s32(b))),
  remuw: (a, b) => (u32(b) === 0n ? s32(a) : s32(u32(a) % u32(b))),
};

const IMM_OPS: Record<string, (a: bigint, imm: bigint) => bigint> = {
  addi: (a, i) => a + i,
  slti: (a, i) => (s64(a) < i ? 1n : 0n),
  sltiu: (a, i) => (u64(a) < u64(i) ? 1n : 0n),
  xori: (a, i) => a ^ i,
  ori: (a, i) => a | i,
  andi: (a, i) => a & i,
  addiw: (a, i) => s32(a + i),
};
const SHIFT_OPS: Record<string, (a: bigint, s: bigint) => bigint> = {
  slli: (a, s) => a << s,
  srli: (a, s) => u64(a) >> s,
  srai: (a, s) => s64(a) >> s,
  slliw: (a, s) => s32(a << (s & 31n)),
  srliw: (a, s) => s32(u32(a) >> (s & 31n)),
  sraiw: (a, s) => s32(a) >> (s & 31n),
};

const EDGES = [
  0n,
  1n,
  2n,
  7n,
  -1n,
  -7n,
  MIN64,
  (1n << 63n) - 1n,
  1n << 31n,
  (1n << 31n) - 1n,
  -(1n << 31n),
  0xffffffffn,
  1n << 32n,
  0x123456789abcdef0n,
  -0x0fedcba987654321n,
  0x8000000000000001n,
];

/** Run `cases` (asm that leaves a result in a2) and return the 64-bit results in order. */
function runCases(cases: string[]): bigint[] {
  const body = cases.map((c) => `${c}\n sd a2, 0(s0)\n addi s0, s0, 8`).join("\n");
  const m = boot(
    `la s0, results\n${body}\n li a0, 1\n ${EXIT}\n.bss\n.align 3\nresults: .skip ${8 * cases.length}`,
    8 << 20,
  );
  assert.equal(m.run(10_000_000), 1, "the program ran to its end");
  const base = Number(m.reg(8)) - 8 * cases.length;
  return cases.map((_, i) => m.mem64(base + 8 * i));
}

test("RV64IM register-register ops match a BigInt reference on edge values", { skip }, () => {
  const cases: string[] = [];
  const want: bigint[] = [];
  for (const [op, f] of Object.entries(REG_OPS))
    for (const a of EDGES)
      for (const b of EDGES) {
        cases.push(`li a0, ${s64(a)}\n li a1, ${s64(b)}\n ${op} a2, a0, a1`);
        want.push(u64(f(a, b)));
      }
  const got = runCases(cases);
  for (let i = 0; i < cases.length; i++) assert.equal(got[i], want[i], cases[i].replaceAll("\n", ";"));
});

test("RV64I immediate ops and shifts match a BigInt reference", { skip }, () => {
  const cases: string[] = [];
  const want: bigint[] = [];
  const imms = [0n, 1n, -1n, 2047n, -2048n, 0x555n, -0x2aan];
  for (const [op, f] of Object.entries(IMM_OPS))
    for (const a of EDGES)
      for (const i of imms) {
        cases.push(`li a0, ${s64(a)}\n ${op} a2, a0, ${i}`);
        want.push(u64(f(a, i)));
      }
  for (const [op, f] of Object.entries(SHIFT_OPS))
    for (const a of EDGES)
      for (const sh of op.endsWith("w") ? [0n, 1n, 17n, 31n] : [0n, 1n, 31n, 32n, 33n, 63n]) {
        cases.push(`li a0, ${s64(a)}\n ${op} a2, a0, ${sh}`);
        want.push(u64(f(a, sh)));
      }
  // LUI sign-extends its 32-bit result; AUIPC adds it to the pc of the AUIPC itself.
  cases.push("lui a2, 0x80000", "lui a2, 0x7ffff", "2: auipc a2, 0x80000\n la a3, 2b\n sub a2, a2, a3");
  want.push(u64(-(1n << 31n)), 0x7ffff000n, u64(-(1n << 31n)));
  const got = runCases(cases);
  for (let i = 0; i < cases.length; i++) assert.equal(got[i], want[i], cases[i].replaceAll("\n", ";"));
});

// ---------------------------------------------------------------- compressed

test("every RV64C instruction the assembler emits expands to the 32-bit form it assembles", {
  skip,
}, async () => {
  const { RVC_TABLE } = await import("./rvc.ts");
  const lines = [
    "addi sp, sp, -64",
    "addi sp, sp, 496",
    "addi a0, sp, 1020",
    "addi s1, sp, 4",
    "fld fa0, 248(a1)",
    "lw a0, 124(a1)",
    "lw s0, 4(a5)",
    "ld a0, 248(a1)",
    "fsd fs1, 8(a5)",
    "sw a0, 64(a1)",
    "sd a4, 128(s1)",
    "addi a0, a0, -32",
    "addi t6, t6, 31",
    "addiw a0, a0, -1",
    "addiw t0, t0, 17",
    "li a5, -32",
    "li ra, 31",
    "lui a5, 0x1f",
    "lui s11, 0xfffe0",
    "srli a0, a0, 63",
    "srli s1, s1, 1",
    "srai a1, a1, 32",
    "andi a2, a2, -32",
    "andi a5, a5, 15",
    "sub a0, a0, a1",
    "xor s0, s0, a5",
    "or a3, a3, a4",
    "and a1, a1, s1",
    "subw a0, a0, a2",
    "addw a5, a5, s0",
    "slli a0, a0, 32",
    "slli t3, t3, 1",
    "fld fs0, 504(sp)",
    "lw a0, 252(sp)",
    "ld ra, 504(sp)",
    "ld t2, 0(sp)",
    "jr ra",
    "jr t5",
    "add a0, zero, a1", // C.MV is defined as ADD rd, x0, rs2
    "add s11, zero, t6",
    "ebreak",
    "jalr a0",
    "add a0, a0, a1",
    "add sp, sp, t0",
    "fsd fs0, 504(sp)",
    "sw a0, 252(sp)",
    "sd s0, 504(sp)",
    "nop",
    "1: beqz a0, 1b",
    "bnez s1, 2f",
    "j 1b",
    "j 2f",
    "beqz a5, 1b",
  ];
  const src = (rvc: boolean) =>
    `.option ${rvc ? "rvc" : "norvc"}\n${lines.join("\n")}\n.option norvc\n2: nop\n`;
  const small = assemble(src(true));
  const big = assemble(src(false));
  const sv = new DataView(small.buffer, small.byteOffset);
  const bv = new DataView(big.buffer, big.byteOffset);
  const immOf = (w: number) =>
    (w & 0x7f) === 0x6f
      ? ((w >> 31) << 20) | (w & 0xff000) | (((w >> 20) & 1) << 11) | (((w >> 21) & 0x3ff) << 1)
      : ((w >> 31) << 12) | (((w >> 7) & 1) << 11) | (((w >> 25) & 0x3f) << 5) | (((w >> 8) & 0xf) << 1);
  // Offsets of each line in the compressed layout (the 32-bit layout has line i at 4i).
  const at: number[] = [];
  for (let i = 0, s = 0; i <= lines.length; i++) {
    at.push(s);
    s += i < lines.length && (sv.getUint16(s, true) & 3) !== 3 ? 2 : 4;
  }
  let compressed = 0;
  for (let i = 0; i < lines.length; i++) {
    const h = sv.getUint16(at[i], true);
    const w = bv.getInt32(4 * i, true);
    if ((h & 3) === 3) continue;
    const e = RVC_TABLE[h];
    const isBranch = (w & 0x7f) === 0x63 || (w & 0x7f) === 0x6f;
    if (isBranch) {
      // Offsets differ between layouts: both must reach the same line.
      assert.equal(e & 0x1f07f, w & 0x1f07f, `${lines[i]}: opcode and registers`);
      assert.equal(at.indexOf(at[i] + immOf(e)), i + immOf(w) / 4, `${lines[i]}: target`);
    } else assert.equal(e, w, `${lines[i]}: 0x${h.toString(16)} expanded to 0x${(e >>> 0).toString(16)}`);
    compressed++;
  }
  assert.ok(compressed >= lines.length - 2, `only ${compressed} of ${lines.length} lines were compressed`);
});

test("reserved RVC encodings are illegal", { skip: false }, async () => {
  const { RVC_TABLE } = await import("./rvc.ts");
  assert.equal(RVC_TABLE[0x0000], 0, "all-zero halfword");
  assert.equal(RVC_TABLE[0x4001 & ~0x0f80 & 0xffff] === 0 ? 0 : RVC_TABLE[0x2001], 0, "C.ADDIW rd=0");
  assert.equal(RVC_TABLE[0x6101], 0, "C.ADDI16SP with imm 0");
  assert.equal(RVC_TABLE[0x6081 & ~0x107c], 0, "C.LUI with imm 0");
  assert.equal(RVC_TABLE[0x4002], 0, "C.LWSP rd=0");
  assert.equal(RVC_TABLE[0x6002], 0, "C.LDSP rd=0");
  assert.equal(RVC_TABLE[0x8002], 0, "C.JR rs1=0");
  assert.equal(RVC_TABLE[0x9c41], 0, "C.SUBW-group reserved op 10");
  assert.equal(RVC_TABLE[0x8000], 0, "quadrant 0 funct3 100");
});

// ---------------------------------------------------------------- atomics

test("AMOs, LR/SC and .W sign extension", { skip }, () => {
  const m = boot(`
    la s0, data
    li t0, -2
    sd t0, 0(s0)
    li t1, 5
    amoadd.d a1, t1, (s0)      # a1 = -2, mem = 3
    li t1, -9
    amomin.d a2, t1, (s0)      # a2 = 3, mem = -9
    li t1, 4
    amomaxu.d a3, t1, (s0)     # a3 = -9, mem = -9 (unsigned max)
    amoswap.d a4, t1, (s0)     # a4 = -9, mem = 4
    li t1, 0x80000000
    sw t1, 8(s0)               # word 0x80000000
    li t1, 1
    addi s1, s0, 8
    addi s10, s0, 16
    amoadd.w a5, t1, (s1)      # a5 = sign-extended 0xffffffff80000000, mem = 0x80000001
    amomax.w a6, zero, (s1)    # a6 = 0xffffffff80000001, mem = 0
    sc.d s2, t1, (s0)          # no reservation: fails (1)
    lr.d t2, (s0)
    sc.d s3, t1, (s0)          # succeeds (0), mem = 1
    lr.w t2, (s1)
    sc.w s4, t1, (s10)         # other address: fails
    sc.w s5, t1, (s1)          # reservation was cleared by the failed SC: fails
    li t1, 0xf0
    amoor.d s6, t1, (s0)       # s6 = 1, mem = 0xf1
    li t1, 0x3c
    amoand.d s7, t1, (s0)      # s7 = 0xf1, mem = 0x30
    amoxor.d s8, t1, (s0)      # s8 = 0x30, mem = 0x0c
    ld s9, 0(s0)
    li a0, 1
    ${EXIT}
    .data
    .align 3
    data: .dword 0, 0, 0`);
  assert.equal(m.run(), 1);
  const r = (i: number) => s64(m.reg(i));
  assert.equal(r(11), -2n);
  assert.equal(r(12), 3n);
  assert.equal(r(13), -9n);
  assert.equal(r(14), -9n);
  assert.equal(r(15), -(1n << 31n));
  assert.equal(r(16), -(1n << 31n) + 1n);
  assert.equal(r(18), 1n, "SC without a reservation fails");
  assert.equal(r(19), 0n, "SC after LR succeeds");
  assert.equal(r(20), 1n, "SC to another address fails");
  assert.equal(r(21), 1n, "a failed SC clears the reservation");
  assert.equal(r(22), 1n);
  assert.equal(r(23), 0xf1n);
  assert.equal(r(24), 0x30n);
  assert.equal(r(25), 0x0cn);
});

// ---------------------------------------------------------------- privileged

/** An M-mode trap handler that logs (mcause, mtval) pairs at s1 and skips the trapping 4-byte instruction;
 * an ecall from S or U ends the program with a0 = 1. */
const LOGGING_MTRAP = `
  .align 2
  mtrap:
    csrr t0, mcause
    li t1, 9
    beq t0, t1, mdone
    li t1, 8
    beq t0, t1, mdone
    sd t0, 0(s1)
    csrr t0, mtval
    sd t0, 8(s1)
    addi s1, s1, 16
    csrr t0, mepc
    addi t0, t0, 4
    csrw mepc, t0
    mret
  mdone:
    li a0, 1
    ${EXIT}
`;

function trapLog(m: Machine, count: number): Array<[bigint, bigint]> {
  const end = Number(m.reg(9));
  const start = end - 16 * count;
  const out: Array<[bigint, bigint]> = [];
  for (let a = start; a < end; a += 16) out.push([m.mem64(a), m.mem64(a + 8)]);
  return out;
}

test("CSR access rules: misa, read-only, unknown, privilege, counters, sstatus view, FS, satp", {
  skip,
}, () => {
  const m = boot(`
    la s1, log
    la t0, mtrap
    csrw mtvec, t0
    csrr s2, misa
    csrr s3, mstatus
    csrw mhartid, zero                # read-only: illegal
    csrr t0, 0x7c0                    # no such CSR: illegal
    csrr t0, fcsr                     # FS = Off: illegal
    li t0, 1 << 18
    csrs sstatus, t0                  # SUM through the sstatus view
    li t0, 1 << 3
    csrs sstatus, t0                  # MIE is not in sstatus: no effect
    csrr s4, mstatus
    li t0, 0xa000000000000000
    csrw satp, t0                     # Sv57 (mode 10) unsupported: write ignored
    csrr s5, satp
    li t0, -1
    csrw pmpaddr0, t0
    csrr s6, pmpaddr0
    csrw mhpmcounter3, t0             # read-only zero
    csrr s7, mhpmcounter3
    csrw mcycle, zero
    csrr s8, mcycle
    csrw medeleg, t0
    csrr s9, medeleg
    csrw mideleg, t0
    csrr s10, mideleg
    li t0, 1 << 11
    csrc mstatus, t0
    li t0, 1 << 11
    csrs mstatus, t0                  # MPP = S
    la t0, s_code
    csrw mepc, t0
    csrw medeleg, zero
    mret
  s_code:
    csrr t0, mstatus                  # S-mode: illegal
    csrr t0, cycle                    # mcounteren.CY = 0: illegal
    csrr t0, sstatus                  # fine
    ecall
    ${LOGGING_MTRAP}
    .bss
    .align 3
    log: .skip 256`);
  assert.equal(m.run(), 1);
  const r = (i: number) => m.reg(i);
  assert.equal(r(18), 0x800000000014112dn, "misa");
  assert.equal((r(19) >> 32n) & 0xfn, 0xan, "mstatus UXL = SXL = 2");
  assert.equal(r(20) & (1n << 18n), 1n << 18n, "SUM set through sstatus");
  assert.equal(r(20) & (1n << 3n), 0n, "MIE untouched through sstatus");
  assert.equal(r(21), 0n, "satp write with an unsupported mode is ignored");
  assert.equal(r(22), (1n << 54n) - 1n, "pmpaddr holds 54 bits");
  assert.equal(r(23), 0n, "mhpmcounter3 reads zero");
  assert.ok(r(24) < 4n, "mcycle restarted from the written 0");
  assert.equal(r(25), 0xb3ffn, "medeleg WARL mask");
  assert.equal(r(26), 0x222n, "mideleg: only S-level interrupts");
  const log = trapLog(m, 5);
  const insn = (s: string) => BigInt(s);
  assert.deepEqual(log[0], [2n, insn("0xf1401073")], "csrw mhartid: illegal, mtval = instruction");
  assert.equal(log[1][0], 2n, "unknown CSR");
  assert.equal(log[1][1], insn("0x7c0022f3"));
  assert.equal(log[2][0], 2n, "fcsr with FS off");
  assert.deepEqual(log[3], [2n, insn("0x300022f3")], "mstatus from S-mode");
  assert.deepEqual(log[4], [2n, insn("0xc00022f3")], "cycle without mcounteren.CY");
});

test("trap and delegation round trip M → S → U → S → M", { skip }, () => {
  const m = boot(`
    la t0, mtrap
    csrw mtvec, t0
    la t0, strap
    csrw stvec, t0
    li t0, 1 << 8
    csrw medeleg, t0                  # ecall from U goes to S
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, 1 << 11
    csrs mstatus, t0                  # MPP = S
    la t0, s_entry
    csrw mepc, t0
    mret
  s_entry:
    li t0, 1 << 8
    csrc sstatus, t0                  # SPP = U
    li t0, 1 << 5
    csrs sstatus, t0                  # SPIE = 1: U runs with SIE = 1, which the trap saves in SPIE
    la t0, u_entry
    csrw sepc, t0
    sret
  u_entry:
    li a0, 42
    ecall                             # to S (delegated)
    li a1, 43
    ecall                             # to S again; S then calls M
  1: j 1b
    .align 2
  strap:
    addi s4, s4, 1
    csrr s2, scause
    csrr s3, sstatus
    li t1, 1
    bne s4, t1, 2f
    csrr t0, sepc
    addi t0, t0, 4
    csrw sepc, t0
    sret
  2:
    ecall                             # from S: not delegated, goes to M
    .align 2
  mtrap:
    csrr s5, mcause
    csrr s6, mstatus
    csrr s7, mepc
    la s8, 2b
    li a0, 1
    ${EXIT}`);
  assert.equal(m.run(), 1);
  assert.equal(m.reg(10 + 0), 1n);
  assert.equal(m.reg(11), 43n, "U resumed after the first ecall");
  assert.equal(m.reg(20), 2n, "S handled two traps");
  assert.equal(m.reg(18), 8n, "scause = ecall from U");
  assert.equal((m.reg(19) >> 8n) & 1n, 0n, "sstatus.SPP = U");
  assert.equal((m.reg(19) >> 5n) & 1n, 1n, "sstatus.SPIE = old SIE");
  assert.equal((m.reg(19) >> 1n) & 1n, 0n, "sstatus.SIE cleared on entry");
  assert.equal(m.reg(21), 9n, "mcause = ecall from S");
  assert.equal((m.reg(22) >> 11n) & 3n, 1n, "mstatus.MPP = S");
  assert.equal(m.reg(23), m.reg(24), "mepc = the S-mode ecall");
  assert.equal(m.hart.privilege, 3);
});

test("Sv39: gigapages, A/D updates, U/SUM checks, misaligned superpage and page faults", { skip }, () => {
  const m = boot(`
    la s1, log
    la t0, mtrap
    csrw mtvec, t0
    la s0, root
    # root[2]: identity gigapage for the code at 0x80000000 (V R W X A D)
    li t0, (0x80000 << 10) | 0xcf
    sd t0, 16(s0)
    # root[1]: VA 0x40000000 -> PA 0x80000000, V R W without A/D
    li t0, (0x80000 << 10) | 0x07
    sd t0, 8(s0)
    # root[3]: VA 0xc0000000 -> PA 0x80000000, user page (V R W U A D)
    li t0, (0x80000 << 10) | 0xd7
    sd t0, 24(s0)
    # root[4]: VA 0x100000000 -> PA 0x80200000: misaligned gigapage
    li t0, (0x80200 << 10) | 0xc7
    sd t0, 32(s0)
    srli t0, s0, 12
    li t1, 8 << 60
    or t0, t0, t1
    csrw satp, t0
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, 1 << 11
    csrs mstatus, t0
    la t0, s_code
    csrw mepc, t0
    mret
  s_code:
    la t2, value
    li t3, 0x40000000 - 0x80000000
    add t2, t2, t3            # VA of value through root[1]
    ld s2, 0(t2)              # sets A only
    ld s3, 8(s0)              # the PTE, read through the identity map
    li t0, 77
    sd t0, 0(t2)              # sets D
    ld s4, 8(s0)
    li t3, 0x1000
    ld t0, 0(t3)              # unmapped: load page fault
    sd t0, 0(t3)              # store page fault
    li t3, 0xc0000000 - 0x80000000
    la t2, value
    add t2, t2, t3
    ld t0, 0(t2)              # U page from S without SUM: fault
    li t0, 1 << 18
    csrs sstatus, t0
    ld s5, 0(t2)              # with SUM: allowed
    li t3, 0x100000000
    ld t0, 0(t3)              # misaligned superpage: fault
    li t3, 0x8000000000
    ld t0, 0(t3)              # non-canonical: fault
    la t2, value
    ld s6, 0(t2)              # the store through the alias is visible
    ecall
    ${LOGGING_MTRAP}
    .data
    .align 3
    value: .dword 0x1122334455667788
    .bss
    .align 12
    root: .skip 4096
    log: .skip 256`);
  assert.equal(m.run(), 1);
  assert.equal(m.reg(18), 0x1122334455667788n, "load through a gigapage alias");
  assert.equal(m.reg(19) & 0xc0n, 0x40n, "A set by the load, D not yet");
  assert.equal(m.reg(20) & 0xc0n, 0xc0n, "D set by the store");
  assert.equal(m.reg(21), 77n, "S reads a U page with SUM");
  assert.equal(m.reg(22), 77n);
  const log = trapLog(m, 5);
  assert.deepEqual(log[0], [13n, 0x1000n], "load page fault, tval = VA");
  assert.deepEqual(log[1], [15n, 0x1000n], "store page fault");
  assert.equal(log[2][0], 13n, "U page without SUM");
  assert.deepEqual(log[3], [13n, 0x100000000n], "misaligned superpage");
  assert.deepEqual(log[4], [13n, 0x8000000000n], "non-canonical address");
});

test("WFI sleeps until an interrupt is pending in mip & mie, then traps when enabled", { skip }, () => {
  const m = boot(`
    la t0, mtrap
    csrw mtvec, t0
    li t0, 1 << 7
    csrw mie, t0              # MTIE, but mstatus.MIE = 0
    wfi
    li s2, 1                  # resumes here without a trap
    li t0, 1 << 3
    csrs mstatus, t0          # now enable: the still-pending MTIP traps
    li s3, 2                  # not reached before the trap
  1: j 1b
    .align 2
  mtrap:
    csrr s4, mcause
    li a0, 1
    ${EXIT}`);
  assert.equal(m.run(), null);
  assert.equal(m.hart.waiting, true, "asleep in WFI");
  assert.equal(m.hart.run(100), 0, "a sleeping hart executes nothing");
  m.hart.setPending(7, true);
  assert.equal(m.hart.waiting, false);
  assert.equal(m.run(), 1);
  assert.equal(m.reg(18), 1n);
  assert.equal(m.reg(19), 0n);
  assert.equal(m.reg(20), (1n << 63n) | 7n, "mcause = machine timer interrupt");
});

test("save → load → save round trip, and a mutation changes the state", { skip }, () => {
  const m = boot(`li a0, 3\n li a1, -1\n csrw mscratch, a1\n ${EXIT}`);
  m.run();
  const s1 = m.hart.saveState();
  const other = new Rv64Hart(0, m.bus, m.time);
  other.loadState(s1);
  assert.deepEqual(other.saveState(), s1);
  m.hart.x[10] = 99;
  assert.notDeepEqual(m.hart.saveState(), s1);
  assert.throws(() => other.loadState({ ...s1, priv: 2 }), /priv/);
  assert.throws(() => other.loadState({ ...s1, x: new Int32Array(3) }), /x must be/);
});

test("misaligned loads and stores work in hardware, also across a page boundary", { skip }, () => {
  const m = boot(`
    la s0, buf
    li t1, 4093
    add s1, s0, t1
    li t0, 0x1122334455667788
    sd t0, 0(s1)               # crosses from the first page of buf into the second
    ld s2, 0(s1)
    lw s3, 2(s1)
    lhu s4, 2(s1)
    sw t0, 1(s0)
    lwu s5, 1(s0)
    li a0, 1
    ${EXIT}
    .bss
    .align 12
    buf: .skip 8192`);
  assert.equal(m.run(), 1);
  assert.equal(m.reg(18), 0x1122334455667788n);
  assert.equal(m.reg(19), 0x33445566n);
  assert.equal(m.reg(20), 0x5566n);
  assert.equal(m.reg(21), 0x55667788n);
});

test("random instruction streams never throw out of run() (hostile guest)", () => {
  let seed = 0x2545f491;
  const rnd = () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
  for (let round = 0; round < 20; round++) {
    const ram = new GuestRam(RAM_BASE, 1 << 16);
    for (let i = 0; i < ram.i32.length; i++) ram.i32[i] = rnd();
    // Sprinkle valid CSR writes (satp, mstatus, mtvec, medeleg, mie) and xRETs so privilege and paging change.
    const system = [0x18051073, 0x30051073, 0x30551073, 0x30251073, 0x30451073, 0x30200073, 0x10200073];
    for (let i = 0; i < 2000; i++) ram.i32[rnd() % ram.i32.length] = system[rnd() % system.length];
    const bus = new PhysBus(ram);
    bus.map(EXIT_BASE, 0x1000, new ExitDevice());
    const hart = new Rv64Hart(0, bus, new FakeTime());
    hart.setPc(RAM_BASE, 0);
    for (let i = 2; i < 64; i++) hart.x[i] = i & 1 ? (rnd() & 1 ? -1 : 0) : rnd();
    let done = 0;
    for (let k = 0; k < 200 && done < 50_000; k++) {
      if (hart.waiting) hart.setPending(7, true);
      done += hart.run(1000);
    }
    assert.ok(done > 0);
  }
});

/** Two harts on copies of `ram`, the JIT on (compiling at a start's second run) and off, run in lockstep with
 * seeded budgets; their whole states and RAM must agree after every run(). Returns the JIT hart's blocks. */
function lockstepJit(ram: GuestRam, pc: number, x: Int32Array, rnd: () => number, total: number) {
  const make = (jit: boolean) => {
    const r = new GuestRam(RAM_BASE, ram.size);
    r.u8.set(ram.u8);
    const bus = new PhysBus(r);
    bus.map(EXIT_BASE, 0x1000, new ExitDevice());
    const hart = new Rv64Hart(0, bus, new FakeTime(), { jit });
    if (hart.blockCache !== null) hart.blockCache.threshold = 2;
    hart.setPc(pc, 0);
    hart.x.set(x);
    return { hart, ram: r };
  };
  const on = make(true);
  const off = make(false);
  let done = 0;
  for (let step = 0; done < total; step++) {
    if (on.hart.waiting) on.hart.setPending(7, true);
    if (off.hart.waiting) off.hart.setPending(7, true);
    const budget = 1 + (rnd() % 500);
    const a = on.hart.run(budget);
    const b = off.hart.run(budget);
    assert.equal(a, b, `step ${step}: ${a} retired with the JIT, ${b} without`);
    assert.deepEqual(on.hart.saveState(), off.hart.saveState(), `step ${step}: hart state differs`);
    done += a + 1;
  }
  assert.deepEqual(on.ram.u8, off.ram.u8, "RAM differs");
  return on.hart.blockCache!.compiled;
}

function randomRegisters(rnd: () => number): Int32Array {
  const x = new Int32Array(64);
  for (let i = 2; i < 64; i++) x[i] = i & 1 ? (rnd() & 1 ? -1 : 0) : rnd();
  return x;
}

function xorshift(seed: number): () => number {
  return () => {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    return seed >>> 0;
  };
}

test("random instruction streams: the JIT on and off retire the same instructions into the same state", () => {
  const rnd = xorshift(0x1234567);
  for (let round = 0; round < 8; round++) {
    const ram = new GuestRam(RAM_BASE, 1 << 16);
    for (let i = 0; i < ram.i32.length; i++) ram.i32[i] = rnd();
    const system = [0x18051073, 0x30051073, 0x30551073, 0x30251073, 0x30451073, 0x30200073, 0x10200073];
    for (let i = 0; i < 2000; i++) ram.i32[rnd() % ram.i32.length] = system[rnd() % system.length]!;
    lockstepJit(ram, RAM_BASE, randomRegisters(rnd), rnd, 20_000);
  }
});

test("random valid integer code (ALU, M, loads/stores also misaligned or faulting, branches, stores over the code itself): the JIT matches the interpreter", () => {
  const rnd = xorshift(0x9e3779b9);
  const pick = <T>(a: readonly T[]): T => a[rnd() % a.length]!;
  // x5 points at the data page, x7 into the code, x6 is the trap handler's: no instruction writes them.
  const rd = () => pick([1, 2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 28, 29, 30, 31]);
  const rs = () => rnd() % 32;
  const r = (f7: number, b: number, a: number, f3: number, d: number, op: number) =>
    ((f7 << 25) | (b << 20) | (a << 15) | (f3 << 12) | (d << 7) | op) >>> 0;
  const i = (imm: number, a: number, f3: number, d: number, op: number) =>
    (((imm & 0xfff) << 20) | (a << 15) | (f3 << 12) | (d << 7) | op) >>> 0;
  const sType = (imm: number, b: number, a: number, f3: number) =>
    ((((imm >> 5) & 0x7f) << 25) | (b << 20) | (a << 15) | (f3 << 12) | ((imm & 31) << 7) | 0x23) >>> 0;
  const bType = (imm: number, b: number, a: number, f3: number) =>
    ((((imm >> 12) & 1) << 31) |
      (((imm >> 5) & 0x3f) << 25) |
      (b << 20) |
      (a << 15) |
      (f3 << 12) |
      (((imm >> 1) & 0xf) << 8) |
      (((imm >> 11) & 1) << 7) |
      0x63) >>>
    0;
  const jType = (imm: number, d: number) =>
    ((((imm >> 20) & 1) << 31) |
      (((imm >> 1) & 0x3ff) << 21) |
      (((imm >> 11) & 1) << 20) |
      (((imm >> 12) & 0xff) << 12) |
      (d << 7) |
      0x6f) >>>
    0;
  const gen = (): number => {
    const k = rnd() % 100;
    if (k < 25) {
      const f7 = pick([0, 0, 0x20, 1]);
      const f3 = f7 === 0x20 ? pick([0, 5]) : rnd() % 8;
      return r(f7, rs(), rs(), f3, rd(), 0x33);
    }
    if (k < 35) {
      const f7 = pick([0, 0x20, 1]);
      const f3 = f7 === 0 ? pick([0, 1, 5]) : f7 === 0x20 ? pick([0, 5]) : pick([0, 4, 5, 6, 7]);
      return r(f7, rs(), rs(), f3, rd(), 0x3b);
    }
    if (k < 50) {
      const f3 = rnd() % 8;
      if (f3 === 1) return i(rnd() % 64, rs(), 1, rd(), 0x13);
      if (f3 === 5) return i((rnd() % 64) | (rnd() & 1 ? 0x400 : 0), rs(), 5, rd(), 0x13);
      return i(rnd(), rs(), f3, rd(), 0x13);
    }
    if (k < 55) {
      const f3 = pick([0, 1, 5]);
      if (f3 === 0) return i(rnd(), rs(), 0, rd(), 0x1b);
      return i((rnd() % 32) | (f3 === 5 && rnd() & 1 ? 0x400 : 0), rs(), f3, rd(), 0x1b);
    }
    if (k < 58) return ((rnd() & 0xfffff000) | (rd() << 7) | pick([0x37, 0x17])) >>> 0;
    if (k < 72)
      return i((rnd() % 600) - 40, rnd() % 20 === 0 ? rs() : 5, pick([0, 1, 2, 3, 4, 5, 6]), rd(), 0x03);
    if (k < 84) return sType((rnd() % 600) - 40, rs(), rnd() % 20 === 0 ? rs() : 5, rnd() % 4);
    if (k < 86) return sType((rnd() % 256) * 4, rs(), 7, 2); // a store into the code
    if (k < 97) return bType((rnd() % 32) * 4 - 64, rs(), rs(), pick([0, 1, 4, 5, 6, 7]));
    return jType((rnd() % 32) * 4 - 64, pick([0, 1]));
  };
  for (let round = 0; round < 12; round++) {
    const ram = new GuestRam(RAM_BASE, 1 << 16);
    for (let w = 0x2000; w < 0x3000; w += 4) ram.view.setUint32(w, rnd(), true);
    // Prologue: mtvec = handler (at 0xf000: skip the trapping instruction), then the random code.
    // lui t1, 0x8000f; slli t1, t1, 32; srli t1, t1, 32 (zero-extend RAM_BASE + 0xf000); csrw mtvec, t1
    const prologue = [0x8000f337, 0x02031313, 0x02035313, 0x30531073];
    const handler = [0x34102373, 0x00430313, 0x34131073, 0x30200073];
    let at = 0;
    for (const w of prologue) ram.view.setUint32((at += 4) - 4, w, true);
    while (at < 0x1000) ram.view.setUint32((at += 4) - 4, gen(), true);
    // Back to the start of the random code at the end of it, so it runs round and round.
    ram.view.setUint32(0x1000, jType(16 - 0x1000, 0), true);
    for (let k = 0; k < handler.length; k++) ram.view.setUint32(0xf000 + 4 * k, handler[k]!, true);
    const regs = randomRegisters(rnd);
    regs[10] = (RAM_BASE + 0x2000) | 0; // x5
    regs[11] = 0;
    regs[14] = (RAM_BASE + 0x400) | 0; // x7
    regs[15] = 0;
    const compiled = lockstepJit(ram, RAM_BASE, regs, rnd, 30_000);
    assert.ok(compiled > 0, "nothing was compiled");
  }
});

test("interrupts: priority MEI > MSI > MTI, delegation to S with a vectored stvec, S masking in M", {
  skip,
}, () => {
  const m = boot(`
    la s1, log
    la t0, mtrap
    csrw mtvec, t0
    la t0, svec
    ori t0, t0, 1
    csrw stvec, t0                    # vectored
    li t0, 0x222
    csrw mideleg, t0                  # S-level interrupts go to S
    li t0, 0xaaa
    csrw mie, t0
    li t0, 1 << 3
    csrs mstatus, t0                  # MIE: the harness's pending MTIP, MSIP, MEIP are taken now
    nop
    nop
    nop
    li t0, 1 << 3
    csrc mstatus, t0
    li t0, 1 << 5
    csrs mip, t0                      # STIP pending, delegated: not taken in M even with SIE
    li t0, 1 << 1
    csrs mstatus, t0
    nop
    li t0, 3 << 11
    csrc mstatus, t0
    li t0, 1 << 11
    csrs mstatus, t0
    la t0, s_code
    csrw mepc, t0
    mret                              # to S with SIE = 1: the STI is taken at once
  s_code:
    ecall
    .align 2
  mtrap:
    csrr t0, mcause
    bgez t0, mdone                    # an exception: the ecall from S
    sd t0, 0(s1)
    addi s1, s1, 8
    andi t0, t0, 63
    li t1, 1
    sll t1, t1, t0
    csrc mie, t1                      # acknowledge by masking the source
    mret
  mdone:
    li a0, 1
    ${EXIT}
    .align 6
    .option push
    .option norvc                     # vector entries are 4 bytes apart
  svec:
    j sbad                            # exceptions: not expected
    j sbad
    j sbad
    j sbad
    j sbad
    j stimer                          # vector 5: supervisor timer
    .option pop
  sbad:
    li a0, 2
    ${EXIT}
  stimer:
    csrr t0, scause
    sd t0, 0(s1)
    addi s1, s1, 8
    li t0, 1 << 5
    csrc sie, t0
    sret
    .bss
    .align 3
    log: .skip 64`);
  m.hart.setPending(7, true);
  m.hart.setPending(3, true);
  m.hart.setPending(11, true);
  assert.equal(m.run(), 1);
  const end = Number(m.reg(9));
  const log = [0, 1, 2, 3].map((k) => m.mem64(end - 32 + 8 * k));
  const irq = (n: bigint) => (1n << 63n) | n;
  assert.deepEqual(log, [irq(11n), irq(3n), irq(7n), irq(5n)]);
});

test("PAUSE ends the hart's turn early; execution continues on the next run()", { skip }, () => {
  const m = boot(`li a0, 1\n .word 0x0100000f # pause\n li a0, 2\n ${EXIT}`);
  assert.equal(m.hart.run(1000), 2, "li and pause executed, then run() returned");
  assert.equal(m.reg(10), 1n);
  assert.equal(m.run(), 2);
});

test("a misaligned load from page 0 faults instead of hitting an empty TLB entry", { skip }, () => {
  // Empty entries once had tag 1, which `lo & ~(4096 − width)` of address 1 equals: lh 1(zero) read RAM.
  const m = boot(`
    la t0, handler
    csrw mtvec, t0
    lh a1, 1(zero)
    li a0, 99
    ${EXIT}
    .align 2
    handler:
    csrr a0, mcause
    csrr a2, mtval
    ${EXIT}`);
  assert.equal(m.run(), 5); // load access fault
  assert.equal(m.reg(12), 1n);
});

/** The flat binary WARM_UP_PROGRAM describes. */
function warmUpImage(): Uint8Array {
  const image = new Uint16Array(WARM_UP_RAM_BYTES / 2);
  for (const part of WARM_UP_PROGRAM) image.set(part.halfwords, part.offset >> 1);
  return new Uint8Array(image.buffer);
}

test("the embedded warm-up program is the assembly of warm-up-program.S", { skip }, () => {
  const assembled = assembleBinary(readFileSync(join(import.meta.dirname, "warm-up-program.S"), "utf8"));
  assert.deepEqual(warmUpImage().subarray(0, assembled.length), assembled);
  assert.ok(
    warmUpImage()
      .subarray(assembled.length)
      .every((b) => b === 0),
  );
});

test("the warm-up program keeps looping (a broken one would stall in a trap loop and stop counting passes)", () => {
  const ram = new GuestRam(WARM_UP_BASE, WARM_UP_RAM_BYTES);
  ram.u8.set(warmUpImage());
  const bus = new PhysBus(ram);
  mapWarmUpRom(bus);
  const hart = new Rv64Hart(0, bus, { mtime: () => 0 });
  hart.setPc(WARM_UP_BASE, 0);
  let n = 0;
  for (let k = 0; k < 20; k++) n += hart.run(1000);
  assert.equal(n, 20_000);
  // s1 (x9) counts passes (about 200 instructions each): a program stuck in a trap loop would stop counting.
  assert.ok(hart.x[2 * 9] > 80, `only ${hart.x[2 * 9]} passes`);
  const state = hart.saveState();
  assert.equal(state.csr[22], 5); // mcause: the load access fault of "ld a0, 0(zero)"
  assert.equal(state.x[2 * 8], 0x80008000 | 0); // s0 (x8) still points at the data page
});
