// The benchmark (`npm run bench`): tsvm beside qemu-system-riscv64 (TCG) on the same kernel, initramfs,
// firmware and bare-metal program, in one invocation — boot-to-shell seconds, guest MIPS and peak RSS,
// with the ratios the issue sets targets for. Progress goes to stderr, the table (or JSON) to stdout.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { bundledEntry, ensureBundle } from "../scripts/bundle.ts";
import { findImage } from "../src/images/image-store.ts";
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
import { peerVersions, QEMU } from "./peer-versions.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const TIME = "/usr/bin/time";
/** How long a guest may take to power off once the prompt was seen, before it is killed. */
const POWEROFF_GRACE_MS = 120_000;

const HELP = `Usage: npm run -s bench -- [options]

Runs tsvm and qemu-system-riscv64 (TCG) side by side on the same guest files and prints boot-to-shell
time, guest MIPS, peak RSS and the tsvm/qemu ratios.

Options:
  --format table|json   output (default table)
  --only boot|mips      run one half only
  --iterations N        guest-mips iterations of the long run (default 1000, about 443 M instructions)
  --runs N              guest-mips runs per peer and length; the median is used (default 3)
  --boot-runs N         boot runs per peer; the median is used (default 1)
  --linux-iterations N  iterations of bench/linux-mips run at the first prompt (default 300)
  --timeout S           bound on every single run, in seconds (default 300); a run past it is "timeout"
  --memory MIB          guest RAM (default 256)
  --kernel F --initrd F --firmware F
                        boot files (default: the cached default image, see bin/tsvm image list)
  --append S            kernel command line (default "console=ttyS0 earlycon=sbi", as tsvm run)
  -h, --help            this help
`;

interface Options {
  format: "table" | "json";
  only: "boot" | "mips" | null;
  iterations: number;
  runs: number;
  bootRuns: number;
  linuxIterations: number;
  timeoutMs: number;
  memoryMiB: number;
  kernel: string | null;
  initrd: string | null;
  firmware: string | null;
  append: string;
}

function fail(message: string): never {
  process.stderr.write(`bench: ${message}\n`);
  process.exit(2);
}

function positiveInt(text: string | undefined, fallback: number, option: string): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) fail(`${option} '${text}' must be a whole number above 0`);
  return Number(text);
}

function parseOptions(argv: string[]): Options {
  let values: ReturnType<typeof parse>["values"];
  try {
    values = parse(argv).values;
  } catch (e) {
    fail((e as Error).message);
  }
  if (values.help) {
    process.stdout.write(HELP);
    process.exit(0);
  }
  const format = values.format ?? "table";
  if (format !== "table" && format !== "json") fail(`--format '${format}' must be table or json`);
  const only = values.only ?? null;
  if (only !== null && only !== "boot" && only !== "mips") fail(`--only '${only}' must be boot or mips`);
  const image = values.kernel ? undefined : findImage("default");
  return {
    format,
    only,
    iterations: positiveInt(values.iterations, 1000, "--iterations"),
    runs: positiveInt(values.runs, 3, "--runs"),
    bootRuns: positiveInt(values["boot-runs"], 1, "--boot-runs"),
    linuxIterations: positiveInt(values["linux-iterations"], 300, "--linux-iterations"),
    timeoutMs: positiveInt(values.timeout, 300, "--timeout") * 1000,
    memoryMiB: positiveInt(values.memory, 256, "--memory"),
    kernel: values.kernel ?? image?.kernel ?? null,
    initrd: values.initrd ?? (values.kernel ? null : (image?.initrd ?? null)),
    firmware:
      values.firmware ?? image?.firmware ?? "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin",
    append: values.append ?? "console=ttyS0 earlycon=sbi",
  };
}

