// The real-programs bench: ordinary programs (bench/real-programs: the bench's own C programs, sqlite's
// speedtest1, busybox gzip and sha256sum, esbuild) run on tsvm and on qemu-system-riscv64 (TCG) booted from the
// same kernel and initramfs, one boot per peer, the programs typed at each one's shell prompt in turn.
// Prints each program's time on both, tsvm's instruction count, the ratios and their geometric mean.
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { bundledEntry, ensureBundle } from "../scripts/bundle.ts";
import { findImage } from "../src/images/image-store.ts";
import { median } from "./bench-report.ts";
import { peerVersions, QEMU } from "./peer-versions.ts";
import {
  formatRealProgramsTable,
  type PeerRuns,
  type ProgramResult,
  parseFailureLine,
  parseResultLine,
  programRatios,
  REAL_PROGRAMS,
  type RealProgram,
  type RealProgramsReport,
  summarize,
} from "./real-programs-report.ts";

const here = dirname(fileURLToPath(import.meta.url));
const root = dirname(here);
const PROMPT_TAIL = /[#$] $/;

const HELP = `Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/real-programs.ts [options]

Boots tsvm and qemu-system-riscv64 (TCG) once each on the default image's kernel and initramfs (with the
programs of bench/real-programs in front of it), types every program at both shell prompts in turn, and
prints each program's time, tsvm's instruction count, tsvm/QEMU ratios and their geometric mean.

Programs: ${REAL_PROGRAMS.filter((p) => !p.optional)
  .map((p) => p.name)
  .join(", ")}; with --only also ${REAL_PROGRAMS.filter((p) => p.optional)
  .map((p) => p.name)
  .join(", ")}

Options:
  --format table|json   output (default table)
  --only A,B,…          run these programs only
  --scale N             work per program (default 1: QEMU takes ~0.1–1 s each on an idle host)
  --repeat N            runs per program and peer, alternating; the median is used (default 1)
  --timeout S           bound on each program run, in seconds (default 600); the boot gets the same
  --memory MIB          guest RAM (default 256)
  --cpus N              vCPUs of both guests (default 1): QEMU -smp N (one host thread per vCPU), tsvm with
                        each further hart on a worker thread; for multi-threaded programs (esbuild)
  --kernel F --initrd F --firmware F
                        boot files (default: the cached default image, see bin/tsvm image list)
  --append S            kernel command line (default "console=ttyS0 earlycon=sbi")
  -h, --help            this help
`;

interface Options {
  format: "table" | "json";
  programs: readonly RealProgram[];
  scale: number;
  repeat: number;
  timeoutMs: number;
  memoryMiB: number;
  cpus: number;
  kernel: string;
  initrd: string;
  firmware: string;
  append: string;
}

function fail(message: string): never {
  process.stderr.write(`real-programs: ${message}\n`);
  process.exit(2);
}

function progress(line: string): void {
  process.stderr.write(`real-programs: ${line}\n`);
}

function positiveInt(text: string | undefined, fallback: number, option: string, max = 100_000): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > max)
    fail(`${option} '${text}' must be a whole number from 1 to ${max}`);
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
  let programs = REAL_PROGRAMS.filter((p) => !p.optional);
  if (values.only !== undefined) {
    const names = values.only.split(",").filter(Boolean);
    const unknown = names.filter((n) => !REAL_PROGRAMS.some((p) => p.name === n));
    if (unknown.length || names.length === 0)
      fail(
        `--only '${values.only}': no program ${unknown.join(", ")} (there are ${REAL_PROGRAMS.map((p) => p.name).join(", ")})`,
      );
    programs = REAL_PROGRAMS.filter((p) => names.includes(p.name));
  }
  const image = values.kernel ? undefined : findImage("default");
  const kernel = values.kernel ?? image?.kernel;
  const initrd = values.initrd ?? (values.kernel ? undefined : image?.initrd);
  if (!kernel || !initrd)
    fail(
      "no kernel and initramfs: build the default image (bin/tsvm image build) or pass --kernel and --initrd",
    );
  return {
    format,
    programs,
    scale: positiveInt(values.scale, 1, "--scale", 1000),
    repeat: positiveInt(values.repeat, 1, "--repeat", 100),
    timeoutMs: positiveInt(values.timeout, 600, "--timeout") * 1000,
    memoryMiB: positiveInt(values.memory, 256, "--memory", 4096),
    cpus: positiveInt(values.cpus, 1, "--cpus", 8),
    kernel,
    initrd,
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
      scale: { type: "string" },
      repeat: { type: "string" },
      timeout: { type: "string" },
      memory: { type: "string" },
      cpus: { type: "string" },
      kernel: { type: "string" },
      initrd: { type: "string" },
      firmware: { type: "string" },
      append: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}

