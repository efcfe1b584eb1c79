import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { createQcow2 } from "../engines/backends/qcow2/index.ts";
import { assembleElf } from "../engines/riscv/cross-assembler.ts";
import { ExecSession, parseMemorySize } from "./run.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Runs `tsvm run ARGS` as a user would (without the npm check of bin/tsvm), bounded in time. */
function tsvmRun(args: string[], input?: string) {
  const r = spawnSync(
    process.execPath,
    ["--import", join(root, "node_modules/tsx/dist/loader.mjs"), join(root, "bin/tsvm.ts"), "run", ...args],
    { encoding: "utf8", timeout: 60_000, input: input ?? "" },
  );
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("bad arguments: one clear line on stderr and exit status 2", () => {
  const cases: Array<[string[], RegExp]> = [
    [["--cpus", "0"], /^tsvm run: --cpus '0' must be a whole number from 1 to 8\n$/],
    [["--cpus", "two"], /^tsvm run: --cpus 'two' must be a whole number/],
    [["--memory", "0"], /^tsvm run: --memory '0' must be a whole number of MiB from 16M to 2048M\n$/],
    [["--memory", "lots"], /^tsvm run: --memory 'lots' is not a size such as 256M or 1G\n$/],
    [
      ["--kernel", "/nonexistent/Image"],
      /^tsvm run: --kernel \/nonexistent\/Image: cannot read it \(no such file\)\n$/,
    ],
    [
      ["--disk", "/nonexistent/disk.img", "--kernel", "/etc/hostname"],
      /^tsvm run: --disk \/nonexistent\/disk\.img: /,
    ],
    [["--frobnicate"], /^tsvm run: unknown option '--frobnicate'; see 'tsvm run --help'\n$/],
    [
      ["--kernel", "/etc/hostname", "--bios", "none"],
      /^tsvm run: hostname is not a RISC-V Linux Image or ELF executable\n$/,
    ],
  ];
  for (const [args, message] of cases) {
    const r = tsvmRun(args);
    assert.equal(r.status, r.stderr.includes("not a RISC-V") ? 1 : 2, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message);
  }
});

test("a --disk whose qcow2 header is damaged, or whose backing file is missing, is one line and exit 1", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-disk-"));
  try {
    const bad = join(dir, "bad.qcow2");
    const bytes = new Uint8Array(4096).fill(0xee);
    bytes.set([0x51, 0x46, 0x49, 0xfb]);
    writeFileSync(bad, bytes);
    const orphan = join(dir, "orphan.qcow2");
    await createQcow2(orphan, { sizeBytes: 1 << 20, backing: { name: "gone.raw", format: "raw" } });
    for (const [disk, message] of [
      [bad, /^tsvm run: disk image \S*bad\.qcow2\b[^\n]*\n$/],
      [orphan, /^tsvm run: [^\n]*gone\.raw[^\n]*\n$/],
    ] as const) {
      const r = tsvmRun(["--disk", disk, "--kernel", "/etc/hostname", "--bios", "none"]);
      assert.equal(r.status, 1, r.stderr);
      assert.match(r.stderr, message);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--help prints the options and exits 0", () => {
  const r = tsvmRun(["--help"]);
  assert.equal(r.status, 0);
  assert.match(r.stdout, /--exec CMD/);
  assert.match(r.stdout, /Ctrl-A x/);
});

test("memory sizes: suffixes, a bare number in MiB, limits", () => {
  assert.equal(parseMemorySize("256M"), 256 * 2 ** 20);
  assert.equal(parseMemorySize("1G"), 2 ** 30);
  assert.equal(parseMemorySize("64"), 64 * 2 ** 20);
  assert.equal(parseMemorySize("65536K"), 64 * 2 ** 20);
  assert.throws(() => parseMemorySize("8M"), /from 16M/);
  assert.throws(() => parseMemorySize("4G"), /to 2048M/);
});

test("--bios none --kernel prog.elf runs a bare-metal program: console output, HTIF exit code", () => {
  const elf = assembleElf(`
.text
.globl _start
_start:
  li t0, 0x10000000
  li t1, 'o'
  sb t1, 0(t0)
  li t1, 'k'
  sb t1, 0(t0)
  li a0, (9 << 1) | 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
.data
.globl tohost
tohost: .dword 0
`);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-test-"));
  try {
    writeFileSync(join(dir, "prog.elf"), elf);
    const r = tsvmRun(["--bios", "none", "--kernel", join(dir, "prog.elf"), "--memory", "32M"]);
    assert.equal(r.stdout, "ok");
    assert.equal(r.status, 9, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a guest poweroff through sifive_test exits 0; piped stdin reaches the UART", () => {
  // Echo one byte read from the UART (polling LSR.DR), then power off.
  const elf = assembleElf(`
.text
.globl _start
_start:
  li t0, 0x10000000
1: lbu t1, 5(t0)
  andi t1, t1, 1
  beqz t1, 1b
  lbu t1, 0(t0)
  sb t1, 0(t0)
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
2: j 2b
`);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-test-"));
  try {
    writeFileSync(join(dir, "echo.elf"), elf);
    const r = tsvmRun(["--bios", "none", "--kernel", join(dir, "echo.elf"), "--memory", "32M"], "Z");
    assert.equal(r.stdout, "Z");
    assert.equal(r.status, 0, r.stderr);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a sifive_test FINISHER_FAIL passes its code on as the exit status (1 for code 0); PASS exits 0", () => {
  const finisher = (word: number) =>
    assembleElf(`
.text
.globl _start
_start:
  li t0, 0x100000
  li t1, ${word}
  sw t1, 0(t0)
1: j 1b
`);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-test-"));
  try {
    for (const [word, status] of [
      [(5 << 16) | 0x3333, 5],
      [0x3333, 1],
      [(256 << 16) | 0x3333, 1],
      [0x5555, 0],
    ] as const) {
      const elf = join(dir, `finisher-${word.toString(16)}.elf`);
      writeFileSync(elf, finisher(word));
      const r = tsvmRun(["--bios", "none", "--kernel", elf, "--memory", "32M"]);
      assert.equal(r.status, status, `sifive_test word 0x${word.toString(16)}: ${r.stderr}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("on a terminal: raw mode, Ctrl-A h and Ctrl-A x, and the terminal is restored afterwards", () => {
  // A guest that echoes every byte it receives on the UART.
  const elf = assembleElf(`
.text
.globl _start
_start:
  li t0, 0x10000000
1: lbu t1, 5(t0)
  andi t1, t1, 1
  beqz t1, 1b
  lbu t1, 0(t0)
  sb t1, 0(t0)
  j 1b
`);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-test-"));
  try {
    writeFileSync(join(dir, "echo.elf"), elf);
    const tsvm = `${process.execPath} --import ${join(root, "node_modules/tsx/dist/loader.mjs")} ${join(root, "bin/tsvm.ts")}`;
    // script(1) gives tsvm a pseudo-terminal; the shell then reports tsvm's status and the tty's mode.
    const inner = `${tsvm} run --bios none --kernel ${join(dir, "echo.elf")} --memory 32M; echo STATUS=$?; stty -a`;
    const feeder = `sleep 5; printf 'ab'; sleep 1; printf '\\001h'; sleep 0.5; printf '\\001x'`;
    const r = spawnSync("sh", ["-c", `(${feeder}) | script -qfec "${inner}" /dev/null`], {
      encoding: "utf8",
      timeout: 60_000,
    });
    assert.match(
      r.stdout,
      /^ab/,
      "the guest echoed the typed bytes (raw mode: no tty echo, no line buffering)",
    );
    assert.match(r.stdout, /C-a x {4}exit tsvm/);
    assert.match(r.stdout, /STATUS=0/);
    assert.match(r.stdout, /[^-]icanon/, "canonical mode is back after tsvm exits");
    assert.match(r.stdout, /[^-]echo /);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("--exec protocol: prompt, stty -echo, the command between markers, however the output is chunked", () => {
  for (const chunk of [1, 3, 7, 1000]) {
    let out = "";
    const sent: string[] = [];
    const session = new ExecSession("echo hi", (t) => (out += t));
    session.attach({ sendConsole: (b) => sent.push(Buffer.from(b).toString()) });
    const guest = (text: string) => {
      const bytes = Buffer.from(text.replace(/\n/g, "\r\n"));
      for (let i = 0; i < bytes.length; i += chunk) session.write(bytes.subarray(i, i + chunk));
    };
    guest("Linux booting...\n~ # ");
    assert.deepEqual(sent, ["stty -echo\n"]);
    guest("stty -echo\n~ # ");
    assert.equal(sent.length, 2);
    assert.match(sent[1]!, /^printf '\\137\\137TSVM\\137BEGIN[^\n]*\(\necho hi\n\) ; printf '\\137/);
    assert.doesNotMatch(sent[1]!, /__TSVM/, "the markers never appear literally in what is typed");
    guest("> > __TSVM_BEGIN__\nhi\nunder_score __x\n__TSVM_END_7__\n");
    assert.equal(out, "hi\nunder_score __x\n", `chunk ${chunk}`);
    assert.equal(sent[2], "sync; poweroff -f\n");
    assert.equal(session.finish({ kind: "poweroff", code: 0 }), 7);
  }
});
