// The resume benchmark (`node --import ./node_modules/tsx/dist/loader.mjs bench/resume.ts`): how long a
// suspended Linux guest takes to come back, with guest RAM read whole before the guest runs (the way before
// issue 9, TSVM_RESTORE_RAM=read), with RAM mapped from the saved file in a freshly spawned VMM
// (TSVM_VMM_SPARE=0), and mapped in the daemon's spare VMM (the default: spare-vmm.ts), for 256 MiB and
// 1 GiB guests; and how long a snapshot of a running guest pauses it (VmmGuest.saveState with keepRunning).
// Progress goes to stderr, the table (or JSON) to stdout. docs/performance.md has the results.
//
// Resume goes through the real daemon (bin/tsvm, a temporary TSVM_HOME): resume-to-RUNNING is from the API
// request to its operation DONE (the VM RUNNING and recorded); resume-to-first-instruction is from the same
// request to the wall-clock time the VMM logs when the restored guest's first slice of instructions begins.
// The way RAM is restored and whether a spare is kept are the daemon's environment, so the daemon is
// restarted with them between runs; before a resume with a spare, the spare is waited for (ready and idle),
// as a resume on a host not busy with one resume after another would find it.
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { cp, mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { basename, dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ApiClient } from "../src/api/client.ts";
import { activeDiskOf } from "../src/hypervisor/disk-store.ts";
import { createGuest } from "../src/hypervisor/riscv-guest.ts";
import { VMM_PROTOCOL_VERSION, type VmmSpec } from "../src/hypervisor/vmm-protocol.ts";
import { identityOf } from "../src/hypervisor/guest-identity.ts";
import { findImage } from "../src/images/image-store.ts";
import { median } from "./bench-report.ts";

const root = dirname(dirname(fileURLToPath(import.meta.url)));

const HELP = `Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/resume.ts [options]

Boots the default Linux image with each memory size to its guest agent, suspends it, and resumes it --runs
times each way (interleaved), through the daemon; then snapshots the running guest --runs times (saveState
with keepRunning) in this process. Prints medians.

Ways: read  = RAM read whole and checked before the guest runs (before issue 9; TSVM_RESTORE_RAM=read),
      map   = RAM mapped from the saved file, in a VMM spawned for the resume (TSVM_VMM_SPARE=0),
      spare = RAM mapped, in the daemon's spare VMM (the default).

Options:
  --memory LIST   guest RAM sizes in MiB, comma-separated (default 256,1024)
  --runs N        resumes per way and size, and snapshots per size (default 3)
  --ways LIST     which of read,map,spare, comma-separated (default map,spare)
  --format table|json
  -h, --help
`;

type Way = "read" | "map" | "spare";
const WAYS: readonly Way[] = ["read", "map", "spare"];

/** The daemon's environment for each way (its VMMs inherit it). */
const WAY_ENV: Record<Way, Record<string, string>> = {
  read: { TSVM_RESTORE_RAM: "read", TSVM_VMM_SPARE: "0" },
  map: { TSVM_RESTORE_RAM: "map", TSVM_VMM_SPARE: "0" },
  spare: { TSVM_RESTORE_RAM: "map", TSVM_VMM_SPARE: "1" },
};

interface SizeResult {
  memoryMiB: number;
  resumeToRunningMs: Partial<Record<Way, number[]>>;
  resumeToFirstInstructionMs: Partial<Record<Way, number[]>>;
  /**
   * The VMM's CPU time (user + system) from its start to the guest's first instruction; for a spare, from
   * its adoption (what it did before was done before the resume was asked).
   */
  vmmCpuToFirstInstructionMs: Partial<Record<Way, number[]>>;
  /** Load average (1 min) at each resume. */
  load: number[];
  suspendMs: number[];
  snapshotPauseMs: number[];
  snapshotTotalMs: number[];
}

const progress = (line: string) => process.stderr.write(`${line}\n`);

function installation(home: string) {
  const client = ApiClient.forDataDir(home);
  /** bin/tsvm against this installation; a daemon it starts gets `env` (and with it the VMMs it spawns). */
  const tsvm = (args: string[], env: Record<string, string> = {}) =>
    new Promise<string>((resolve, reject) =>
      execFile(
        join(root, "bin/tsvm"),
        args,
        { env: { ...process.env, ...env, TSVM_HOME: home }, timeout: 900_000, maxBuffer: 16 << 20 },
        (e, stdout, stderr) =>
          e ? reject(new Error(`tsvm ${args.join(" ")}: ${stderr || e.message}`)) : resolve(stdout),
      ),
    );
  return { client, tsvm };
}

/** The epoch ms and VMM CPU ms of the last "first guest instruction after restore" line in vmm.log. */
async function firstInstruction(
  vmDir: string,
  way: Way,
  sinceEpochMs: number,
): Promise<{ epochMs: number; cpuMs: number }> {
  // RUNNING can be recorded before the VMM has logged its guest's first slice (it is logged as it begins).
  for (let i = 0; i < 50; i++) {
    const found = await firstInstructionLine(vmDir, way);
    if (found && found.epochMs >= sinceEpochMs) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`vmm.log in ${vmDir} has no first-instruction line for ${way}`);
}

async function firstInstructionLine(
  vmDir: string,
  way: Way,
): Promise<{ epochMs: number; cpuMs: number } | undefined> {
  const log = await readFile(join(vmDir, "vmm.log"), "utf8");
  const matches = [
    ...log.matchAll(
      /first guest instruction after restore \(RAM (\w+)\): epoch ([\d.]+) ms, [\d.]+ ms after the VMM started, cpu (\d+) ms(?:, [\d.]+ ms and cpu (\d+) ms after it was adopted as a spare)?/g,
    ),
  ];
  const last = matches.at(-1);
  const ram = way === "read" ? "read" : "map";
  if (!last || last[1] !== ram || (way === "spare") !== (last[4] !== undefined)) return undefined;
  return { epochMs: Number(last[2]), cpuMs: Number(last[4] ?? last[3]) };
}

/** Whether `pid` is a spare VMM not yet adopted (its command line still says --spare). */
function idleSpare(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0").includes("--spare");
  } catch {
    return false;
  }
}