function parse(argv: string[]) {
  return parseArgs({
    args: argv,
    strict: true,
    options: {
      format: { type: "string" },
      only: { type: "string" },
      iterations: { type: "string" },
      runs: { type: "string" },
      "boot-runs": { type: "string" },
      "linux-iterations": { type: "string" },
      timeout: { type: "string" },
      memory: { type: "string" },
      kernel: { type: "string" },
      initrd: { type: "string" },
      firmware: { type: "string" },
      append: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

function progress(line: string): void {
  process.stderr.write(`bench: ${line}\n`);
}

/** One timed process: wall time to exit and (optionally) to the first shell prompt, and its peak RSS. */
interface TimedRun {
  readonly timedOut: boolean;
  /** Exit code, or null when a signal ended it. */
  readonly exitCode: number | null;
  /** Seconds from spawn to exit. */
  readonly seconds: number;
  /** Seconds from spawn to the first prompt, or null when none was seen. */
  readonly promptSeconds: number | null;
  readonly stdout: string;
  readonly stderr: string;
  /** Peak resident set (VmHWM) from GNU time's %M, or null when the process was killed. */
  readonly peakRssMiB: number | null;
}

let scratch = "";
let runNumber = 0;
const live = new Set<ChildProcessWithoutNullStreams>();

function killGroup(child: ChildProcessWithoutNullStreams): void {
  // The child leads its own process group (detached), so this reaches GNU time and the emulator it runs.
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, "SIGKILL");
    } catch {
      // Already gone.
    }
  }
}

/**
 * Runs `argv` under GNU time (for the peak RSS), bounded by `timeoutMs`. With `atPrompt`, the console is
 * watched for a shell prompt; `atPrompt` is typed in then (e.g. "poweroff -f"), and the process gets
 * POWEROFF_GRACE_MS more to exit before it is killed.
 */
function timedRun(argv: string[], timeoutMs: number, atPrompt: string | null): Promise<TimedRun> {
  const rssFile = join(scratch, `rss-${++runNumber}`);
  return new Promise((resolve) => {
    const start = performance.now();
    const child = spawn(TIME, ["-f", "%M", "-o", rssFile, ...argv], {
      detached: true,
      stdio: ["pipe", "pipe", "pipe"],
    });
    live.add(child);
    const watcher = new PromptWatcher();
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let promptSeconds: number | null = null;
    let timedOut = false;
    let timer = setTimeout(() => {
      timedOut = true;
      killGroup(child);
    }, timeoutMs);
    if (atPrompt === null) child.stdin.end();
    child.stdin.on("error", () => {});
    child.stdout.on("data", (chunk: Buffer) => {
      out.push(chunk);
      if (atPrompt !== null && watcher.feed(chunk)) {
        promptSeconds = (performance.now() - start) / 1000;
        child.stdin.end(`${atPrompt}\n`);
        clearTimeout(timer);
        timer = setTimeout(() => killGroup(child), POWEROFF_GRACE_MS);
      }
    });
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk));
    // Not started at all (e.g. the program is missing): report it as a failed run, never hang.
    child.on("error", (e) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({
        timedOut: false,
        exitCode: null,
        seconds: (performance.now() - start) / 1000,
        promptSeconds: null,
        stdout: "",
        stderr: e.message,
        peakRssMiB: null,
      });
    });
    child.on("close", (code) => {
      const seconds = (performance.now() - start) / 1000;
      clearTimeout(timer);
      live.delete(child);
      let peakRssMiB: number | null = null;
      try {
        // GNU time writes "Command exited with non-zero status N" before the value when the command fails.
        const lines = readFileSync(rssFile, "utf8").trim().split("\n");
        const kib = Number(lines[lines.length - 1]);
        if (Number.isFinite(kib) && kib > 0) peakRssMiB = kib / 1024;
      } catch {
        // Killed together with GNU time: no figure.
      }
      resolve({
        timedOut,
        exitCode: code,
        seconds,
        promptSeconds,
        stdout: Buffer.concat(out).toString("latin1"),
        stderr: Buffer.concat(err).toString("utf8"),
        peakRssMiB,
      });
    });
  });
}

const tsxLoader = pathToFileURL(join(root, "node_modules/tsx/dist/loader.mjs")).href;

interface BootFiles {
  kernel: string;
  initrd: string | null;
  firmware: string | null;
  append: string;
  memoryMiB: number;
}

/**
 * node's arguments and tsvm-peer's file: from the start-up bundle (scripts/bundle.ts) as bin/tsvm runs,
 * once main has made sure it is up to date; through tsx when it cannot be built or TSVM_NO_BUNDLE is set.
 */
let tsvmPeerArgs = ["--import", tsxLoader, join(here, "tsvm-peer.ts")];

