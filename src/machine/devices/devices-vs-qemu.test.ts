// Differential test of the platform devices against QEMU 7.2's virt board: one bare-metal program performs
// a fixed sequence of register accesses on QEMU's UART, PLIC, CLINT and goldfish RTC, reading mip along the
// way, and prints every value it read; the same sequence replayed on our devices must read the same values.
// Each access is listed once, in `OPS`, and both the program and the replay are generated from that list.

import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { skipUnless } from "../../../tests/skip-unless.ts";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import { Clint } from "./clint.ts";
import { GoldfishRtc } from "./goldfish-rtc.ts";
import { Plic } from "./plic.ts";
import { SifiveTest } from "./sifive-test.ts";
import { Uart16550 } from "./uart16550.ts";

const TEST = 0x0010_0000;
const RTC = 0x0010_1000;
const CLINT = 0x0200_0000;
const PLIC = 0x0c00_0000;
const UART = 0x1000_0000;
const PLIC_PENDING = PLIC + 0x1000;
const PLIC_ENABLE_S = PLIC + 0x2000 + 0x80; // hart 0, S-mode context
const PLIC_THRESHOLD_S = PLIC + 0x200000 + 0x1000;
const PLIC_CLAIM_S = PLIC_THRESHOLD_S + 4;

type Op =
  | { readonly kind: "w"; readonly addr: number; readonly width: AccessWidth; readonly value: number }
  /** `mask` keeps only the bits compared (where we model the datasheet and QEMU does not); 0 = not compared. */
  | { readonly kind: "r"; readonly addr: number; readonly width: AccessWidth; readonly mask: number }
  | { readonly kind: "mip" }
  /** A busy loop, so QEMU's timers (the UART's character timeout) can expire: 30 M instructions, at least ~10 ms
   * of host time even at QEMU's fastest, some 30 times four character times at the test's 115200 baud. With
   * 3 M the timeout sometimes had not fired yet on a loaded host (QEMU's timers run late there). */
  | { readonly kind: "delay" };

const OPS: Op[] = [];
const w = (addr: number, value: number, width: AccessWidth = 4) =>
  OPS.push({ kind: "w", addr, width, value });
const r = (addr: number, width: AccessWidth = 4, mask = 0xffffffff) =>
  OPS.push({ kind: "r", addr, width, mask });
const uw = (reg: number, value: number) => w(UART + reg, value, 1);
const ur = (reg: number, mask = 0xff) => r(UART + reg, 1, mask);
const mip = () => OPS.push({ kind: "mip" });

// UART: power-on values, scratch, IER bits, divisor latch, FIFO detection.
for (const reg of [5, 2, 6, 4, 3, 1]) ur(reg);
uw(7, 0xa5);
ur(7);
uw(1, 0xff);
ur(1);
uw(1, 0);
uw(3, 0x83);
uw(0, 0x01);
uw(1, 0x00);
ur(0);
ur(1);
uw(3, 0x03);
ur(3);
uw(2, 0x01);
ur(2);
uw(2, 0xc7);
ur(2);
// THRI as Linux's start-up test drives it, seen through IIR and the PLIC's pending bit 10.
uw(1, 0x02);
ur(2);
ur(2);
uw(1, 0);
uw(1, 0x02);
r(PLIC_PENDING);
ur(2);
r(PLIC_PENDING);
uw(1, 0);
// Loopback: Linux's MSR probe (QEMU reports no delta bits in loopback; the datasheet does), receive paths.
uw(4, 0x1a);
ur(6, 0xf0);
uw(2, 0x01);
uw(1, 0x01);
uw(0, 0x41);
ur(5);
ur(2, 0xf7); // RDI; QEMU's character timeout (CTI) may already have fired in host time
r(PLIC_PENDING);
ur(0);
ur(5);
ur(2);
uw(2, 0x41); // trigger level 4
uw(0, 0x42);
uw(0, 0x43);
ur(2, 0); // QEMU raises the character timeout after four character times; we at once
OPS.push({ kind: "delay" });
ur(2);
uw(0, 0x44);
uw(0, 0x45);
ur(2);
for (let i = 0; i < 4; i++) ur(0);
ur(5);
ur(2);
// Overrun without FIFOs: the new byte replaces the held one.
uw(2, 0x00);
uw(1, 0x05);
uw(0, 0x01);
uw(0, 0x02);
ur(2);
ur(5);
ur(5);
ur(0);
uw(4, 0x00);
ur(4);
ur(6, 0xf0);
uw(1, 0);
uw(3, 0x03);