/** Waits until the daemon's newest spare (daemon.log) is ready and idle. */
async function spareReady(home: string): Promise<void> {
  for (const t0 = performance.now(); performance.now() - t0 < 120_000; ) {
    const log = await readFile(join(home, "daemon.log"), "utf8").catch(() => "");
    const pid = [...log.matchAll(/spare VMM \(pid (\d+)\) ready/g)].at(-1)?.[1];
    if (pid && idleSpare(Number(pid))) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`no spare VMM became ready (see ${join(home, "daemon.log")})`);
}

async function benchSize(
  home: string,
  memoryMiB: number,
  runs: number,
  ways: readonly Way[],
): Promise<SizeResult> {
  const { client, tsvm } = installation(home);
  const name = `m${memoryMiB}`;
  const vmDir = join(home, "vms", name);
  const result: SizeResult = {
    memoryMiB,
    resumeToRunningMs: {},
    resumeToFirstInstructionMs: {},
    vmmCpuToFirstInstructionMs: {},
    load: [],
    suspendMs: [],
    snapshotPauseMs: [],
    snapshotTotalMs: [],
  };
  progress(`${memoryMiB} MiB: booting to the guest agent`);
  await tsvm(["create", name, "--memory", `${memoryMiB}M`]);
  await tsvm(["exec", name, "--agent-wait", "600", "--", "true"]);
  // Something to show the guest runs on: a loop counting in the background.
  await tsvm([
    "exec",
    name,
    "--",
    "sh",
    "-c",
    "setsid nice -n 19 sh -c 'i=0; while :; do i=$((i+1)); done' </dev/null >/dev/null 2>&1 &",
  ]);
  const suspend = async () => {
    const t0 = performance.now();
    const op = await client.instanceAction(name, "suspend");
    const done = await client.waitUntilDone(op.id, undefined, 1);
    if (done.error) throw new Error(`suspend: ${done.error.message}`);
    result.suspendMs.push(performance.now() - t0);
  };
  await suspend();
  let daemonWay: Way | undefined;
  for (let run = 0; run < runs; run++) {
    for (const way of ways) {
      if (daemonWay !== way) {
        await tsvm(["daemon", "stop"]);
        await tsvm(["list"], WAY_ENV[way]);
        daemonWay = way;
      }
      if (way === "spare") await spareReady(home);
      const t0 = performance.now();
      const t0Epoch = performance.timeOrigin + t0;
      const op = await client.instanceAction(name, "resume");
      const done = await client.waitUntilDone(op.id, undefined, 1);
      const runningMs = performance.now() - t0;
      if (done.error) throw new Error(`resume: ${done.error.message}`);
      const first = await firstInstruction(vmDir, way, t0Epoch);
      const firstMs = first.epochMs - t0Epoch;
      const load = loadavg()[0];
      (result.resumeToRunningMs[way] ??= []).push(runningMs);
      (result.resumeToFirstInstructionMs[way] ??= []).push(firstMs);
      (result.vmmCpuToFirstInstructionMs[way] ??= []).push(first.cpuMs);
      result.load.push(load);
      progress(
        `${memoryMiB} MiB, ${way}: RUNNING after ${runningMs.toFixed(0)} ms, first instruction after ${firstMs.toFixed(0)} ms (VMM CPU ${first.cpuMs} ms; load ${load})`,
      );
      // Let the guest run a little before it is suspended again.
      await new Promise((r) => setTimeout(r, 1000));
      await suspend();
    }
  }
  await benchSnapshot(home, name, memoryMiB, runs, result);
  await tsvm(["delete", name]);
  return result;
}

/**
 * Snapshot pause: the suspended VM's state and disk copied to a scratch directory, restored here through
 * riscv-guest.ts (as a VMM would), run for a moment, then saved with keepRunning `runs` times.
 */
