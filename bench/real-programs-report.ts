// The real-programs bench's arithmetic and presentation, apart from the processes it drives: the programs
// and the commands that run them in the guest, their result line, the tsvm/QEMU ratios, the geometric
// mean, and the table it prints.

/** One program of the bench, as typed at the guest's shell prompt. */
export interface RealProgram {
  readonly name: string;
  /** What it exercises, for the table's readers and --help. */
  readonly what: string;
  /** The shell command; prints one `real-program: NAME …` line (bench/real-programs/real-program.h). */
  readonly command: (scale: number) => string;
  /** Run only when named with --only (its time is not a steady measure; docs/performance.md says why). */
  readonly optional?: true;
}

const own = (name: string, what: string): RealProgram => ({
  name,
  what,
  command: (scale) => `/bench/real/${name} ${scale}`,
});

/** timeit (bench/real-programs/timeit.c) runs a program the bench did not write and reports for it. */
const timed = (name: string, what: string, argv: (scale: number) => string): RealProgram => ({
  name,
  what,
  command: (scale) => `/bench/real/timeit ${name} ${argv(scale)}`,
});

/** Every program, in the order they run. The guest paths are those bench/real-programs/build.sh packs. */
export const REAL_PROGRAMS: readonly RealProgram[] = [
  own("crc32", "table-driven CRC-32: byte loads, table lookups"),
  own("mul-div", "64-bit multiply/xorshift hash, gcd, modexp (128-bit products), division"),
  own("recursion", "calls and returns: fib, Ackermann, a recursive-descent parser"),
  own("quicksort", "quicksort and libc qsort of random words, binary search: mispredicted branches"),
  own("memops", "libc memcpy/memmove/memset/memcmp, 1 B to 256 KiB, any alignment"),
  own("pointer-chase", "a shuffled linked list and a malloc'd binary search tree"),
  own("nbody", "n-body simulation in double: FP multiply/add/divide/sqrt"),
  own("matmul", "192x192 double matrix multiply and elimination"),
  timed(
    "speedtest1",
    "sqlite 3.40's speedtest1 (Debian's source), in-memory database",
    (scale) =>
      `-m Verification /bench/real/speedtest1 --size ${2 * scale} --memdb --verify /tmp/speedtest1.db`,
  ),
  timed("gzip", "busybox gzip -6 of 3 MiB of Linux's C source", () => "gzip -6 -c /bench/data/linux.txt"),
  timed("gunzip", "busybox gzip -d of the same, compressed", () => "gzip -d -c /bench/data/linux.txt.gz"),
  timed("sha256sum", "busybox sha256sum of the 3 MiB", () => "sha256sum /bench/data/linux.txt"),
  {
    ...timed(
      "esbuild",
      "esbuild 0.28's riscv64 binary (npm, Go) bundling and minifying tsvm's src/machine (600 KB of TypeScript)",
      () =>
        "/bench/real/esbuild /bench/project/src/machine/index.ts --bundle --format=esm --platform=neutral --minify --log-level=warning",
    ),
    // Go's runtime on one guest CPU: the same bundle took 8 to 70 s on tsvm and 19 to 50 s on QEMU from run
    // to run, with 240 to 370 M instructions.
    optional: true,
  },
];

export interface ResultLine {
  readonly name: string;
  /** 16 hex digits, lower case, without "0x". */
  readonly checksum: string;
  /** CLOCK_MONOTONIC nanoseconds over the workload, as the guest measured them. */
  readonly ns: number;
  /** rdinstret's difference over it: exact under tsvm, host ticks under QEMU without -icount. */
  readonly instret: number;
}

/** The first `real-program: NAME checksum=0x… ns=N instret=N` line for `name` in console output. */
export function parseResultLine(text: string, name: string): ResultLine | null {
  const re = /real-program: (\S+) checksum=0x([0-9a-f]{16}) ns=(\d+) instret=(\d+)/g;
  for (const m of text.matchAll(re))
    if (m[1] === name) return { name, checksum: m[2]!, ns: Number(m[3]), instret: Number(m[4]) };
  return null;
}

/** Whether the console shows the program's failure line (timeit: the command exited non-zero). */
export function parseFailureLine(text: string, name: string): string | null {
  const m = new RegExp(`real-program: ${name.replace(/[^\w-]/g, "")} failed[^\\n]*`).exec(text);
  return m ? m[0].trim() : null;
}

/** The geometric mean of the positive finite values; null when there are none. */
export function geometricMean(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x) && x > 0);
  if (v.length === 0) return null;
  return Math.exp(v.reduce((s, x) => s + Math.log(x), 0) / v.length);
}

export type RunStatus = "ok" | "timeout" | "error" | "skipped";

/** One peer's runs of one program. */
export interface PeerRuns {
  readonly status: RunStatus;
  readonly detail?: string;
  /** Seconds of each run, as the guest measured them. */
  readonly runs: number[];
  /** The median of runs. */
  readonly seconds: number | null;
  readonly checksum: string | null;
}