function tsvmArgv(f: BootFiles): string[] {
  const argv = [process.execPath, ...tsvmPeerArgs, "--kernel", f.kernel];
  if (f.initrd) argv.push("--initrd", f.initrd);
  argv.push("--bios", f.firmware ?? "none", "--append", f.append, "--memory", String(f.memoryMiB * 2 ** 20));
  return argv;
}

function qemuArgv(f: BootFiles, extra: string[] = []): string[] {
  const argv = [QEMU, "-M", "virt", "-smp", "1", "-m", `${f.memoryMiB}M`, "-nographic"];
  argv.push("-bios", f.firmware ?? "none", "-kernel", f.kernel);
  if (f.initrd) argv.push("-initrd", f.initrd);
  if (f.append) argv.push("-append", f.append);
  return [...argv, ...extra];
}

function peerArgv(peer: "tsvm" | "qemu", f: BootFiles): string[] {
  return peer === "tsvm" ? tsvmArgv(f) : qemuArgv(f);
}

/** The JSON object after `tag` on tsvm-peer's stderr. */
function peerReport(stderr: string, tag: string): { instret: number } | null {
  const m = new RegExp(`^${tag} (.*)$`, "m").exec(stderr);
  return m ? (JSON.parse(m[1]!) as { instret: number }) : null;
}

function lastLines(text: string, n: number): string {
  return text.replace(/\r/g, "").trimEnd().split("\n").slice(-n).join(" | ");
}

type BootResult = PeerResult["boot"];
type LinuxResult = PeerResult["linux"];

/** The boot files, and what to type at the prompt (bench/linux-mips, then poweroff). */
interface BootPlan {
  files: BootFiles | null;
  /** Why there is no boot (no image), when files is null. */
  why: string;
  /** Typed at the first prompt; ends with a poweroff so the peer exits and GNU time reports its RSS. */
  atPrompt: string;
  /** Whether `atPrompt` runs bench/linux-mips. */
  linuxMips: boolean;
}

function skippedLinux(detail: string): LinuxResult {
  return { status: "skipped", detail, seconds: null, instret: null, mips: null, checksum: null };
}

/** What one peer's boot runs gave so far. */
interface BootRuns {
  runs: (number | null)[];
  rss: (number | null)[];
  instrets: (number | null)[];
  status: BootResult["status"];
  detail: string | undefined;
  linux: LinuxResult;
}

/**
 * Boots each peer `bootRuns` times to the first shell prompt (the time from spawn to the prompt), typing
 * `plan.atPrompt` there; the first run's linux-mips line gives the in-Linux figure. The peers take turns
 * (QEMU, tsvm, QEMU, tsvm, …) so that both see the same stretches of the host's speed: on this shared VM a
 * fixed loop runs a third slower for seconds at a time, and back-to-back blocks of runs could put one peer
 * in a slow stretch and the other in a fast one.
 */
async function benchBoots(
  o: Options,
  plan: BootPlan,
): Promise<Record<"tsvm" | "qemu", { boot: BootResult; linux: LinuxResult }>> {
  const skippedBoot = (detail: string): BootResult => ({
    status: "skipped",
    detail,
    seconds: null,
    runs: [],
    instret: null,
    peakRssMiB: null,
  });
  const skippedBoth = (detail: string) => ({
    qemu: { boot: skippedBoot(detail), linux: skippedLinux(detail) },
    tsvm: { boot: skippedBoot(detail), linux: skippedLinux(detail) },
  });
  if (o.only === "mips") return skippedBoth("--only mips");
  if (!plan.files) return skippedBoth(plan.why);
  const files = plan.files;
  const peers = ["qemu", "tsvm"] as const;
  const fresh = (): BootRuns => ({
    runs: [],
    rss: [],
    instrets: [],
    status: "ok",
    detail: undefined,
    linux: skippedLinux(plan.linuxMips ? "no boot reached the prompt" : plan.why),
  });
  const acc = { qemu: fresh(), tsvm: fresh() };
  for (let i = 0; i < o.bootRuns; i++) {
    for (const peer of peers) {
      const a = acc[peer];
      // A peer that failed once is not booted again; the other goes on.
      if (a.status !== "ok") continue;
      progress(`${peer} boot to shell, run ${i + 1}/${o.bootRuns} (bounded at ${o.timeoutMs / 1000} s)`);
      const r = await timedRun(peerArgv(peer, files), o.timeoutMs, plan.atPrompt);
      a.runs.push(r.promptSeconds);
      a.rss.push(r.peakRssMiB);
      a.instrets.push(peer === "tsvm" ? (peerReport(r.stderr, "tsvm-peer-prompt")?.instret ?? null) : null);
      if (r.promptSeconds === null) {
        a.status = r.timedOut ? "timeout" : "error";
        a.detail = `no shell prompt (${r.timedOut ? "timed out" : `exit ${r.exitCode}`}); console ended: ${lastLines(r.stdout, 3)}`;
        if (r.stderr.trim()) a.detail += `; stderr: ${lastLines(r.stderr, 2)}`;
        continue;
      }
      progress(
        `${peer}: prompt after ${r.promptSeconds.toFixed(2)} s, peak RSS ${r.peakRssMiB?.toFixed(0)} MiB`,
      );
      if (plan.linuxMips && i === 0) a.linux = linuxResult(peer, r);
    }
  }
  const result = (peer: "tsvm" | "qemu") => {
    const a = acc[peer];
    return {
      boot: {
        status: a.status,
        detail: a.detail,
        seconds: a.status === "ok" ? median(a.runs) : null,
        runs: a.runs,
        instret: median(a.instrets),
        peakRssMiB: median(a.rss),
      },
      linux: a.linux,
    };
  };
  return { qemu: result("qemu"), tsvm: result("tsvm") };
}

