// The benchmark's arithmetic and presentation, apart from the processes it times: recognising the shell
// prompt and the guest-mips result line, medians, MIPS, ratios, and the table and JSON it prints.

/** The shell prompt of the default guest ("~ # "), and any sh prompt: the last bytes are "# " or "$ ". */
const PROMPT_TAIL = /[#$] $/;

/** Watches a console byte stream and says, once, when a shell prompt has just been printed. */
export class PromptWatcher {
  private tail = "";
  private seen = false;
  private readonly decoder = new TextDecoder();

  /** Feeds console output; true only for the chunk that ends with the first prompt. */
  feed(bytes: Uint8Array): boolean {
    if (this.seen) return false;
    this.tail = (this.tail + this.decoder.decode(bytes, { stream: true })).replace(/\r/g, "").slice(-200);
    if (PROMPT_TAIL.test(this.tail)) this.seen = true;
    return this.seen;
  }

  get promptSeen(): boolean {
    return this.seen;
  }
}

export interface GuestMipsLine {
  /** minstret delta around the workload loop, as the guest read it. */
  readonly instret: number;
  readonly cycles: number;
  /** 16 hex digits, lower case, without "0x". */
  readonly checksum: string;
}

/** Finds `guest-mips: instret=N cycles=N checksum=0x…` (bench/guest-mips/README.md) in console output. */
export function parseGuestMipsLine(text: string): GuestMipsLine | null {
  const m = /guest-mips: instret=(\d+) cycles=(\d+) checksum=0x([0-9a-f]{16})/.exec(text);
  if (!m) return null;
  return { instret: Number(m[1]), cycles: Number(m[2]), checksum: m[3]! };
}

export interface LinuxMipsLine {
  readonly iterations: number;
  /** rdinstret delta around the workload: exact under tsvm, host ticks under QEMU without -icount. */
  readonly instret: number;
  /** CLOCK_MONOTONIC nanoseconds around the workload, as the guest saw them. */
  readonly ns: number;
  readonly checksum: string;
}

/** Finds `linux-mips: iterations=N instret=N ns=N checksum=0x…` (bench/linux-mips) in console output. */
export function parseLinuxMipsLine(text: string): LinuxMipsLine | null {
  const m = /linux-mips: iterations=(\d+) instret=(\d+) ns=(\d+) checksum=0x([0-9a-f]{16})/.exec(text);
  if (!m) return null;
  return { iterations: Number(m[1]), instret: Number(m[2]), ns: Number(m[3]), checksum: m[4]! };
}

/** The median of the finite values; null when there are none. */
export function median(values: readonly (number | null)[]): number | null {
  const v = values.filter((x): x is number => x !== null && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return null;
  const mid = v.length >> 1;
  return v.length % 2 ? v[mid]! : (v[mid - 1]! + v[mid]!) / 2;
}

/**
 * Guest MIPS of the workload loop alone: the difference of two runs of the same program with many and with
 * one iteration, so process start-up, machine creation and the final report cancel out. Null when the
 * difference is not positive (a run too short to measure against the noise).
 */
export function loopMips(
  instretLong: number,
  secondsLong: number,
  instretShort: number,
  secondsShort: number,
): number | null {
  const instr = instretLong - instretShort;
  const seconds = secondsLong - secondsShort;
  if (!(instr > 0) || !(seconds > 0)) return null;
  return instr / seconds / 1e6;
}

/** a / b, or null when either is missing or b is zero. */
export function ratio(a: number | null, b: number | null): number | null {
  if (a === null || b === null || b === 0) return null;
  return a / b;
}

/** What one peer (tsvm or QEMU) measured. Times in seconds, memory in MiB; null = not measured. */
export interface PeerResult {
  readonly peer: "tsvm" | "qemu";
  readonly version: string;
  readonly boot: {
    /** "timeout" and "error" leave seconds null. */
    readonly status: "ok" | "timeout" | "error" | "skipped";
    readonly detail?: string;
    /** Median over the runs, from process start to the first shell prompt on the console. */
    readonly seconds: number | null;
    readonly runs: readonly (number | null)[];
    /** Instructions retired up to the prompt (tsvm only: its instret is exact). */
    readonly instret: number | null;
    readonly peakRssMiB: number | null;
  };
  readonly mips: {
    readonly status: "ok" | "timeout" | "error" | "skipped";
    readonly detail?: string;
    /** Loop-only MIPS (see loopMips). */
    readonly mips: number | null;
    /** The long run's instret / its whole process wall time (start-up included). */
    readonly wholeRunMips: number | null;
    readonly instretLong: number | null;
    readonly instretShort: number | null;
    readonly secondsLong: readonly (number | null)[];
    readonly secondsShort: readonly (number | null)[];
    readonly checksum: string | null;
    readonly peakRssMiB: number | null;
  };
  /** The same kind of workload as a Linux user program, run at the shell prompt of the boot run. */
  readonly linux: {
    readonly status: "ok" | "timeout" | "error" | "skipped";
    readonly detail?: string;
    /** Guest clock (CLOCK_MONOTONIC) around the workload. */
    readonly seconds: number | null;
    /** Instructions the workload retired: tsvm's exact count, for QEMU too (its user-mode reads are unusable). */
    readonly instret: number | null;
    readonly mips: number | null;
    readonly checksum: string | null;
  };
}

export interface BenchReport {
  readonly date: string;
  readonly command: string;
  readonly host: {
    readonly cpu: string;
    readonly cores: number;
    readonly node: string;
    readonly loadAverageAtStart: number;
  };
  readonly guest: {
    readonly memoryMiB: number;
    readonly harts: number;
    readonly kernel: string | null;
    readonly initrd: string | null;
    readonly firmware: string | null;
    readonly append: string;
    readonly mipsProgram: string;
    readonly iterations: number;
    /** The long run's instruction count under `qemu-system-riscv64 -icount shift=0`. */
    readonly qemuIcountInstret: number | null;
    /** True when tsvm's exact instret equals QEMU's icount instret for the same program. */
    readonly instretConfirmed: boolean | null;
    /** Iterations of bench/linux-mips run at the shell prompt. */
    readonly linuxIterations: number;
  };
  readonly tsvm: PeerResult;
  readonly qemu: PeerResult;
  readonly ratios: {
    /** tsvm boot seconds / QEMU boot seconds (issue target: at most 3). */
    readonly bootTime: number | null;
    /** tsvm MIPS / QEMU MIPS (issue target: at least 0.08). */
    readonly mips: number | null;
    readonly bootPeakRss: number | null;
    readonly mipsPeakRss: number | null;
    /** tsvm / QEMU MIPS of the Linux user program. */
    readonly linuxMips: number | null;
  };
}

export function computeRatios(tsvm: PeerResult, qemu: PeerResult): BenchReport["ratios"] {
  return {
    bootTime: ratio(tsvm.boot.seconds, qemu.boot.seconds),
    mips: ratio(tsvm.mips.mips, qemu.mips.mips),
    bootPeakRss: ratio(tsvm.boot.peakRssMiB, qemu.boot.peakRssMiB),
    mipsPeakRss: ratio(tsvm.mips.peakRssMiB, qemu.mips.peakRssMiB),
    linuxMips: ratio(tsvm.linux.mips, qemu.linux.mips),
  };
}

function fmt(value: number | null, digits: number, missing = "—"): string {
  if (value === null) return missing;
  return value.toFixed(digits);
}

function statusOr(status: string, value: string): string {
  return status === "ok" ? value : status;
}

/** The human-readable table: one row per measure, tsvm and QEMU side by side, and their ratio. */
export function formatTable(r: BenchReport): string {
  const t = r.tsvm;
  const q = r.qemu;
  const rows: string[][] = [
    ["measure", "tsvm", "qemu (TCG)", "tsvm/qemu", "target"],
    [
      "boot to shell, s",
      statusOr(t.boot.status, fmt(t.boot.seconds, 2)),
      statusOr(q.boot.status, fmt(q.boot.seconds, 2)),
      fmt(r.ratios.bootTime, 2),
      "<= 3",
    ],
    ["boot instructions, M", fmt(t.boot.instret === null ? null : t.boot.instret / 1e6, 1), "—", "", ""],
    [
      "guest MIPS (loop)",
      statusOr(t.mips.status, fmt(t.mips.mips, 1)),
      statusOr(q.mips.status, fmt(q.mips.mips, 1)),
      fmt(r.ratios.mips, 3),
      ">= 0.08",
    ],
    [
      "guest MIPS (whole run)",
      statusOr(t.mips.status, fmt(t.mips.wholeRunMips, 1)),
      statusOr(q.mips.status, fmt(q.mips.wholeRunMips, 1)),
      fmt(ratio(t.mips.wholeRunMips, q.mips.wholeRunMips), 3),
      "",
    ],
    [
      "guest MIPS in Linux (user)",
      statusOr(t.linux.status, fmt(t.linux.mips, 1)),
      statusOr(q.linux.status, fmt(q.linux.mips, 1)),
      fmt(r.ratios.linuxMips, 3),
      "",
    ],
    [
      "peak RSS at boot, MiB",
      fmt(t.boot.peakRssMiB, 0),
      fmt(q.boot.peakRssMiB, 0),
      fmt(r.ratios.bootPeakRss, 2),
      "",
    ],
    [
      "peak RSS guest-mips, MiB",
      fmt(t.mips.peakRssMiB, 0),
      fmt(q.mips.peakRssMiB, 0),
      fmt(r.ratios.mipsPeakRss, 2),
      "",
    ],
  ];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((row) => row[c]!.length)));
  const lines = rows.map((row) =>
    row.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  "),
  );
  lines.splice(1, 0, widths.map((w) => "-".repeat(w)).join("  "));
  const g = r.guest;
  const confirmed =
    g.instretConfirmed === null
      ? "not checked"
      : g.instretConfirmed
        ? "tsvm's instret equals QEMU -icount shift=0"
        : "MISMATCH between tsvm and QEMU -icount";
  const notes = [
    `${r.date}  ${r.host.cpu}, ${r.host.cores} cores, load average ${r.host.loadAverageAtStart.toFixed(2)} at start`,
    `tsvm ${t.version} on Node ${r.host.node}; ${q.version}`,
    `guest: 1 hart, ${g.memoryMiB} MiB; append "${g.append}"`,
  ];
  if (t.mips.status !== "skipped" || q.mips.status !== "skipped")
    notes.push(
      `guest-mips: ${g.iterations} iterations, ${fmt(g.qemuIcountInstret, 0, "?")} instructions (${confirmed})`,
    );
  if (t.linux.status !== "skipped" || q.linux.status !== "skipped")
    notes.push(
      `linux-mips at the prompt: ${g.linuxIterations} iterations, ${fmt(t.linux.instret, 0, "?")} instructions (tsvm's count, used for both)`,
    );
  // A part left out with --only needs no note: the table says "skipped".
  const note = (what: string, detail: string | undefined): void => {
    if (detail && !detail.startsWith("--only")) notes.push(`${what}: ${detail}`);
  };
  for (const p of [t, q]) {
    note(`${p.peer} boot`, p.boot.detail);
    note(`${p.peer} guest-mips`, p.mips.detail);
    note(`${p.peer} linux-mips`, p.linux.detail);
  }
  return `${notes.join("\n")}\n\n${lines.join("\n")}\n`;
}