/** A booted emulator process and its serial console, read as text (carriage returns dropped). */
class GuestConsole {
  text = "";
  private exited = false;
  private readonly child: ChildProcessWithoutNullStreams;
  private readonly listeners = new Set<() => void>();

  constructor(
    readonly peer: "tsvm" | "qemu",
    argv: string[],
  ) {
    // Its own process group, so a kill reaches everything it started.
    this.child = spawn(argv[0]!, argv.slice(1), { detached: true, stdio: ["pipe", "pipe", "pipe"] });
    this.child.stdin.on("error", () => {});
    this.child.stdout.on("data", (chunk: Buffer) => {
      this.text += chunk.toString("latin1").replace(/\r/g, "");
      for (const l of this.listeners) l();
    });
    this.child.stderr.on("data", () => {});
    const gone = (): void => {
      this.exited = true;
      for (const l of this.listeners) l();
    };
    this.child.on("error", gone);
    this.child.on("close", gone);
  }

  get alive(): boolean {
    return !this.exited;
  }

  /** Resolves with `test`'s first non-null answer on the console text, or null at the timeout or exit. */
  wait<T>(test: (text: string) => T | null, timeoutMs: number): Promise<T | null> {
    return new Promise((resolve) => {
      const check = (): void => {
        const answer = test(this.text);
        if (answer !== null || this.exited) {
          clearTimeout(timer);
          this.listeners.delete(check);
          resolve(answer);
        }
      };
      const timer = setTimeout(() => {
        this.listeners.delete(check);
        resolve(null);
      }, timeoutMs);
      this.listeners.add(check);
      check();
    });
  }

  type(line: string): void {
    this.child.stdin.write(`${line}\n`);
  }

  kill(): void {
    if (this.child.pid !== undefined && !this.exited)
      try {
        process.kill(-this.child.pid, "SIGKILL");
      } catch {
        // Already gone.
      }
  }

  /** Powers the guest off, and kills it if it has not exited within a few seconds. */
  async stop(): Promise<void> {
    if (this.exited) return;
    this.type("poweroff -f");
    await this.wait((t) => (this.exited ? t : null), 20_000);
    this.kill();
  }
}

interface BootFiles {
  kernel: string;
  initrd: string;
  firmware: string;
  append: string;
  memoryMiB: number;
  cpus: number;
}

const tsxLoader = pathToFileURL(join(root, "node_modules/tsx/dist/loader.mjs")).href;
let tsvmPeerArgs = ["--import", tsxLoader, join(here, "tsvm-peer.ts")];

function peerArgv(peer: "tsvm" | "qemu", f: BootFiles): string[] {
  if (peer === "tsvm")
    return [
      process.execPath,
      ...tsvmPeerArgs,
      ...["--kernel", f.kernel, "--initrd", f.initrd, "--bios", f.firmware, "--append", f.append],
      ...["--memory", String(f.memoryMiB * 2 ** 20), "--harts", String(f.cpus)],
    ];
  return [
    QEMU,
    ...["-M", "virt", "-smp", String(f.cpus), "-m", `${f.memoryMiB}M`, "-nographic", "-bios", f.firmware],
    ...["-kernel", f.kernel, "-initrd", f.initrd, "-append", f.append],
  ];
}

