// `tsvm describe NAME`: one VM in full, with its VMM's pid and its recorded transitions.

import { formatMiB } from "../api/sizes.ts";
import type { Snapshot } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { formatPortForward } from "../api/schemas/port-forward-text.ts";
import { printSnapshotTree } from "./snapshot.ts";

const HELP = `Usage: tsvm describe NAME [--format table|json]

Shows one VM: its definition, identity (hostname, machine id), network cards (eth0 first: network, MAC,
private address) and port forwards, status, VMM process id, the history of its transitions and its
snapshots (JSON: the Instance with a "snapshots" array).
`;

export async function describeCommand(argv: string[]): Promise<number> {
  let parsed: { values: { format?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("describe", argv, {
      allowPositionals: true,
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    return fail("describe", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(parsed.values.format);
  if (format !== "table" && format !== "json") return fail("describe", new Error(format), true);
  if (parsed.positionals.length !== 1) return fail("describe", new Error("give exactly one VM name"), true);
  try {
    const client = await connectDaemon();
    const vm = await client.getInstance(parsed.positionals[0]!);
    // A VM is described even when its snapshot list is unusable; the line says why it is missing.
    let snapshots: Snapshot[] | undefined;
    let unusable = "";
    try {
      snapshots = (await client.listSnapshots(vm.name)).items;
    } catch (e) {
      unusable = (e as Error).message;
    }
    if (format === "json") {
      printJson(snapshots ? { ...vm, snapshots } : vm);
      return 0;
    }
    const lines = [
      `name:               ${vm.name}`,
      `id:                 ${vm.id}`,
      `status:             ${vm.status}${vm.statusMessage ? ` (${vm.statusMessage})` : ""}`,
      `machine type:       ${vm.machineType} (${vm.cpus} vCPU, ${formatMiB(vm.memoryMiB)})`,
      `hostname:           ${vm.identity.hostname}`,
      `machine id:         ${vm.identity.machineId}`,
      `engine:             ${vm.engine}`,
      `image:              ${vm.image} (disk ${formatMiB(vm.diskMiB)})`,
      `automatic restart:  ${vm.automaticRestart ? "on" : "off"}`,
      `host maintenance:   ${vm.onHostMaintenance ?? "MIGRATE"}`,
      ...(vm.sharedStorage ? ["storage:            the cluster's shared storage"] : []),
      `cpu cap / weight:   ${vm.cpuCapPercent === null ? "none" : `${vm.cpuCapPercent}%`} / ${vm.cpuWeight}`,
      `network cards:      ${vm.networkInterfaces.length === 0 ? "none" : ""}`.trimEnd(),
      ...vm.networkInterfaces.map(
        (nic, i) => `  eth${i}  ${nic.network.padEnd(12)} ${nic.mac}${nic.ipv4 ? `  ${nic.ipv4}` : ""}`,
      ),
      `port forwards:      ${vm.forwards.length === 0 ? "none" : ""}`.trimEnd(),
      ...vm.forwards.map((f) => `  ${formatPortForward(f)}`),
      `vmm pid:            ${vm.vmmPid ?? "-"}`,
      `created:            ${vm.creationTimestamp}`,
      `last start:         ${vm.lastStartTimestamp ?? "-"}`,
      `last stop:          ${vm.lastStopTimestamp ?? "-"}`,
      `last suspend:       ${vm.lastSuspendedTimestamp ?? "-"}`,
      "history:",
      ...vm.history.map((h) => `  ${h.at}  ${(h.from ?? "-").padEnd(12)} → ${h.to.padEnd(12)} ${h.reason}`),
    ];
    process.stdout.write(`${lines.join("\n")}\nsnapshots:${snapshots ? "" : ` unusable (${unusable})`}\n`);
    if (snapshots) printSnapshotTree(snapshots);
    return 0;
  } catch (e) {
    return fail("describe", e);
  }
}