/**
 * The linux-mips figure from a boot run's console. QEMU's count is filled in later from tsvm's: QEMU's
 * user-mode instret follows the host's cycle counter without -icount, and under -icount shift=0 7.2 gave a
 * negative difference, so its own reads are no use.
 */
function linuxResult(peer: "tsvm" | "qemu", r: TimedRun): LinuxResult {
  const line = parseLinuxMipsLine(r.stdout);
  if (!line) {
    const why = r.timedOut ? "timed out" : `no result line; console ended: ${lastLines(r.stdout, 3)}`;
    return { ...skippedLinux(why), status: r.timedOut ? "timeout" : "error" };
  }
  const seconds = line.ns / 1e9;
  const instret = peer === "tsvm" ? line.instret : null;
  return {
    status: "ok",
    seconds,
    instret,
    mips: instret !== null && seconds > 0 ? instret / seconds / 1e6 : null,
    checksum: line.checksum,
  };
}

/**
 * The boot files: the image's kernel and firmware, and its initramfs with bench/linux-mips's small cpio in
 * front (Linux unpacks concatenated archives; both peers boot the very same file).
 */
function bootPlan(o: Options): BootPlan {
  const poweroff = "poweroff -f";
  if (!o.kernel)
    return {
      files: null,
      why: "no kernel: build the default image (bin/tsvm image build) or pass --kernel",
      atPrompt: poweroff,
      linuxMips: false,
    };
  const files: BootFiles = {
    kernel: o.kernel,
    initrd: o.initrd,
    firmware: o.firmware,
    append: o.append,
    memoryMiB: o.memoryMiB,
  };
  if (!o.initrd || o.only === "mips")
    return { files, why: "no initramfs to add linux-mips to", atPrompt: poweroff, linuxMips: false };
  const cpio = execFileSync(join(here, "linux-mips/build.sh"), { encoding: "utf8" }).trim();
  const combined = join(scratch, "initrd-with-linux-mips");
  writeFileSync(combined, Buffer.concat([readFileSync(cpio), readFileSync(o.initrd)]));
  return {
    files: { ...files, initrd: combined },
    why: "",
    atPrompt: `/bench/linux-mips ${o.linuxIterations}; ${poweroff}`,
    linuxMips: true,
  };
}

type MipsResult = PeerResult["mips"];

interface MipsPrograms {
  long: string;
  short: string;
}

function buildGuestMips(iterations: number): string {
  return execFileSync(join(here, "guest-mips/build.sh"), [String(iterations)], { encoding: "utf8" }).trim();
}

