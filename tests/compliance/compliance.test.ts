// Differential ISA compliance: every tests/compliance/*.S program must pass on QEMU's virt board (which
// proves the program right) and then on the tsvm machine. A program reports through the sifive_test
// finisher (process exit code 0, or the number of the failing check) and prints PASS / FAIL <n> on the UART.
import assert from "node:assert/strict";
import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from "node:fs";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { skipUnless } from "../skip-unless.ts";
import { BARE_METAL_GCC_FLAGS, type BareMetalResult, runBareMetal } from "./bare-metal-run.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, "../..");
const GCC = "riscv64-linux-gnu-gcc";
const QEMU = "qemu-system-riscv64";
/** Linked into every program. */
const RUNTIME = "runtime.S";
/** Common to every program (the runtime, the linker script, every header and included body): a change to
 * any of them rebuilds everything. */
const SHARED_SOURCES = readdirSync(here)
  .filter((f) => f === RUNTIME || f === "link.ld" || f.endsWith(".h") || f.endsWith(".inc"))
  .sort();
const GCC_FLAGS = BARE_METAL_GCC_FLAGS;
/** Block-compiler thresholds each program also runs at (the default, JIT_THRESHOLD, is `tsvm run`'s). */
const FORCED_JIT_THRESHOLDS = [1, 2, 16];
/** The largest program retires a few million instructions: past this it hangs. */
const FORCED_MAX_INSTRUCTIONS = 200_000_000;
const QEMU_TIMEOUT_MS = 30_000;
/** The emulator is far slower than QEMU's JIT; the programs are small, so this is still a hang guard. */
const TSVM_TIMEOUT_MS = 120_000;

function commandWorks(command: string, args: string[]): boolean {
  const r = spawnSync(command, args, { stdio: "ignore", timeout: 60_000 });
  return r.error === undefined && r.status === 0;
}

function cacheRoot(): string {
  const base = process.env.TSVM_CACHE ?? join(homedir(), ".cache", "tsvm");
  return join(base, "compliance");
}

/** Programs: every *.S except the runtime, optionally with a C companion `<name>.c`. */
function programs(): string[] {
  const only = process.env.TSVM_COMPLIANCE_ONLY?.split(",").filter((s) => s !== "");
  return readdirSync(here)
    .filter((f) => f.endsWith(".S") && f !== RUNTIME)
    .map((f) => f.slice(0, -2))
    .filter((name) => only === undefined || only.includes(name))
    .sort();
}

/** Builds `<name>.elf` into a directory named by the hash of its inputs, unless it is already there. */
function build(name: string, gccVersion: string): string {
  const sources = [...SHARED_SOURCES, `${name}.S`];
  if (existsSync(join(here, `${name}.c`))) sources.push(`${name}.c`);
  const hash = createHash("sha256");
  hash.update(gccVersion);
  hash.update(GCC_FLAGS.join(" "));
  for (const s of sources) {
    hash.update(s);
    hash.update(readFileSync(join(here, s)));
  }
  const dir = join(cacheRoot(), hash.digest("hex").slice(0, 20));
  const elf = join(dir, `${name}.elf`);
  if (existsSync(elf)) return elf;
  mkdirSync(dir, { recursive: true });
  const tmp = `${elf}.${process.pid}.tmp`;
  const inputs = sources.filter((s) => s === RUNTIME || s.startsWith(`${name}.`)).map((s) => join(here, s));
  const r = spawnSync(GCC, [...GCC_FLAGS, "-T", join(here, "link.ld"), "-I", here, "-o", tmp, ...inputs], {
    encoding: "utf8",
    timeout: 120_000,
  });
  if (r.status !== 0) {
    rmSync(tmp, { force: true });
    assert.fail(`${name}: build failed\n${r.stderr}${r.stdout}`);
  }
  renameSync(tmp, elf);
  return elf;
}

/** Turns a finished run into an assertion that names the failing check. The exit code carries the
 * verdict, and the UART line ("PASS" or "FAIL <n>", printed by runtime.S) must agree with it: an exit
 * code of 0 without "PASS" is not a pass. */
function assertPassed(where: string, name: string, r: SpawnSyncReturns<string>): void {
  const output = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim();
  if (r.error !== undefined) {
    const timedOut = (r.error as NodeJS.ErrnoException).code === "ETIMEDOUT";
    assert.fail(`${name} on ${where}: ${timedOut ? "timed out (no report)" : r.error.message}\n${output}`);
  }
  if (r.status === null) assert.fail(`${name} on ${where}: killed by ${r.signal}\n${output}`);
  const uartFail = /FAIL (\d+)/.exec(r.stdout);
  if (uartFail !== null) {
    assert.fail(`${name} on ${where}: check ${uartFail[1]} failed (exit code ${r.status})\n${output}`);
  }
  if (r.status !== 0) {
    assert.fail(`${name} on ${where}: check ${r.status} failed (exit code ${r.status})\n${output}`);
  }
  assert.match(r.stdout, /PASS/, `${name} on ${where}: exit code 0 but no PASS on the UART\n${output}`);
}