export interface ProgramResult {
  readonly name: string;
  readonly what: string;
  readonly command: string;
  /** tsvm's exact instruction count of the first run (QEMU runs the same program on the same input). */
  readonly instret: number | null;
  readonly tsvm: PeerRuns;
  readonly qemu: PeerRuns;
  /** tsvm's time over QEMU's: how many times longer tsvm took. */
  readonly timeRatio: number | null;
  /** QEMU's time over tsvm's: tsvm's speed as a fraction of QEMU's (the targets are in these). */
  readonly speed: number | null;
}

export interface RealProgramsReport {
  readonly date: string;
  readonly command: string;
  readonly host: {
    readonly cpu: string;
    readonly cores: number;
    readonly node: string;
    readonly loadAverageAtStart: number;
    readonly loadAverageAtEnd: number;
  };
  readonly versions: { readonly tsvm: string; readonly qemu: string };
  readonly guest: {
    readonly memoryMiB: number;
    /** vCPUs of each guest (tsvm's further harts on worker threads); absent in reports before --cpus. */
    readonly cpus?: number;
    readonly kernel: string;
    readonly initrd: string;
    readonly append: string;
    readonly scale: number;
    readonly repeat: number;
  };
  readonly programs: ProgramResult[];
  /** Geometric mean of `speed` over the programs both peers ran with agreeing checksums. */
  readonly geometricMeanSpeed: number | null;
  readonly geometricMeanTimeRatio: number | null;
  /** The lowest `speed` and its program. */
  readonly slowest: { readonly name: string; readonly speed: number } | null;
}

/** The ratios of one program, or nulls when either peer has no time or the checksums differ. */
export function programRatios(
  tsvm: PeerRuns,
  qemu: PeerRuns,
): { timeRatio: number | null; speed: number | null } {
  if (tsvm.status !== "ok" || qemu.status !== "ok" || !tsvm.seconds || !qemu.seconds)
    return { timeRatio: null, speed: null };
  return { timeRatio: tsvm.seconds / qemu.seconds, speed: qemu.seconds / tsvm.seconds };
}

/** Summary figures over all programs. */
export function summarize(
  programs: readonly ProgramResult[],
): Pick<RealProgramsReport, "geometricMeanSpeed" | "geometricMeanTimeRatio" | "slowest"> {
  let slowest: { name: string; speed: number } | null = null;
  for (const p of programs)
    if (p.speed !== null && (slowest === null || p.speed < slowest.speed))
      slowest = { name: p.name, speed: p.speed };
  return {
    geometricMeanSpeed: geometricMean(programs.map((p) => p.speed)),
    geometricMeanTimeRatio: geometricMean(programs.map((p) => p.timeRatio)),
    slowest,
  };
}

const fixed = (v: number | null, digits: number): string => (v === null ? "—" : v.toFixed(digits));

function cell(r: PeerRuns): string {
  return r.status === "ok" ? fixed(r.seconds, 3) : r.status;
}

/** The human-readable report: a header, one row per program, the geometric mean, and the failures. */
export function formatRealProgramsTable(r: RealProgramsReport): string {
  const lines = [
    `${r.date}  ${r.host.cpu}, ${r.host.cores} cores, load average ${r.host.loadAverageAtStart.toFixed(2)} at start, ${r.host.loadAverageAtEnd.toFixed(2)} at end`,
    `tsvm ${r.versions.tsvm} on Node ${r.host.node}; ${r.versions.qemu}`,
    `guest: ${r.guest.cpus ?? 1} vCPU(s), ${r.guest.memoryMiB} MiB; scale ${r.guest.scale}, ${r.guest.repeat} run(s) per program and peer (median)`,
    "",
  ];
  const head = [
    "program",
    "instr, M",
    "tsvm s",
    "qemu s",
    "tsvm MIPS",
    "qemu MIPS",
    "tsvm/qemu time",
    "speed",
  ];
  const rows = r.programs.map((p) => {
    const mips = (s: number | null) => (p.instret !== null && s ? fixed(p.instret / s / 1e6, 0) : "—");
    return [
      p.name,
      p.instret === null ? "—" : (p.instret / 1e6).toFixed(0),
      cell(p.tsvm),
      cell(p.qemu),
      mips(p.tsvm.status === "ok" ? p.tsvm.seconds : null),
      mips(p.qemu.status === "ok" ? p.qemu.seconds : null),
      fixed(p.timeRatio, 1),
      fixed(p.speed, 3),
    ];
  });
  rows.push([
    "geometric mean",
    "",
    "",
    "",
    "",
    "",
    fixed(r.geometricMeanTimeRatio, 1),
    fixed(r.geometricMeanSpeed, 3),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const fmt = (row: string[]) =>
    row.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  lines.push(fmt(head), widths.map((w) => "-".repeat(w)).join("  "));
  for (const row of rows.slice(0, -1)) lines.push(fmt(row));
  lines.push(widths.map((w) => "-".repeat(w)).join("  "), fmt(rows[rows.length - 1]!));
  if (r.slowest) lines.push("", `slowest: ${r.slowest.name} at ${r.slowest.speed.toFixed(3)}× QEMU's speed`);
  const problems = r.programs.flatMap((p) =>
    (["tsvm", "qemu"] as const)
      .filter((peer) => p[peer].detail)
      .map((peer) => `${p.name} (${peer}): ${p[peer].status}: ${p[peer].detail}`),
  );
  if (problems.length) lines.push("", ...problems);
  return `${lines.join("\n")}\n`;
}
