// `tsvm hosts list`: the cluster's hosts (name, status UP/DRAINING/DOWN, capacity, what is used, VMs), as a
// table or JSON; a daemon not in a cluster shows its one host, 'local' (docs/cluster.md).

import { formatMiB } from "../api/sizes.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm hosts list [--format table|json]

Lists the hosts of the cluster the daemon belongs to: status (UP; DRAINING: takes no new VMs; DOWN: its
lease expired), vCPUs and memory used of its capacity, its VMs, and whether it sees the cluster's shared
storage (SHARED: a DOWN host's VMs there may restart on it). A daemon not in a cluster is one host, 'local'.
`;

export async function hostsCommand(argv: string[]): Promise<number> {
  let values: { format?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseCommandLine("hosts", argv, {
      allowPositionals: true,
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    return fail("hosts", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 1 || positionals[0] !== "list")
    return fail("hosts", new Error("the one subcommand is 'list'; see 'tsvm hosts --help'"), true);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("hosts", new Error(format), true);
  try {
    const { items } = await (await connectDaemon()).listHosts();
    if (format === "json") printJson(items);
    else
      printTable(
        ["NAME", "STATUS", "CPUS", "MEMORY", "SHARED", "VMS"],
        items.map((h) => [
          h.name,
          h.status,
          `${h.used.vcpus}/${h.capacity.vcpus}`,
          `${formatMiB(h.used.memoryMiB)}/${formatMiB(h.capacity.memoryMiB)}`,
          h.sharedStorage ? "yes" : "no",
          h.vms.join(",") || "-",
        ]),
      );
    return 0;
  } catch (e) {
    return fail("hosts", e);
  }
}