/** assertPassed for a run in this process: the power-off code stands for the exit status. */
function assertBareMetalPassed(where: string, name: string, r: BareMetalResult): void {
  assert.ok(r.event !== null, `${name} on ${where}: no report after ${r.executed} instructions\n${r.output}`);
  const status = r.event.kind === "poweroff" || r.event.kind === "htif-exit" ? r.event.code : null;
  assertPassed(where, name, {
    status,
    signal: null,
    stdout: r.output,
    stderr: "",
  } as SpawnSyncReturns<string>);
}

const gccFound = commandWorks(GCC, ["--version"]);
const qemuFound = commandWorks(QEMU, ["--version"]);
const tsvmBin = join(root, "bin", "tsvm");
const noGcc = skipUnless(gccFound, `${GCC} not found (apt-get install gcc-riscv64-linux-gnu)`);

if (noGcc) {
  test("ISA compliance suite", { skip: noGcc }, () => {});
} else {
  const gccVersion = spawnSync(GCC, ["--version"], { encoding: "utf8" }).stdout;
  for (const name of programs()) {
    test(name, async (t) => {
      const elf = build(name, gccVersion);
      await t.test("qemu", { skip: skipUnless(qemuFound, `${QEMU} not found`) }, () => {
        const r = spawnSync(
          QEMU,
          ["-M", "virt", "-bios", "none", "-kernel", elf, "-nographic", "-smp", "1", "-m", "128M"],
          { encoding: "utf8", timeout: QEMU_TIMEOUT_MS, stdio: ["ignore", "pipe", "pipe"] },
        );
        assertPassed("QEMU", name, r);
      });
      // No way around this half: a `tsvm run` that does not work fails it.
      await t.test("tsvm", () => {
        const r = spawnSync(tsvmBin, ["run", "--bios", "none", "--kernel", elf], {
          encoding: "utf8",
          timeout: TSVM_TIMEOUT_MS,
          stdio: ["ignore", "pipe", "pipe"],
        });
        assertPassed("tsvm", name, r);
      });
      // The same program with the block compiler forced on, in this process: every block compiled before
      // the start (compiled code runs from the first jump on, where the compiler takes the instructions),
      // then with the compiler's own counting at low thresholds (a start compiled when reached again).
      const elfBytes = new Uint8Array(readFileSync(elf));
      await t.test("tsvm, every block compiled when first reached", () => {
        const r = runBareMetal(`${name}.elf`, elfBytes, {
          compileFirstTime: true,
          maxInstructions: FORCED_MAX_INSTRUCTIONS,
        });
        assertBareMetalPassed("tsvm (compiled when first reached)", name, r);
        assert.ok(r.board.harts[0]!.blockCache!.compiled > 0, `${name}: nothing compiled`);
      });
      // RAM in a SharedArrayBuffer, as with harts on threads: 64-bit accesses, PTE reads and A/D updates take
      // their whole-doubleword and compare-and-swap paths, compiled and interpreted.
      await t.test("tsvm, RAM shared between threads, every block compiled when first reached", () => {
        const r = runBareMetal(`${name}.elf`, elfBytes, {
          compileFirstTime: true,
          sharedRam: true,
          maxInstructions: FORCED_MAX_INSTRUCTIONS,
        });
        assertBareMetalPassed("tsvm (shared RAM, compiled when first reached)", name, r);
      });
      await t.test("tsvm, RAM shared between threads, interpreter", () => {
        const r = runBareMetal(`${name}.elf`, elfBytes, {
          jit: false,
          sharedRam: true,
          maxInstructions: FORCED_MAX_INSTRUCTIONS,
        });
        assertBareMetalPassed("tsvm (shared RAM, interpreter)", name, r);
      });
      for (const jitThreshold of FORCED_JIT_THRESHOLDS) {
        await t.test(`tsvm, compiling at ${jitThreshold}`, () => {
          const r = runBareMetal(`${name}.elf`, elfBytes, {
            jitThreshold,
            maxInstructions: FORCED_MAX_INSTRUCTIONS,
          });
          assertBareMetalPassed(`tsvm (JIT threshold ${jitThreshold})`, name, r);
          if (jitThreshold === 1)
            assert.ok(r.board.harts[0]!.blockCache!.compiled > 0, `${name}: nothing compiled`);
        });
      }
    });
  }
}