// PLIC: WARL priority/threshold, source 0, enables; claim and complete of the UART's level interrupt.
w(PLIC + 4 * 10, 0xffffffff);
r(PLIC + 4 * 10);
w(PLIC, 5);
r(PLIC);
w(PLIC_THRESHOLD_S, 0x1f);
r(PLIC_THRESHOLD_S);
w(PLIC_THRESHOLD_S, 0);
w(PLIC + 4 * 10, 1);
w(PLIC_ENABLE_S, 1 << 10);
r(PLIC_ENABLE_S);
// No mip read here: QEMU re-evaluates its outputs on the next source, priority, threshold or claim
// access, not on an enable write; we do at once.
uw(1, 0x02);
r(PLIC_PENDING);
mip();
r(PLIC_CLAIM_S);
r(PLIC_PENDING);
mip();
r(PLIC_CLAIM_S);
// The line drops while claimed, then the completion: no new request. (A line still high at completion
// pends again here at once; QEMU only at the device's next update of its line.)
uw(1, 0);
w(PLIC_CLAIM_S, 10);
r(PLIC_PENDING);
mip();
// A request stays pending when the line drops before the claim.
uw(1, 0x02);
uw(1, 0);
r(PLIC_PENDING);
mip();
r(PLIC_CLAIM_S);
w(PLIC_CLAIM_S, 10);
r(PLIC_PENDING);
mip();

// CLINT: msip, mtimecmp halves and MTIP, writing mtime.
w(CLINT, 0xffffffff);
r(CLINT);
mip();
w(CLINT, 0);
mip();
w(CLINT + 0x4000, 0x12345678);
w(CLINT + 0x4004, 0x7fffffff);
r(CLINT + 0x4000);
r(CLINT + 0x4004);
mip();
w(CLINT + 0x4004, 0);
w(CLINT + 0x4000, 0);
mip();
w(CLINT + 0x4004, 0xffffffff);
mip();
w(CLINT + 0xbff8, 0);
w(CLINT + 0xbffc, 0x100);
r(CLINT + 0xbffc);
w(CLINT + 0xbffc, 0);

// Goldfish RTC: setting the time, the latch, an alarm in the past and one in the future.
r(RTC + 0x10);
r(RTC + 0x18);
w(RTC + 0x04, 0x12345678);
w(RTC + 0x00, 0);
r(RTC + 0x00, 4, 0);
r(RTC + 0x04);
w(RTC + 0x10, 1);
r(RTC + 0x10);
w(PLIC + 4 * 11, 2);
w(PLIC_ENABLE_S, 1 << 11);
w(RTC + 0x0c, 1);
w(RTC + 0x08, 0);
r(RTC + 0x18);
r(PLIC_PENDING);
mip();
r(RTC + 0x08);
r(RTC + 0x0c);
w(RTC + 0x0c, 0x12345700); // about ten minutes ahead of the time set above
w(RTC + 0x08, 0);
r(RTC + 0x18);
w(RTC + 0x14, 1);
r(RTC + 0x18);
w(RTC + 0x1c, 1);
r(PLIC_PENDING);
mip();
w(RTC + 0x10, 3);
r(RTC + 0x10);

/** The program: each op in order, read values stored to `results`, then printed in hex, then power-off. */
function assembly(): string {
  const lines = [".section .text", ".globl _start", "_start:", "  la s0, results"];
  let label = 0;
  for (const op of OPS) {
    if (op.kind === "w") {
      const store = { 1: "sb", 2: "sh", 4: "sw" }[op.width];
      lines.push(`  li t0, ${op.addr}`, `  li t1, ${op.value}`, `  ${store} t1, 0(t0)`);
    } else if (op.kind === "r") {
      const load = { 1: "lbu", 2: "lhu", 4: "lwu" }[op.width];
      lines.push(`  li t0, ${op.addr}`, `  ${load} t1, 0(t0)`, "  sw t1, 0(s0)", "  addi s0, s0, 4");
    } else if (op.kind === "mip") {
      lines.push("  csrr t1, mip", "  sw t1, 0(s0)", "  addi s0, s0, 4");
    } else {
      label++;
      lines.push("  li t2, 30000000", `delay${label}:`, "  addi t2, t2, -1", `  bnez t2, delay${label}`);
    }
  }
  lines.push(
    `  li t0, ${UART}`,
    "  li t1, 3",
    "  sb t1, 3(t0)",
    "  sb zero, 1(t0)",
    "  sb zero, 4(t0)",
    "  sb zero, 2(t0)",
    "  li a2, 64", // '@' marks where the results start
    "  call putc",
    "  li a2, 10",
    "  call putc",
    "  la s1, results",
    "next:",
    "  beq s1, s0, done",
    "  lwu a0, 0(s1)",
    "  li a1, 28",
    "nibble:",
    "  srl a2, a0, a1",
    "  andi a2, a2, 15",
    "  li a3, 10",
    "  blt a2, a3, digit",
    "  addi a2, a2, 87",
    "  j emit",
    "digit:",
    "  addi a2, a2, 48",
    "emit:",
    "  call putc",
    "  addi a1, a1, -4",
    "  bgez a1, nibble",
    "  li a2, 10",
    "  call putc",
    "  addi s1, s1, 4",
    "  j next",
    "done:",
    `  li t0, ${TEST}`,
    "  li t1, 0x5555",
    "  sw t1, 0(t0)",
    "hang:",
    "  j hang",
    "putc:",
    "  lbu a4, 5(t0)",
    "  andi a4, a4, 0x20",
    "  beqz a4, putc",
    "  sb a2, 0(t0)",
    "  ret",
    ".section .bss",
    ".balign 8",
    "results:",
    `  .space ${4 * OPS.length}`,
  );
  return `${lines.join("\n")}\n`;
}

