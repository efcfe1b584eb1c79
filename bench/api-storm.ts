// The API's throughput under the storm of tests/integration/api-storm.ts (`node --import
// ./node_modules/tsx/dist/loader.mjs bench/api-storm.ts`): calls per second the daemon answers for
// lifecycle actions and for cheap GETs during the storm, operations completed per second, then cheap GETs
// alone from the same clients. The storm's invariants are checked too. Progress to stderr, figures to stdout.
import { cpus, loadavg } from "node:os";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import {
  type CallKind,
  checkInvariants,
  createStormVms,
  deleteAll,
  EventRecorder,
  isLifecycle,
  runStorm,
  StormDaemon,
  vmName,
  waitQuiescent,
} from "../tests/integration/api-storm.ts";

const HELP = `Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/api-storm.ts [options]

Starts a daemon on a temp TSVM_HOME with the counting stand-in guest, creates the VMs, runs the storm of
random calls and reports the calls per second the API answered; then cheap GETs alone.

Options:
  --seed N          PRNG seed (default: random, printed)
  --clients N       concurrent API clients (default 20)
  --calls N         calls in the storm (default 1000)
  --vms N           VMs (default 10)
  --get-seconds S   length of the GET-only run (default 5)
  --format table|json
  -h, --help
`;

/** Cheap reads: answered from the daemon's memory. */
const READS: ReadonlySet<CallKind> = new Set(["get", "list"]);