async function benchSnapshot(
  home: string,
  name: string,
  memoryMiB: number,
  runs: number,
  result: SizeResult,
) {
  // Two levels below the home, as a VM's directory is: the active disk names its backing node
  // "../../disks/<id>.qcow2", relative to its own directory.
  const scratch = join(home, "bench-snapshots", name);
  await mkdir(scratch, { recursive: true });
  const vm = JSON.parse(await readFile(join(home, "vms", name, "vm.json"), "utf8")) as {
    id: string;
    image?: string;
  };
  await cp(join(home, "vms", name, "state"), join(scratch, "state"), { recursive: true });
  const disk = activeDiskOf(join(home, "vms", name));
  const diskCopy = join(scratch, basename(disk));
  await cp(disk, diskCopy);
  const spec: VmmSpec = {
    protocol: VMM_PROTOCOL_VERSION,
    mode: "restore",
    vmId: vm.id,
    name,
    engine: "riscv",
    engineModule: join(root, "src/hypervisor/riscv-guest.ts"),
    cpus: 1,
    memoryMiB,
    image: vm.image ?? "default",
    identity: identityOf({ id: vm.id, name }),
    cpuCapPercent: null,
    cpuWeight: 100,
    vmDir: scratch,
    diskPath: diskCopy,
    stateDir: join(scratch, "state"),
    consoleLog: join(scratch, "console.log"),
    socketPath: join(scratch, "vmm.sock"),
  };
  const guest = await createGuest(spec);
  await guest.start("restore");
  try {
    for (let run = 0; run < runs; run++) {
      await new Promise((r) => setTimeout(r, 1000));
      const dir = join(scratch, `saved-${run}`);
      await mkdir(dir);
      const t0 = performance.now();
      const { pausedMs } = await guest.saveState(dir, { keepRunning: true });
      const totalMs = performance.now() - t0;
      result.snapshotPauseMs.push(pausedMs);
      result.snapshotTotalMs.push(totalMs);
      progress(
        `${memoryMiB} MiB: snapshot paused the guest ${pausedMs.toFixed(0)} ms (written in ${totalMs.toFixed(0)} ms)`,
      );
      await rm(dir, { recursive: true, force: true });
    }
  } finally {
    await guest.close();
    await rm(scratch, { recursive: true, force: true });
  }
}

function formatTable(results: SizeResult[], ways: readonly Way[]): string {
  const ms = (xs: number[] | undefined) => `${(median(xs ?? []) ?? Number.NaN).toFixed(0)} ms`.padStart(9);
  const group = (title: string) => `${title.padEnd(9 * ways.length)} `;
  const lines = [
    `RAM      ${group("resume→RUNNING")}${group("resume→first instr.")}${group("VMM CPU to first instr.")}snapshot   suspend`,
    `         ${[0, 1, 2].map(() => `${ways.map((w) => w.padStart(9)).join("")} `).join("")}   pause`,
  ];
  for (const r of results)
    lines.push(
      `${`${r.memoryMiB} MiB`.padEnd(8)} ` +
        [r.resumeToRunningMs, r.resumeToFirstInstructionMs, r.vmmCpuToFirstInstructionMs]
          .map((m) => `${ways.map((w) => ms(m[w])).join("")} `)
          .join("") +
        `${ms(r.snapshotPauseMs)}${ms(r.suspendMs)}`,
    );
  const loads = results.flatMap((r) => r.load);
  lines.push(
    "(medians; read = all of RAM read and checked before the guest runs (before issue 9); map = RAM mapped from",
    " its file, in a VMM spawned for the resume; spare = mapped, in the daemon's spare VMM, whose CPU counts from",
    ` its adoption; snapshot pause = saveState with keepRunning; load average ${Math.min(...loads)}–${Math.max(...loads)} at the resumes)`,
  );
  return lines.join("\n");
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      memory: { type: "string", default: "256,1024" },
      runs: { type: "string", default: "3" },
      ways: { type: "string", default: "map,spare" },
      format: { type: "string", default: "table" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const sizes = values.memory.split(",").map(Number);
  const runs = Number(values.runs);
  const ways = values.ways.split(",") as Way[];
  if (ways.length === 0 || ways.some((w) => !WAYS.includes(w)))
    throw new Error(`--ways takes a comma-separated list of ${WAYS.join(", ")}`);
  if (sizes.some((m) => !Number.isInteger(m) || m < 32 || m > 2048) || !Number.isInteger(runs) || runs < 1)
    throw new Error("--memory takes MiB sizes from 32 to 2048, --runs a whole number of at least 1");
  if (!findImage("default")) throw new Error("no default image: run `bin/tsvm image build` first");
  const home = await mkdtemp(join(tmpdir(), "tsvm-bench-resume-"));
  const { tsvm } = installation(home);
  const results: SizeResult[] = [];
  try {
    for (const m of sizes) results.push(await benchSize(home, m, runs, ways));
  } finally {
    await tsvm(["daemon", "stop"]).catch(() => {});
    await rm(home, { recursive: true, force: true });
  }
  process.stdout.write(
    values.format === "json" ? `${JSON.stringify(results, null, 2)}\n` : `${formatTable(results, ways)}\n`,
  );
}

await main();
