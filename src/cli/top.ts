// `tsvm top`: live per-VM figures — host CPU % of the VMM process, guest MIPS, memory, disk bytes.

import type { ApiClient } from "../api/client.ts";
import { formatMiB } from "../api/sizes.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm top [--interval SECONDS] [--iterations N] [--format table|json]

Refreshes every interval (default 2 s) until Ctrl-C, or N times. For each running VM: CPU % of one host
core used by its VMM process, its cap and its weight (its share under contention), guest MIPS, guest
memory and the VMM's resident memory, bytes read and written on its disk, bytes received and sent by its
network cards (all cards together). --format json prints one JSON array per refresh.
`;

interface Row {
  name: string;
  status: string;
  cpuPercent: number | null;
  cpuCapPercent: number | null;
  cpuWeight: number;
  mips: number | null;
  memoryMiB: number;
  rssMiB: number | null;
  diskReadBytes: number | null;
  diskWriteBytes: number | null;
  netRxBytes: number | null;
  netTxBytes: number | null;
}

const previous = new Map<string, { cpuMs: number; at: number }>();

async function sample(client: ApiClient): Promise<Row[]> {
  const { items } = await client.listInstances();
  const rows: Row[] = [];
  for (const vm of items) {
    const row: Row = {
      name: vm.name,
      status: vm.status,
      cpuPercent: null,
      cpuCapPercent: vm.cpuCapPercent,
      cpuWeight: vm.cpuWeight,
      mips: null,
      memoryMiB: vm.memoryMiB,
      rssMiB: null,
      diskReadBytes: null,
      diskWriteBytes: null,
      netRxBytes: null,
      netTxBytes: null,
    };
    if (vm.vmmPid !== null) {
      const s = await client.getStats(vm.name).then(
        (r) => r.stats,
        () => undefined,
      );
      if (s) {
        const at = performance.now();
        const before = previous.get(vm.name);
        if (before && s.vmmCpuMs !== undefined && at > before.at)
          row.cpuPercent = (100 * (s.vmmCpuMs - before.cpuMs)) / (at - before.at);
        if (s.vmmCpuMs !== undefined) previous.set(vm.name, { cpuMs: s.vmmCpuMs, at });
        if (s.instructionsPerSecond !== undefined) row.mips = s.instructionsPerSecond / 1e6;
        if (s.vmmRssBytes !== undefined) row.rssMiB = Math.round(s.vmmRssBytes / 1048576);
        row.diskReadBytes = s.diskReadBytes ?? null;
        row.diskWriteBytes = s.diskWriteBytes ?? null;
        // A VM without cards has no counters: 0, not unknown.
        row.netRxBytes = s.netRxBytes ?? 0;
        row.netTxBytes = s.netTxBytes ?? 0;
      }
    }
    rows.push(row);
  }
  return rows;
}

function bytes(n: number | null): string {
  if (n === null) return "-";
  if (n < 1024 * 1024) return `${Math.round(n / 1024)}K`;
  return `${(n / 1048576).toFixed(1)}M`;
}

export async function topCommand(argv: string[]): Promise<number> {
  let values: { interval?: string; iterations?: string; format?: string; help?: boolean };
  try {
    ({ values } = parseCommandLine("top", argv, {
      options: {
        interval: { type: "string" },
        iterations: { type: "string", short: "n" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    return fail("top", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("top", new Error(format), true);
  const interval = Number(values.interval ?? 2);
  const iterations = values.iterations === undefined ? Number.POSITIVE_INFINITY : Number(values.iterations);
  if (!(interval >= 0.2 && interval <= 3600))
    return fail("top", new Error("--interval is 0.2 to 3600 seconds"), true);
  if (!(iterations >= 1)) return fail("top", new Error("--iterations must be at least 1"), true);
  let stopping = false;
  process.once("SIGINT", () => (stopping = true));
  try {
    const client = await connectDaemon();
    await sample(client); // CPU % needs two samples
    for (let i = 0; i < iterations && !stopping; i++) {
      await new Promise((r) => setTimeout(r, interval * 1000));
      const rows = await sample(client);
      if (format === "json") {
        process.stdout.write(`${JSON.stringify(rows)}\n`);
        continue;
      }
      if (process.stdout.isTTY) process.stdout.write("\x1b[H\x1b[2J");
      printTable(
        [
          "NAME",
          "STATUS",
          "CPU%",
          "CAP",
          "WEIGHT",
          "MIPS",
          "MEMORY",
          "RSS",
          "DISK READ",
          "DISK WRITE",
          "NET RX",
          "NET TX",
        ],
        rows.map((r) => [
          r.name,
          r.status,
          r.cpuPercent === null ? "-" : r.cpuPercent.toFixed(1),
          r.cpuCapPercent === null ? "-" : `${r.cpuCapPercent}%`,
          String(r.cpuWeight),
          r.mips === null ? "-" : r.mips.toFixed(1),
          formatMiB(r.memoryMiB),
          r.rssMiB === null ? "-" : `${r.rssMiB} MiB`,
          bytes(r.diskReadBytes),
          bytes(r.diskWriteBytes),
          bytes(r.netRxBytes),
          bytes(r.netTxBytes),
        ]),
      );
    }
    return 0;
  } catch (e) {
    return fail("top", e);
  }
}