function lastLines(text: string, n: number): string {
  return text.trimEnd().split("\n").slice(-n).join(" | ");
}

/** One run of a program at a peer's prompt: its result line, or why there is none. */
async function runOnce(
  c: GuestConsole,
  p: RealProgram,
  o: Options,
): Promise<
  | { ok: true; seconds: number; instret: number; checksum: string }
  | { ok: false; status: "timeout" | "error"; detail: string }
> {
  const mark = c.text.length;
  c.type(p.command(o.scale));
  // Done when the result (or failure) line is there and the shell has printed its prompt after it.
  const done = await c.wait((t) => {
    const out = t.slice(mark);
    if (!PROMPT_TAIL.test(out)) return null;
    const line = parseResultLine(out, p.name);
    if (line)
      return { ok: true as const, seconds: line.ns / 1e9, instret: line.instret, checksum: line.checksum };
    const failure = parseFailureLine(out, p.name);
    // The prompt right after the echoed command is not the end: wait for output past the command line.
    if (failure || out.split("\n").length > 2)
      return {
        ok: false as const,
        status: "error" as const,
        detail: failure ?? `no result line: ${lastLines(out, 3)}`,
      };
    return null;
  }, o.timeoutMs);
  if (done) return done;
  if (!c.alive)
    return { ok: false, status: "error", detail: `the emulator exited: ${lastLines(c.text.slice(mark), 3)}` };
  return { ok: false, status: "timeout", detail: `no result within ${o.timeoutMs / 1000} s` };
}

interface Acc {
  runs: number[];
  status: PeerRuns["status"];
  detail?: string;
  checksum: string | null;
  instret: number | null;
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
  const loadAverageAtStart = loadavg()[0]!;
  const v = versions();
  const scratch = mkdtempSync(join(tmpdir(), "tsvm-real-programs-"));
  const consoles: GuestConsole[] = [];
  const cleanUp = (): void => {
    for (const c of consoles) c.kill();
    rmSync(scratch, { recursive: true, force: true });
  };
  process.on("exit", cleanUp);
  for (const signal of ["SIGINT", "SIGTERM"] as const)
    process.on(signal, () => {
      cleanUp();
      process.exit(130);
    });

  progress("building the programs (bench/real-programs/build.sh; minutes the first time)");
  let built: string;
  try {
    built = execFileSync(join(here, "real-programs/build.sh"), {
      encoding: "utf8",
      stdio: ["ignore", "pipe", "inherit"],
    }).trim();
  } catch {
    fail("bench/real-programs/build.sh failed (see above)");
  }
  const initrd = join(scratch, "initrd-with-real-programs");
  writeFileSync(
    initrd,
    Buffer.concat([readFileSync(join(built, "real-programs.cpio")), readFileSync(o.initrd)]),
  );
  if (!process.env.TSVM_NO_BUNDLE) {
    const bundle = await ensureBundle(root);
    if (bundle.ok) tsvmPeerArgs = ["--enable-source-maps", bundledEntry(bundle.dir, "bench/tsvm-peer.ts")];
    else progress(`${bundle.problem}; tsvm-peer runs through tsx`);
  }
  const files: BootFiles = {
    kernel: o.kernel,
    initrd,
    firmware: o.firmware,
    append: o.append,
    memoryMiB: o.memoryMiB,
    cpus: o.cpus,
  };

