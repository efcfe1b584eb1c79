// `tsvm set-machine-type NAME --machine-type TYPE`: changes a TERMINATED VM's vCPUs and memory (the API's
// instances.setMachineType, as gcloud's `compute instances set-machine-type`).

import type { Operation } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { waitUnlessAsync } from "./wait-operation.ts";

const HELP = `Usage: tsvm set-machine-type NAME --machine-type TYPE [--async] [--format table|json]
       tsvm set-machine-type NAME TYPE

Changes the machine type (vCPUs and memory) of a TERMINATED VM; it takes effect at its next start.
TYPE is one of 'tsvm machine-types' or custom-CPUS-MEMORYMIB (e.g. custom-2-512).

Options:
  --machine-type TYPE   the new machine type
  --async               print the operation id and return at once
  --format table|json   output format
`;

export async function setMachineTypeCommand(argv: string[]): Promise<number> {
  let parsed: {
    values: { "machine-type"?: string; async?: boolean; format?: string; help?: boolean };
    positionals: string[];
  };
  try {
    parsed = parseCommandLine("set-machine-type", argv, {
      allowPositionals: true,
      options: {
        "machine-type": { type: "string" },
        async: { type: "boolean" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail("set-machine-type", e, true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (message: string) =>
    fail("set-machine-type", new Error(`${message}; see 'tsvm set-machine-type --help'`), true);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return usage(format);
  const [name, typeArgument, ...extra] = positionals;
  if (name === undefined) return usage("give the VM's name");
  if (extra.length > 0) return usage(`unexpected argument '${extra[0]}'`);
  if (typeArgument !== undefined && values["machine-type"] !== undefined)
    return usage("give the machine type once (as TYPE or --machine-type)");
  const machineType = values["machine-type"] ?? typeArgument;
  if (machineType === undefined) return usage("give the machine type (--machine-type TYPE)");
  try {
    const client = await connectDaemon();
    const op: Operation = await client.setMachineType(name, machineType);
    const done = await waitUnlessAsync(client, op, { async: values.async, json: format === "json" });
    if (done === undefined) return 0;
    const vm = await client.getInstance(name);
    if (format === "json") printJson(vm);
    else
      process.stdout.write(`${vm.name} is now ${vm.machineType} (${vm.cpus} vCPU, ${vm.memoryMiB} MiB).\n`);
    return 0;
  } catch (e) {
    return fail("set-machine-type", e);
  }
}
