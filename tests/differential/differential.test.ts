// Differential test against QEMU: seeded random RV64GC instruction streams (random-program.ts) and an LR/SC
// program on two harts (lrsc-two-harts.S) run on `qemu-system-riscv64 -M virt -bios none` and on the tsvm
// board (interpreted, with every block compiled the first time it is reached, and at JIT threshold 1); the registers, fcsr and
// scratch memory each prints must be the same, dword for dword. TSVM_DIFF_SEED=n picks other streams.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { BARE_METAL_GCC_FLAGS, type BareMetalOptions, runBareMetal } from "../compliance/bare-metal-run.ts";
import { skipUnless } from "../skip-unless.ts";
import { describeDword, generateProgram } from "./random-program.ts";

const here = dirname(fileURLToPath(import.meta.url));
const GCC = "riscv64-linux-gnu-gcc";
const QEMU = "qemu-system-riscv64";
const GCC_FLAGS = [...BARE_METAL_GCC_FLAGS, "-T", join(here, "../compliance/link.ld")];
/** Programs per run, blocks (seeds) per program, random instructions per block. */
const PROGRAMS = 4;
const BLOCKS = 6;
const LENGTH = 300;
const BASE_SEED = Number(process.env.TSVM_DIFF_SEED ?? 1);
/** The ways tsvm runs each program. */
const TSVM_MODES: Array<[string, BareMetalOptions]> = [
  ["interpreted", { jit: false }],
  ["every block compiled when first reached", { compileFirstTime: true }],
  ["JIT threshold 1", { jitThreshold: 1 }],
];

function commandWorks(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { stdio: "ignore", timeout: 60_000 });
  return r.error === undefined && r.status === 0;
}

const gccFound = commandWorks(GCC, ["--version"]);
const qemuFound = commandWorks(QEMU, ["--version"]);
const skip =
  skipUnless(gccFound, `${GCC} not found (apt-get install gcc-riscv64-linux-gnu)`) ||
  skipUnless(qemuFound, `${QEMU} not found (apt-get install qemu-system-misc)`);

/** Builds `source` (assembly) into an ELF cached by the hash of its inputs; returns its path. */
function build(name: string, source: string, extra: string[] = []): string {
  const gccVersion = spawnSync(GCC, ["--version"], { encoding: "utf8" }).stdout;
  const hash = createHash("sha256")
    .update(gccVersion)
    .update(GCC_FLAGS.join(" "))
    .update(readFileSync(join(here, "../compliance/link.ld")))
    .update(extra.join(" "))
    .update(source)
    .digest("hex")
    .slice(0, 20);
  const dir = join(process.env.TSVM_CACHE ?? join(homedir(), ".cache", "tsvm"), "differential", hash);
  const elf = join(dir, `${name}.elf`);
  if (existsSync(elf)) return elf;
  mkdirSync(dir, { recursive: true });
  const src = join(dir, `${name}.S`);
  writeFileSync(src, source);
  const tmp = `${elf}.${process.pid}.tmp`;
  const r = spawnSync(GCC, [...GCC_FLAGS, ...extra, "-o", tmp, src], { encoding: "utf8", timeout: 120_000 });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    assert.fail(`${name}: build failed (source kept at ${src})\n${r.stderr}${r.stdout}`);
  }
  renameSync(tmp, elf);
  return elf;
}

/** Runs the ELF on QEMU's virt board; resolves with its UART output (it must power off with a pass). */
function runQemu(elf: string, harts = 1): string {
  const r = spawnSync(
    QEMU,
    ["-M", "virt", "-bios", "none", "-kernel", elf, "-nographic", "-smp", String(harts), "-m", "128M"],
    { encoding: "latin1", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] },
  );
  assert.equal(r.error, undefined, `QEMU: ${r.error?.message}`);
  assert.equal(r.status, 0, `QEMU exited with ${r.status}: ${r.stdout}${r.stderr}`);
  return r.stdout.replaceAll("\r", "");
}

function runTsvm(elf: string, options: BareMetalOptions): string {
  const r = runBareMetal("prog.elf", new Uint8Array(readFileSync(elf)), {
    maxInstructions: 50_000_000,
    ...options,
  });
  assert.ok(r.event !== null, `no power-off after ${r.executed} instructions; output:\n${r.output}`);
  assert.deepEqual(r.event, { kind: "poweroff", code: 0 }, `output:\n${r.output}`);
  // The forced modes must have run compiled code (a change to the block cache's counting could stop that).
  if (options.jit !== false)
    assert.ok(r.board.harts[0]!.blockCache!.compiled > 0, "the block compiler compiled nothing");
  return r.output.replaceAll("\r", "");
}

/** The dwords printed between BEGIN and END. */
function dump(output: string, where: string): string[] {
  const m = /BEGIN\n([0-9a-f\n]*)END\n/.exec(output);
  assert.ok(m, `${where}: no BEGIN … END dump in its output:\n${output.slice(0, 2000)}`);
  return m[1]!.split("\n").filter((l) => l !== "");
}

for (let p = 0; p < PROGRAMS; p++) {
  const seeds = Array.from({ length: BLOCKS }, (_, b) => BASE_SEED * 1000 + p * BLOCKS + b);
  test(`random instruction streams, seeds ${seeds[0]}–${seeds.at(-1)}: tsvm = QEMU`, { skip }, () => {
    const program = generateProgram(seeds, LENGTH);
    const elf = build(`random-${seeds[0]}`, program.source);
    const expected = dump(runQemu(elf), "QEMU");
    for (const [mode, options] of TSVM_MODES) {
      const got = dump(runTsvm(elf, options), `tsvm (${mode})`);
      assert.equal(
        got.length,
        expected.length,
        `tsvm (${mode}) printed ${got.length} dwords, QEMU ${expected.length}`,
      );
      const diffs: string[] = [];
      for (let i = 0; i < expected.length; i++)
        if (got[i] !== expected[i]) diffs.push(`  ${describeDword(i)}: tsvm ${got[i]}, QEMU ${expected[i]}`);
      assert.ok(
        diffs.length === 0,
        `tsvm (${mode}) differs from QEMU in ${diffs.length} dwords (block b has seed ${seeds[0]} + b; ` +
          `program: ${elf.replace(/\.elf$/, ".S")}):\n${diffs.slice(0, 20).join("\n")}`,
      );
    }
  });
}

test("LR/SC and AMOs on two harts: every increment counted once, on QEMU and on tsvm", { skip }, () => {
  const elf = build("lrsc-two-harts", readFileSync(join(here, "lrsc-two-harts.S"), "utf8"));
  const report = /LRSC d=([0-9a-f]{16}) w=([0-9a-f]{16}) amo=([0-9a-f]{16}) OK\n/;
  const expected = `LRSC d=${hex(2 * LRSC_ROUNDS)} w=${hex(2 * LRSC_ROUNDS)} amo=${hex(4 * LRSC_ROUNDS)} OK\n`;
  const qemu = runQemu(elf, 2);
  assert.match(qemu, report, `QEMU: ${qemu}`);
  assert.ok(qemu.includes(expected), `QEMU: ${qemu}`);
  for (const [mode, options] of TSVM_MODES) {
    const out = runTsvm(elf, { ...options, harts: 2 });
    assert.ok(out.includes(expected), `tsvm (${mode}): ${out}`);
  }
});

/** lrsc-two-harts.S's ROUNDS. */
const LRSC_ROUNDS = 5000;

function hex(n: number): string {
  return n.toString(16).padStart(16, "0");
}