/** Runs the long and the short program `runs` times each, alternating, and derives the loop's MIPS. */
async function benchMips(
  peer: "tsvm" | "qemu",
  o: Options,
  programs: MipsPrograms,
  qemuIcount: { long: number; short: number } | null,
): Promise<MipsResult> {
  const files = (elf: string): BootFiles => ({
    kernel: elf,
    initrd: null,
    firmware: null,
    append: "",
    memoryMiB: o.memoryMiB,
  });
  const secondsLong: (number | null)[] = [];
  const secondsShort: (number | null)[] = [];
  const rss: (number | null)[] = [];
  let long: ReturnType<typeof parseGuestMipsLine> = null;
  let short: ReturnType<typeof parseGuestMipsLine> = null;
  const failed = (status: "timeout" | "error", detail: string): MipsResult => ({
    status,
    detail,
    mips: null,
    wholeRunMips: null,
    instretLong: long?.instret ?? null,
    instretShort: short?.instret ?? null,
    secondsLong,
    secondsShort,
    checksum: long?.checksum ?? null,
    peakRssMiB: median(rss),
  });
  for (let i = 0; i < o.runs; i++) {
    for (const which of ["long", "short"] as const) {
      progress(`${peer} guest-mips ${which} run ${i + 1}/${o.runs}`);
      const r = await timedRun(peerArgv(peer, files(programs[which])), o.timeoutMs, null);
      const line = parseGuestMipsLine(r.stdout);
      if (r.timedOut) return failed("timeout", `the ${which} run passed ${o.timeoutMs / 1000} s`);
      if (!line || r.exitCode !== 0)
        return failed(
          "error",
          `the ${which} run printed no result (exit ${r.exitCode}): ${lastLines(r.stdout + r.stderr, 3)}`,
        );
      if (which === "long") {
        long = line;
        secondsLong.push(r.seconds);
        rss.push(r.peakRssMiB);
      } else {
        short = line;
        secondsShort.push(r.seconds);
      }
    }
  }
  // tsvm's minstret counts retired instructions exactly; QEMU's does only under -icount, so QEMU's runs
  // take the count from its -icount shift=0 run of the same program.
  const instretLong = peer === "tsvm" ? long!.instret : (qemuIcount?.long ?? null);
  const instretShort = peer === "tsvm" ? short!.instret : (qemuIcount?.short ?? null);
  const tLong = median(secondsLong);
  const tShort = median(secondsShort);
  const mips =
    instretLong !== null && instretShort !== null && tLong !== null && tShort !== null
      ? loopMips(instretLong, tLong, instretShort, tShort)
      : null;
  return {
    status: "ok",
    detail:
      mips === null
        ? "the long run was not measurably longer than the short one; raise --iterations"
        : undefined,
    mips,
    wholeRunMips: instretLong !== null && tLong !== null ? instretLong / tLong / 1e6 : null,
    instretLong,
    instretShort,
    secondsLong,
    secondsShort,
    checksum: long!.checksum,
    peakRssMiB: median(rss),
  };
}

/** The instruction counts of both programs under QEMU -icount shift=0, where minstret counts instructions. */
async function qemuIcountCounts(
  o: Options,
  programs: MipsPrograms,
): Promise<{ long: number; short: number } | null> {
  const counts: number[] = [];
  for (const elf of [programs.long, programs.short]) {
    progress(`qemu -icount shift=0 run of ${elf} (to confirm the instruction count)`);
    const argv = qemuArgv({ kernel: elf, initrd: null, firmware: null, append: "", memoryMiB: o.memoryMiB }, [
      "-icount",
      "shift=0",
    ]);
    const r = await timedRun(argv, o.timeoutMs, null);
    const line = parseGuestMipsLine(r.stdout);
    if (!line) return null;
    counts.push(line.instret);
  }
  return { long: counts[0]!, short: counts[1]! };
}

function skippedMips(detail: string): MipsResult {
  return {
    status: "skipped",
    detail,
    mips: null,
    wholeRunMips: null,
    instretLong: null,
    instretShort: null,
    secondsLong: [],
    secondsShort: [],
    checksum: null,
    peakRssMiB: null,
  };
}