function runOnQemu(): number[] {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-devices-vs-qemu-"));
  try {
    writeFileSync(join(dir, "prog.S"), assembly());
    const cc = spawnSync(
      "riscv64-linux-gnu-gcc",
      [
        "-nostdlib",
        "-static",
        "-march=rv64gc",
        "-mabi=lp64d",
        "-Wl,-Ttext=0x80000000",
        "-o",
        "prog.elf",
        "prog.S",
      ],
      { cwd: dir, encoding: "utf8", timeout: 30_000 },
    );
    assert.equal(cc.status, 0, `assembling the probe program failed:\n${cc.stderr}`);
    const qemu = spawnSync(
      "qemu-system-riscv64",
      ["-M", "virt", "-m", "64M", "-bios", "none", "-kernel", "prog.elf"].concat([
        "-display",
        "none",
        "-monitor",
        "none",
        "-serial",
        "stdio",
      ]),
      { cwd: dir, encoding: "latin1", timeout: 60_000, stdio: ["ignore", "pipe", "pipe"] },
    );
    assert.equal(qemu.status, 0, `QEMU did not power off cleanly:\n${qemu.stderr}`);
    const text = qemu.stdout.slice(qemu.stdout.indexOf("@\n") + 2);
    return text
      .split("\n")
      .filter((l) => l.length > 0)
      .map((l) => Number.parseInt(l, 16));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

const MIP_MSIP = 1 << 3;
const MIP_MTIP = 1 << 7;
const MIP_SEIP = 1 << 9;
const MIP_MEIP = 1 << 11;

function runOnOurs(): number[] {
  const clock = { nowMs: () => performance.now() };
  let mipBits = 0;
  const line = (bit: number) =>
    new CallbackIrqLine((high) => (mipBits = high ? mipBits | bit : mipBits & ~bit));
  const clint = new Clint(clock, [line(MIP_MSIP)], [line(MIP_MTIP)]);
  const plic = new Plic([line(MIP_MEIP), line(MIP_SEIP)]);
  const uart = new Uart16550({ write: () => {} }, plic.sourceLine(10));
  const rtc = new GoldfishRtc(clock, plic.sourceLine(11));
  const finisher = new SifiveTest(() => {});
  const map: Array<[number, number, MmioDevice]> = [
    [TEST, 0x1000, finisher],
    [RTC, 0x1000, rtc],
    [CLINT, 0x10000, clint],
    [PLIC, plic.size, plic],
    [UART, 0x100, uart],
  ];
  const find = (addr: number): [MmioDevice, number] => {
    for (const [base, size, dev] of map) if (addr >= base && addr < base + size) return [dev, addr - base];
    throw new Error(`nothing at ${addr.toString(16)}`);
  };
  const results: number[] = [];
  for (const op of OPS) {
    if (op.kind === "w") {
      const [dev, off] = find(op.addr);
      dev.write(off, op.width, op.value >>> 0);
    } else if (op.kind === "r") {
      const [dev, off] = find(op.addr);
      results.push(dev.read(off, op.width));
    } else if (op.kind === "mip") {
      clint.update();
      results.push(mipBits >>> 0);
    }
  }
  return results;
}

function available(tool: string): boolean {
  return spawnSync(tool, ["--version"], { stdio: "ignore" }).status === 0;
}

const missing = ["qemu-system-riscv64", "riscv64-linux-gnu-gcc"].filter((t) => !available(t));

test("UART, PLIC, CLINT and goldfish RTC read as QEMU 7.2's do for the same accesses", {
  skip: skipUnless(
    missing.length === 0,
    `needs ${missing.join(" and ")} (scripts/setup-host.sh installs them)`,
  ),
}, () => {
  const theirs = runOnQemu();
  const ours = runOnOurs();
  const reads = OPS.filter((op) => op.kind === "r" || op.kind === "mip");
  assert.equal(theirs.length, reads.length, "QEMU printed one value per read");
  const diffs: string[] = [];
  reads.forEach((op, i) => {
    const mask = op.kind === "r" ? op.mask : 0xffffffff;
    if (((theirs[i] ^ ours[i]) & mask) !== 0) {
      const what = op.kind === "r" ? `read ${op.addr.toString(16)}/${op.width}` : "mip";
      diffs.push(`#${i} ${what}: QEMU ${theirs[i].toString(16)}, ours ${ours[i].toString(16)}`);
    }
  });
  if (process.env.TSVM_DUMP)
    for (const [i, op] of reads.entries()) {
      const what = op.kind === "r" ? op.addr.toString(16) : "mip";
      process.stderr.write(`DUMP ${i} ${what} ${theirs[i].toString(16)} ${ours[i].toString(16)}\n`);
    }
  assert.deepEqual(diffs, []);
});
