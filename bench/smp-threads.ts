// The threaded-harts benchmark (`node --import ./node_modules/tsx/dist/loader.mjs bench/smp-threads.ts`,
// issue 11): two CPU-bound processes (sha256sum of the same 8 MiB file in tmpfs, side by side) on a 1-vCPU
// guest, on a 2-vCPU guest whose second hart runs on a worker thread (hartThreads), and on a 2-vCPU guest with
// both harts taking turns on one thread (the default before). Target: threaded 2-vCPU ≤ 0.6× the 1-vCPU time.
// All machines are booted first; each run resumes one and pauses the others (a paused engine uses no host
// CPU), so the configurations take turns under the same host load. Time is the host's wall time of the guest
// agent's command; host CPU / wall (this process, every thread) shows how far the harts really ran at once: on
// a loaded host (and with sched_autogroup, where all threads of a session share one share of the CPU) the
// threads get no more CPU than one thread would. Progress to stderr, the table to stdout, with the load.
import { readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type { HartThreadStats } from "../src/machine/index.ts";
import { findImage } from "../src/images/image-store.ts";
import { type AgentMachine, bootAgentMachine } from "../tests/integration/agent-machine.ts";
import { median } from "./bench-report.ts";

const { values } = parseArgs({
  options: {
    runs: { type: "string", default: "3" },
    mib: { type: "string", default: "8" },
    /** Only these guests, by number (1: 1 vCPU, 2: threads, 3: one thread), e.g. "1,2". */
    only: { type: "string", default: "1,2,3" },
  },
});
const runs = Number(values.runs);
const mib = Number(values.mib);
const img = findImage("default");
if (!img) {
  console.error("no default image: run `bin/tsvm image build` first");
  process.exit(1);
}

const only = values.only.split(",").map(Number);
const configs = [
  { name: "1 vCPU", harts: 1, hartThreads: false },
  { name: "2 vCPUs, threads", harts: 2, hartThreads: true },
  { name: "2 vCPUs, one thread", harts: 2, hartThreads: false },
].filter((_, i) => only.includes(i + 1));
/** CPU seconds (user + system) of each thread of this process, by thread id (Linux /proc; empty elsewhere). */
function threadCpu(): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const tid of readdirSync("/proc/self/task")) {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "latin1");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(tid, (Number(f[11]) + Number(f[12])) / 100);
    }
  } catch {}
  return out;
}

/** The threads that used the most CPU between two readings, busiest first: "main 3.1 s, 2.9, 0.4". */
function busiestThreads(before: Map<string, number>, after: Map<string, number>): string {
  const main = String(process.pid);
  const used = [...after].map(([tid, s]) => [tid, s - (before.get(tid) ?? 0)] as const);
  const others = used.filter(([tid, s]) => tid !== main && s >= 0.05).sort((a, b) => b[1] - a[1]);
  const mainS = used.find(([tid]) => tid === main)?.[1] ?? 0;
  return [`main ${mainS.toFixed(2)}`, ...others.slice(0, 3).map(([, s]) => s.toFixed(2))].join(", ");
}

/** What hart 1's thread did during a run: ms running, sleeping in WFI, waiting for device round trips. */
function hartThreadDelta(a: HartThreadStats, b: HartThreadStats): string {
  const windows = Object.entries(b.windows)
    .map(([id, w]) => [id, w.calls - (a.windows[id]?.calls ?? 0), w.ms - (a.windows[id]?.ms ?? 0)] as const)
    .filter(([, calls]) => calls > 0)
    .map(([id, calls, ms]) => `${id} ${calls}× ${ms.toFixed(0)} ms`);
  return [
    `run ${(b.runMs - a.runMs).toFixed(0)} ms`,
    `WFI ${b.sleeps - a.sleeps}× ${(b.sleepMs - a.sleepMs).toFixed(0)} ms`,
    `device round trips ${b.calls - a.calls}× ${(b.callMs - a.callMs).toFixed(0)} ms (${windows.join(", ")})`,
  ].join("; ");
}

const machines: AgentMachine[] = [];
const times: number[][] = configs.map(() => []);
/** Host CPU time of this process (every thread) per wall time of each run: above 1 when harts ran at once. */
const cpuPerWall: number[][] = configs.map(() => []);
const script = `for i in 1 2; do sha256sum /tmp/z > /tmp/s$i & done; wait; cat /tmp/s1 /tmp/s2`;
try {
  for (const c of configs) {
    console.error(`booting ${c.name}…`);
    const m = await bootAgentMachine(img, { ...c, bootTimeoutMs: 15 * 60_000 });
    const made = await m.run(`head -c ${mib * 1024 * 1024} /dev/zero > /tmp/z && sha256sum /tmp/z`, 600_000);
    if (made.exitCode !== 0) throw new Error(`${c.name}: preparing the file failed`);
    await m.engine.pause();
    machines.push(m);
  }
  const load = loadavg()[0]!;
  for (let r = 0; r < runs; r++)
    for (let i = 0; i < configs.length; i++) {
      const m = machines[i]!;
      await m.engine.resume();
      const start = performance.now();
      const cpuStart = process.cpuUsage();
      const threadsStart = threadCpu();
      const statsStart = m.engine.stats().hartThreads;
      const instretStart = m.engine.stats().instret;
      const out = await m.run(script, 900_000);
      const ms = performance.now() - start;
      const cpu = process.cpuUsage(cpuStart);
      const threadsUsed = busiestThreads(threadsStart, threadCpu());
      const statsEnd = m.engine.stats().hartThreads;
      const instret = m.engine.stats().instret.map((n, h) => (n - instretStart[h]!) / 1e6);
      cpuPerWall[i]!.push((cpu.user + cpu.system) / 1000 / ms);
      await m.engine.pause();
      const sums = out.stdout.trim().split("\n");
      if (out.exitCode !== 0 || sums.length !== 2 || sums[0] !== sums[1])
        throw new Error(`${configs[i]!.name}: wrong result ${JSON.stringify(out)}`);
      times[i]!.push(ms);
      console.error(
        `run ${r + 1} ${configs[i]!.name}: ${(ms / 1000).toFixed(2)} s, CPU/wall ${cpuPerWall[i]!.at(-1)!.toFixed(2)}, thread CPU s: ${threadsUsed}, M instructions per hart: ${instret.map((n) => n.toFixed(0)).join(" + ")}, load ${loadavg()[0]!.toFixed(2)}`,
      );
      if (statsStart && statsEnd)
        console.error(`  hart 1's thread: ${hartThreadDelta(statsStart[0]!, statsEnd[0]!)}`);
    }
  const base = median(times[0]!) ?? Number.NaN;
  console.log(
    `two sha256sum of ${mib} MiB side by side, median of ${runs} (load average ${load.toFixed(2)} → ${loadavg()[0]!.toFixed(2)})`,
  );
  console.log("| guest | time (s) | runs (s) | × 1 vCPU | host CPU / wall |");
  console.log("| --- | --- | --- | --- | --- |");
  for (let i = 0; i < configs.length; i++) {
    const med = median(times[i]!) ?? Number.NaN;
    const all = times[i]!.map((t) => (t / 1000).toFixed(2)).join(", ");
    const par = (median(cpuPerWall[i]!) ?? Number.NaN).toFixed(2);
    console.log(
      `| ${configs[i]!.name} | ${(med / 1000).toFixed(2)} | ${all} | ${(med / base).toFixed(2)} | ${par} |`,
    );
  }
} finally {
  for (const m of machines) await m.close();
}
