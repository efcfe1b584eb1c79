// Rv64Hart against real RISC-V code assembled by Debian's riscv64-linux-gnu toolchain at test time.

import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { GuestRam } from "../bus/guest-ram.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { Rv64Hart } from "./hart.ts";

const RAM_BASE = 0x80000000;
const EXIT_BASE = 0x100000;

function hasToolchain(): boolean {
  try {
    execFileSync("riscv64-linux-gnu-gcc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}
const TOOLCHAIN = hasToolchain();
if (!TOOLCHAIN)
  console.warn(
    "SKIPPING hart tests: riscv64-linux-gnu-gcc is missing (apt-get install gcc-riscv64-linux-gnu)",
  );
const skip = TOOLCHAIN ? false : "riscv64-linux-gnu-gcc is not installed";

const LINK_LD = `ENTRY(_start)
SECTIONS { . = 0x80000000; .text : { *(.text.init) *(.text*) } . = ALIGN(4096);
  .data : { *(.rodata*) *(.data*) *(.sdata*) *(.bss*) *(.sbss*) } }
`;

/** Assemble a bare-metal program (entry `_start`, linked at RAM base) to a flat binary. */
export function assemble(source: string): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-hart-"));
  try {
    writeFileSync(join(dir, "t.S"), `.section .text.init\n.globl _start\n_start:\n${source}\n`);
    writeFileSync(join(dir, "link.ld"), LINK_LD);
    execFileSync(
      "riscv64-linux-gnu-gcc",
      [
        "-nostdlib",
        "-nostartfiles",
        "-static",
        "-march=rv64gc",
        "-mabi=lp64d",
        "-T",
        join(dir, "link.ld"),
        "-Wl,--build-id=none",
        "-o",
        join(dir, "t.elf"),
        join(dir, "t.S"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    execFileSync("riscv64-linux-gnu-objcopy", ["-O", "binary", join(dir, "t.elf"), join(dir, "t.bin")]);
    return new Uint8Array(readFileSync(join(dir, "t.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

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
