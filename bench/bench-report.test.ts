import assert from "node:assert/strict";
import { test } from "node:test";
import {
  type BenchReport,
  computeRatios,
  formatTable,
  loopMips,
  median,
  type PeerResult,
  PromptWatcher,
  parseGuestMipsLine,
  parseLinuxMipsLine,
} from "./bench-report.ts";

const enc = new TextEncoder();

test("PromptWatcher fires once, on the chunk that ends with the prompt, even when split", () => {
  const w = new PromptWatcher();
  assert.equal(w.feed(enc.encode("[    1.0] Run /init as init process\r\n")), false);
  assert.equal(w.feed(enc.encode("~ ")), false);
  assert.equal(w.feed(enc.encode("#")), false);
  assert.equal(w.feed(enc.encode(" ")), true);
  assert.equal(w.promptSeen, true);
  assert.equal(w.feed(enc.encode("~ # ")), false, "only the first prompt counts");
});

test("PromptWatcher ignores a '#' that is not at the end of the output", () => {
  const w = new PromptWatcher();
  assert.equal(w.feed(enc.encode("# comment in a log line\n")), false);
  assert.equal(w.feed(enc.encode("$ \nmore")), false);
  assert.equal(w.promptSeen, false);
});

test("parseGuestMipsLine reads the README's line and rejects a truncated one", () => {
  const line = parseGuestMipsLine(
    "noise\nguest-mips: instret=66483639 cycles=66483637 checksum=0x19c15359428f1b57\n",
  );
  assert.deepEqual(line, { instret: 66483639, cycles: 66483637, checksum: "19c15359428f1b57" });
  assert.equal(parseGuestMipsLine("guest-mips: instret=66483639 cycles=1 checksum=0x19c1"), null);
});

test("parseLinuxMipsLine reads the program's line, not the echoed command", () => {
  const text =
    "~ # /bench/linux-mips 300; poweroff -f\r\n" +
    "linux-mips: iterations=300 instret=133000000 ns=4500000000 checksum=0x00000000deadbeef\r\n";
  assert.deepEqual(parseLinuxMipsLine(text), {
    iterations: 300,
    instret: 133000000,
    ns: 4500000000,
    checksum: "00000000deadbeef",
  });
  assert.equal(parseLinuxMipsLine("~ # /bench/linux-mips 300; poweroff -f\r\n"), null);
});

test("median ignores missing values and averages the middle pair", () => {
  assert.equal(median([3, 1, 2]), 2);
  assert.equal(median([4, null, 1, 3, 2]), 2.5);
  assert.equal(median([null]), null);
});

test("loopMips subtracts the short run, and refuses a difference that is not positive", () => {
  // 100 M more instructions in 2 s more: 50 MIPS, whatever the start-up cost.
  assert.equal(loopMips(101_000_000, 5, 1_000_000, 3), 50);
  assert.equal(loopMips(101_000_000, 3, 1_000_000, 3.1), null);
});

function peer(name: "tsvm" | "qemu", bootSeconds: number | null, mips: number | null): PeerResult {
  return {
    peer: name,
    version: "v",
    boot: {
      status: bootSeconds === null ? "timeout" : "ok",
      seconds: bootSeconds,
      runs: [bootSeconds],
      instret: null,
      peakRssMiB: 100,
    },
    mips: {
      status: "ok",
      mips,
      wholeRunMips: mips,
      instretLong: 1,
      instretShort: 0,
      secondsLong: [1],
      secondsShort: [0],
      checksum: "0",
      peakRssMiB: 50,
    },
    linux: { status: "skipped", seconds: null, instret: null, mips: null, checksum: null },
  };
}

test("ratios are tsvm over QEMU, and a timed-out boot has no ratio and prints 'timeout'", () => {
  const tsvm = peer("tsvm", null, 100);
  const qemu = peer("qemu", 1.5, 1000);
  const ratios = computeRatios(tsvm, qemu);
  assert.equal(ratios.mips, 0.1);
  assert.equal(ratios.bootTime, null);
  assert.equal(computeRatios(peer("tsvm", 3, 1), qemu).bootTime, 2);
  const report: BenchReport = {
    date: "d",
    command: "c",
    host: { cpu: "cpu", cores: 2, node: "v20", loadAverageAtStart: 0.5 },
    guest: {
      memoryMiB: 256,
      harts: 1,
      kernel: null,
      initrd: null,
      firmware: null,
      append: "console=ttyS0",
      mipsProgram: "p",
      iterations: 10,
      qemuIcountInstret: 1,
      instretConfirmed: true,
      linuxIterations: 300,
    },
    tsvm,
    qemu,
    ratios,
  };
  const table = formatTable(report);
  assert.match(table, /boot to shell, s\s+timeout\s+1\.50\s+—/);
  assert.match(table, /guest MIPS \(loop\)\s+100\.0\s+1000\.0\s+0\.100/);
});
