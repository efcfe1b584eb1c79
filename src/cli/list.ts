// `tsvm list`: the VMs of the data directory, as a table or JSON.

import { formatMiB } from "../api/sizes.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { age, fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm list [--format table|json]

Lists the VMs: name, status, engine, vCPUs, memory and when each was created and last started.
`;

export async function listCommand(argv: string[]): Promise<number> {
  let values: { format?: string; help?: boolean };
  try {
    ({ values } = parseCommandLine("list", argv, {
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    return fail("list", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("list", new Error(format), true);
  try {
    const client = await connectDaemon();
    const list = await client.listInstances();
    if (format === "json") {
      printJson(list.items);
    } else {
      printTable(
        ["NAME", "STATUS", "ENGINE", "CPUS", "MEMORY", "CREATED", "STARTED"],
        list.items.map((vm) => [
          vm.name,
          vm.status,
          vm.engine,
          String(vm.cpus),
          formatMiB(vm.memoryMiB),
          age(vm.creationTimestamp),
          age(vm.lastStartTimestamp),
        ]),
      );
    }
    for (const bad of list.unreachable)
      process.stderr.write(`tsvm list: ${bad.name}: ${bad.message} ('tsvm delete ${bad.name}' removes it)\n`);
    return 0;
  } catch (e) {
    return fail("list", e);
  }
}
