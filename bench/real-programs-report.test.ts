import assert from "node:assert/strict";
import { test } from "node:test";
import { insnClass } from "./real-programs-classes.ts";
import {
  formatRealProgramsTable,
  geometricMean,
  type PeerRuns,
  parseFailureLine,
  parseResultLine,
  programRatios,
  REAL_PROGRAMS,
  type RealProgramsReport,
  summarize,
} from "./real-programs-report.ts";

test("parseResultLine finds the named program's line among others", () => {
  const text =
    "~ # /bench/real/crc32 1\nreal-program: crc32 checksum=0x9c6010bfa0d43c2b ns=487964000 instret=280000000\n" +
    "real-program: gzip checksum=0x00000000000000ff ns=12 instret=34\n~ # ";
  assert.deepEqual(parseResultLine(text, "gzip"), {
    name: "gzip",
    checksum: "00000000000000ff",
    ns: 12,
    instret: 34,
  });
  assert.equal(parseResultLine(text, "crc32")?.ns, 487964000);
  assert.equal(parseResultLine(text, "nbody"), null);
  assert.equal(
    parseResultLine("real-program: crc32 checksum=0x12 ns=1 instret=1", "crc32"),
    null,
    "short checksum",
  );
  assert.match(
    parseFailureLine("real-program: gzip failed (status 0x100)\n", "gzip") ?? "",
    /failed \(status 0x100\)/,
  );
  assert.equal(parseFailureLine("real-program: gzip failed\n", "gunzip"), null);
});

test("geometric mean, ratios and the slowest program", () => {
  assert.equal(geometricMean([]), null);
  assert.ok(Math.abs(geometricMean([0.5, 2, null])! - 1) < 1e-12);
  const ok = (seconds: number): PeerRuns => ({ status: "ok", runs: [seconds], seconds, checksum: "a" });
  assert.deepEqual(programRatios(ok(10), ok(2)), { timeRatio: 5, speed: 0.2 });
  assert.deepEqual(programRatios({ ...ok(1), status: "timeout", seconds: null }, ok(2)), {
    timeRatio: null,
    speed: null,
  });
  const s = summarize([
    { name: "a", what: "", command: "", instret: 1, tsvm: ok(10), qemu: ok(1), timeRatio: 10, speed: 0.1 },
    { name: "b", what: "", command: "", instret: 1, tsvm: ok(4), qemu: ok(1.6), timeRatio: 2.5, speed: 0.4 },
  ]);
  assert.ok(Math.abs(s.geometricMeanSpeed! - 0.2) < 1e-12);
  assert.deepEqual(s.slowest, { name: "a", speed: 0.1 });
});

test("the table shows every program, the geometric mean and each failure", () => {
  const ok = (seconds: number): PeerRuns => ({ status: "ok", runs: [seconds], seconds, checksum: "a" });
  const programs = [
    {
      name: "crc32",
      what: "",
      command: "",
      instret: 280e6,
      tsvm: ok(2),
      qemu: ok(0.5),
      timeRatio: 4,
      speed: 0.25,
    },
    {
      name: "gzip",
      what: "",
      command: "",
      instret: null,
      tsvm: {
        status: "timeout" as const,
        detail: "no result within 600 s",
        runs: [],
        seconds: null,
        checksum: null,
      },
      qemu: ok(1),
      timeRatio: null,
      speed: null,
    },
  ];
  const report: RealProgramsReport = {
    date: "2026-12-07T00:00:00.000Z",
    command: "x",
    host: { cpu: "cpu", cores: 2, node: "v20", loadAverageAtStart: 1, loadAverageAtEnd: 2 },
    versions: { tsvm: "0.1.0", qemu: "QEMU 7.2" },
    guest: { memoryMiB: 256, kernel: "k", initrd: "i", append: "", scale: 1, repeat: 1 },
    programs,
    ...summarize(programs),
  };
  const out = formatRealProgramsTable(report);
  assert.match(out, /^crc32 +280 +2\.000 +0\.500 +140 +560 +4\.0 +0\.250$/m);
  assert.match(out, /^gzip .*timeout/m);
  assert.match(out, /^geometric mean +4\.0 +0\.250$/m);
  assert.match(out, /gzip \(tsvm\): timeout: no result within 600 s/);
});

test("every program's command is a guest path the build packs, with the scale where it takes one", () => {
  for (const p of REAL_PROGRAMS) assert.match(p.command(3), /^\/bench\/real\/\S+ /, p.name);
  assert.equal(REAL_PROGRAMS.find((p) => p.name === "crc32")?.command(3), "/bench/real/crc32 3");
  assert.equal(new Set(REAL_PROGRAMS.map((p) => p.name)).size, REAL_PROGRAMS.length, "names are unique");
});

test("insnClass sorts RV64GC encodings, compressed and not", () => {
  const cases: [number, string][] = [
    [0x0005b503, "load"], // ld a0, 0(a1)
    [0x00b53023, "store"], // sd a1, 0(a0)
    [0x02b50533, "mul"], // mul a0, a0, a1
    [0x02b55533, "div/rem"], // divu a0, a0, a1
    [0x00b50533, "alu"], // add a0, a0, a1
    [0x00b50463, "branch"], // beq a0, a1, +8
    [0x000000ef, "call"], // jal ra, 0
    [0x0000006f, "jal (direct jump)"], // j 0
    [0x00008067, "return"], // ret
    [0x00050067, "jalr (indirect jump)"], // jr a0
    [0x1ab57553, "fp div/sqrt"], // fdiv.d fa0, fa0, fa1
    [0x02b57553, "fp arith"], // fadd.d fa0, fa0, fa1
    [0x5ab57543, "fp arith"], // fmadd.d
    [0xc0202573, "csr/system/fence"], // rdinstret a0
    [0x100525af, "atomic (lr/sc/amo)"], // lr.w a1, (a0)
    [0x8082, "return"], // c.jr ra
    [0x9502, "call"], // c.jalr a0
    [0x852e, "alu"], // c.mv a0, a1
    [0x4188, "load"], // c.lw a0, 0(a1)
    [0xc101, "branch"], // c.beqz a0
    [0xa001, "jal (direct jump)"], // c.j
  ];
  for (const [insn, cls] of cases) assert.equal(insnClass(insn), cls, insn.toString(16));
});