function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      seed: { type: "string" },
      clients: { type: "string", default: "20" },
      calls: { type: "string", default: "1000" },
      vms: { type: "string", default: "10" },
      "get-seconds": { type: "string", default: "5" },
      format: { type: "string", default: "table" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return;
  }
  const whole = (name: string, text: string): number => {
    const n = Number(text);
    if (!Number.isInteger(n) || n < 1)
      throw new Error(`--${name} must be a whole number above 0, not '${text}'`);
    return n;
  };
  const seed = values.seed === undefined ? Math.floor(Math.random() * 2 ** 31) : whole("seed", values.seed);
  const clients = whole("clients", values.clients);
  const calls = whole("calls", values.calls);
  const vms = whole("vms", values.vms);
  const getSeconds = whole("get-seconds", values["get-seconds"]);
  if (values.format !== "table" && values.format !== "json") throw new Error("--format is table or json");

  process.stderr.write(`api-storm: seed ${seed}, ${clients} clients, ${calls} calls, ${vms} VMs\n`);
  const daemon = await StormDaemon.start();
  try {
    const { client } = daemon;
    const recorder = new EventRecorder(client);
    await createStormVms(client, vms);
    process.stderr.write("api-storm: VMs running; storm\n");
    const result = await runStorm(daemon, { seed, clients, calls, vms });
    for (const id of result.operationIds) await client.waitUntilDone(id);
    await waitQuiescent(client, 300_000);
    const violations = [...(await checkInvariants(daemon, result, recorder))];

    const lifecycle: number[] = [];
    const reads: number[] = [];
    for (const [kind, latencies] of result.latencies)
      if (isLifecycle(kind)) lifecycle.push(...latencies);
      else if (READS.has(kind)) reads.push(...latencies);
    let okOps = 0;
    let firstInsert = Number.POSITIVE_INFINITY;
    let lastEnd = 0;
    for (const id of result.operationIds) {
      const op = await client.getOperation(id);
      if (!op.error) okOps++;
      firstInsert = Math.min(firstInsert, Date.parse(op.insertTime));
      lastEnd = Math.max(lastEnd, Date.parse(op.endTime ?? op.insertTime));
    }

    process.stderr.write(`api-storm: GETs alone for ${getSeconds} s\n`);
    let gets = 0;
    const getLatencies: number[] = [];
    const until = performance.now() + getSeconds * 1000;
    const getsBegan = performance.now();
    await Promise.all(
      Array.from({ length: clients }, async (_, c) => {
        for (let i = c; performance.now() < until; i++) {
          const began = performance.now();
          if (i % 3 === 0) await client.getInstance(vmName(i % vms)).catch(() => undefined);
          else if (i % 3 === 1) await client.getHost();
          else await client.getOperation(result.operationIds[i % result.operationIds.length]!);
          getLatencies.push(performance.now() - began);
          gets++;
        }
      }),
    );
    const getsMs = performance.now() - getsBegan;

    // Lifecycle calls only, nobody waiting: how fast the API answers (checks and queues) them.
    process.stderr.write("api-storm: lifecycle calls alone\n");
    const burst = await runStorm(daemon, {
      seed: seed + 1_000_003,
      clients,
      calls,
      vms,
      lifecycleOnly: true,
    });
    for (const id of burst.operationIds) await client.waitUntilDone(id);
    await waitQuiescent(client, 300_000);
    violations.push(...(await checkInvariants(daemon, burst, recorder)));
    await recorder.stop();
    const burstLatencies = [...burst.latencies.values()].flat();
    const cleanup = await deleteAll(client);
    const leaked = daemon.vmmProcesses();

    const stormSec = result.elapsedMs / 1000;
    const opsSec = (lastEnd - firstInsert) / 1000;
    const report = {
      seed,
      clients,
      calls,
      vms,
      host: { cores: cpus().length, loadavg1: Number(loadavg()[0]!.toFixed(2)) },
      storm: {
        seconds: Number(stormSec.toFixed(2)),
        lifecycleCalls: lifecycle.length,
        lifecycleCallsPerSecond: Number((lifecycle.length / stormSec).toFixed(1)),
        lifecycleP50Ms: Number(percentile(lifecycle, 50).toFixed(1)),
        lifecycleP99Ms: Number(percentile(lifecycle, 99).toFixed(1)),
        readCalls: reads.length,
        readCallsPerSecond: Number((reads.length / stormSec).toFixed(1)),
        readP50Ms: Number(percentile(reads, 50).toFixed(1)),
        readP99Ms: Number(percentile(reads, 99).toFixed(1)),
        operations: result.operationIds.length,
        operationsSucceeded: okOps,
        operationsSeconds: Number(opsSec.toFixed(2)),
        operationsDonePerSecond: Number((result.operationIds.length / opsSec).toFixed(1)),
      },
      lifecycleAlone: {
        seconds: Number((burst.elapsedMs / 1000).toFixed(2)),
        calls: burstLatencies.length,
        callsPerSecond: Number((burstLatencies.length / (burst.elapsedMs / 1000)).toFixed(1)),
        p50Ms: Number(percentile(burstLatencies, 50).toFixed(2)),
        p99Ms: Number(percentile(burstLatencies, 99).toFixed(2)),
        operations: burst.operationIds.length,
      },
      getsAlone: {
        seconds: Number((getsMs / 1000).toFixed(2)),
        calls: gets,
        callsPerSecond: Number((gets / (getsMs / 1000)).toFixed(1)),
        p50Ms: Number(percentile(getLatencies, 50).toFixed(2)),
        p99Ms: Number(percentile(getLatencies, 99).toFixed(2)),
      },
      violations: [
        ...violations,
        ...cleanup,
        ...leaked.map((pid) => `VMM ${pid} left after deleting every VM`),
      ],
    };
    if (values.format === "json") process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    else {
      const s = report.storm;
      const g = report.getsAlone;
      const b = report.lifecycleAlone;
      process.stdout.write(
        [
          `seed ${seed}; ${clients} clients, ${calls} calls, ${vms} VMs; ${report.host.cores} cores, load ${report.host.loadavg1}`,
          `storm              ${s.seconds} s`,
          `  lifecycle calls  ${s.lifecycleCalls} answered, ${s.lifecycleCallsPerSecond}/s (p50 ${s.lifecycleP50Ms} ms, p99 ${s.lifecycleP99Ms} ms)`,
          `  cheap GETs       ${s.readCalls} answered, ${s.readCallsPerSecond}/s (p50 ${s.readP50Ms} ms, p99 ${s.readP99Ms} ms)`,
          `  operations       ${s.operations} (${s.operationsSucceeded} succeeded) done in ${s.operationsSeconds} s: ${s.operationsDonePerSecond}/s`,
          `lifecycle alone    ${b.calls} answered in ${b.seconds} s: ${b.callsPerSecond}/s (p50 ${b.p50Ms} ms, p99 ${b.p99Ms} ms; ${b.operations} operations queued)`,
          `GETs alone         ${g.calls} in ${g.seconds} s: ${g.callsPerSecond}/s (p50 ${g.p50Ms} ms, p99 ${g.p99Ms} ms)`,
          `invariants         ${report.violations.length === 0 ? "all kept" : `${report.violations.length} violated:\n  ${report.violations.join("\n  ")}`}`,
          "",
        ].join("\n"),
      );
    }
    if (report.violations.length > 0) process.exitCode = 1;
  } finally {
    await daemon.stop();
  }
}

main().catch((e: Error) => {
  process.stderr.write(`api-storm: ${e.message}\n`);
  process.exitCode = 1;
});
