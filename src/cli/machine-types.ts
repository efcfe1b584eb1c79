// `tsvm machine-types`: the predefined machine types (name, vCPUs, memory), as a table or JSON.

import { formatMiB } from "../api/sizes.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm machine-types [--format table|json]

Lists the predefined machine types. Any custom-CPUS-MEMORYMIB (e.g. custom-2-512) is accepted as well.
`;

export async function machineTypesCommand(argv: string[]): Promise<number> {
  let values: { format?: string; help?: boolean };
  try {
    ({ values } = parseCommandLine("machine-types", argv, {
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    return fail("machine-types", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("machine-types", new Error(format), true);
  try {
    const { items } = await (await connectDaemon()).listMachineTypes();
    if (format === "json") printJson(items);
    else
      printTable(
        ["NAME", "CPUS", "MEMORY", "DESCRIPTION"],
        items.map((t) => [t.name, String(t.cpus), formatMiB(t.memoryMiB), t.description]),
      );
    return 0;
  } catch (e) {
    return fail("machine-types", e);
  }
}