function versions(): { tsvm: string; qemu: string } {
  try {
    return peerVersions(root);
  } catch (e) {
    fail((e as Error).message);
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const o = parseOptions(argv);
  if (!existsSync(TIME)) fail(`${TIME} is missing; install Debian's time package (it measures peak RSS)`);
  const loadAverageAtStart = loadavg()[0]!;
  const v = versions();
  scratch = mkdtempSync(join(tmpdir(), "tsvm-bench-"));
  if (!process.env.TSVM_NO_BUNDLE) {
    const bundle = await ensureBundle(root);
    if (bundle.ok) tsvmPeerArgs = ["--enable-source-maps", bundledEntry(bundle.dir, "bench/tsvm-peer.ts")];
    else progress(`${bundle.problem}; tsvm-peer runs through tsx`);
  }
  // Whatever happens, no emulator outlives the benchmark.
  const cleanUp = (): void => {
    for (const child of live) killGroup(child);
    rmSync(scratch, { recursive: true, force: true });
  };
  process.on("exit", cleanUp);
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      cleanUp();
      process.exit(130);
    });

  let programs: MipsPrograms | null = null;
  let icount: { long: number; short: number } | null = null;
  let tsvmMips: MipsResult;
  let qemuMips: MipsResult;
  if (o.only === "boot") {
    tsvmMips = qemuMips = skippedMips("--only boot");
  } else {
    progress(`building guest-mips (${o.iterations} and 1 iterations)`);
    programs = { long: buildGuestMips(o.iterations), short: buildGuestMips(1) };
    icount = await qemuIcountCounts(o, programs);
    qemuMips = await benchMips("qemu", o, programs, icount);
    tsvmMips = await benchMips("tsvm", o, programs, icount);
    if (tsvmMips.checksum && qemuMips.checksum && tsvmMips.checksum !== qemuMips.checksum) {
      tsvmMips = {
        ...tsvmMips,
        status: "error",
        detail: `checksum ${tsvmMips.checksum} differs from QEMU's ${qemuMips.checksum}: a wrong result, not a speed`,
        mips: null,
        wholeRunMips: null,
      };
    }
  }
  const plan = bootPlan(o);
  const { qemu: qemuBoot, tsvm: tsvmBoot } = await benchBoots(o, plan);
  let tsvmLinux = tsvmBoot.linux;
  let qemuLinux = qemuBoot.linux;
  if (tsvmLinux.checksum && qemuLinux.checksum && tsvmLinux.checksum !== qemuLinux.checksum)
    tsvmLinux = {
      ...tsvmLinux,
      status: "error",
      detail: `checksum ${tsvmLinux.checksum} differs from QEMU's ${qemuLinux.checksum}`,
      mips: null,
    };
  if (qemuLinux.status === "ok") {
    // The same program with the same argument: tsvm's exact count stands for QEMU's.
    const instret = tsvmLinux.status === "ok" ? tsvmLinux.instret : null;
    qemuLinux = {
      ...qemuLinux,
      instret,
      mips: instret !== null && qemuLinux.seconds ? instret / qemuLinux.seconds / 1e6 : null,
      detail: instret === null ? "no instruction count (it comes from tsvm's run, which failed)" : undefined,
    };
  }

  const tsvm: PeerResult = {
    peer: "tsvm",
    version: v.tsvm,
    boot: tsvmBoot.boot,
    mips: tsvmMips,
    linux: tsvmLinux,
  };
  const qemu: PeerResult = {
    peer: "qemu",
    version: v.qemu,
    boot: qemuBoot.boot,
    mips: qemuMips,
    linux: qemuLinux,
  };
  const report: BenchReport = {
    date: new Date().toISOString(),
    command: `npm run -s bench -- ${argv.join(" ")}`.trimEnd(),
    host: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      node: process.version,
      loadAverageAtStart,
    },
    guest: {
      memoryMiB: o.memoryMiB,
      harts: 1,
      kernel: o.kernel,
      initrd: o.initrd,
      firmware: o.firmware,
      append: o.append,
      mipsProgram: programs?.long ?? "",
      iterations: o.iterations,
      qemuIcountInstret: icount?.long ?? null,
      instretConfirmed:
        icount && tsvmMips.instretLong !== null && tsvmMips.instretShort !== null
          ? icount.long === tsvmMips.instretLong && icount.short === tsvmMips.instretShort
          : null,
      linuxIterations: o.linuxIterations,
    },
    tsvm,
    qemu,
    ratios: computeRatios(tsvm, qemu),
  };
  process.stdout.write(o.format === "json" ? `${JSON.stringify(report, null, 2)}\n` : formatTable(report));
}

await main();