  const peers = ["qemu", "tsvm"] as const;
  const acc = new Map<string, Record<"tsvm" | "qemu", Acc>>();
  for (const p of o.programs)
    acc.set(p.name, {
      tsvm: { runs: [], status: "ok", checksum: null, instret: null },
      qemu: { runs: [], status: "ok", checksum: null, instret: null },
    });
  const booted: Partial<Record<"tsvm" | "qemu", GuestConsole>> = {};
  const bootFailure: Partial<Record<"tsvm" | "qemu", string>> = {};
  progress(`booting qemu and tsvm (bounded at ${o.timeoutMs / 1000} s)`);
  await Promise.all(
    peers.map(async (peer) => {
      const c = new GuestConsole(peer, peerArgv(peer, files));
      consoles.push(c);
      const ok = await c.wait((t) => (PROMPT_TAIL.test(t) ? true : null), o.timeoutMs);
      if (ok) booted[peer] = c;
      else {
        bootFailure[peer] =
          `no shell prompt (${c.alive ? "timed out" : "exited"}); console ended: ${lastLines(c.text, 3)}`;
        c.kill();
      }
      progress(`${peer}: ${ok ? "at the prompt" : bootFailure[peer]}`);
    }),
  );
  // Peers take turns, and which goes first alternates, so both see the same stretches of the host's speed.
  let turn = 0;
  for (let round = 0; round < o.repeat; round++)
    for (const p of o.programs) {
      const order = turn++ % 2 === 0 ? peers : ([...peers].reverse() as ("tsvm" | "qemu")[]);
      for (const peer of order) {
        const a = acc.get(p.name)![peer];
        const c = booted[peer];
        if (a.status !== "ok") continue;
        if (!c || !c.alive) {
          a.status = "skipped";
          a.detail = bootFailure[peer] ?? "the emulator was stopped after an earlier timeout";
          continue;
        }
        progress(`${peer}: ${p.name} (run ${round + 1}/${o.repeat})`);
        const r = await runOnce(c, p, o);
        if (!r.ok) {
          a.status = r.status;
          a.detail = r.detail;
          // A program still running at a timeout leaves no prompt to type the next one at.
          if (r.status === "timeout") c.kill();
          progress(`${peer}: ${p.name}: ${r.status}: ${r.detail}`);
          continue;
        }
        progress(`${peer}: ${p.name}: ${r.seconds.toFixed(3)} s`);
        a.runs.push(r.seconds);
        if (a.checksum !== null && a.checksum !== r.checksum) {
          a.status = "error";
          a.detail = `checksum ${r.checksum} differs from its first run's ${a.checksum}`;
        }
        a.checksum ??= r.checksum;
        if (peer === "tsvm") a.instret ??= r.instret;
      }
    }
  await Promise.all(consoles.map((c) => c.stop()));

  const programs: ProgramResult[] = o.programs.map((p) => {
    const a = acc.get(p.name)!;
    const peerRuns = (x: Acc): PeerRuns => ({
      status: x.status,
      detail: x.detail,
      runs: x.runs,
      seconds: x.status === "ok" ? median(x.runs) : null,
      checksum: x.checksum,
    });
    let tsvm = peerRuns(a.tsvm);
    const qemu = peerRuns(a.qemu);
    if (tsvm.status === "ok" && qemu.status === "ok" && tsvm.checksum !== qemu.checksum)
      tsvm = {
        ...tsvm,
        status: "error",
        detail: `checksum ${tsvm.checksum} differs from QEMU's ${qemu.checksum}: a wrong result, not a speed`,
        seconds: null,
      };
    return {
      name: p.name,
      what: p.what,
      command: p.command(o.scale),
      instret: a.tsvm.instret,
      tsvm,
      qemu,
      ...programRatios(tsvm, qemu),
    };
  });
  const report: RealProgramsReport = {
    date: new Date().toISOString(),
    command:
      `node --import ./node_modules/tsx/dist/loader.mjs bench/real-programs.ts ${argv.join(" ")}`.trimEnd(),
    host: {
      cpu: cpus()[0]?.model ?? "unknown",
      cores: cpus().length,
      node: process.version,
      loadAverageAtStart,
      loadAverageAtEnd: loadavg()[0]!,
    },
    versions: v,
    guest: {
      memoryMiB: o.memoryMiB,
      cpus: o.cpus,
      kernel: o.kernel,
      initrd: o.initrd,
      append: o.append,
      scale: o.scale,
      repeat: o.repeat,
    },
    programs,
    ...summarize(programs),
  };
  process.stdout.write(
    o.format === "json" ? `${JSON.stringify(report, null, 2)}\n` : formatRealProgramsTable(report),
  );
}

await main();
