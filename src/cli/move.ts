// `tsvm move NAME --host HOST`: moves a VM to another host of the cluster (the API's instances.move,
// docs/cluster.md "Moving VMs") and says what the move took.

import type { Operation } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { waitUnlessAsync } from "./wait-operation.ts";

const HELP = `Usage: tsvm move NAME --host HOST [--async] [--format table|json]

Moves a VM to another host of the cluster (docs/cluster.md). A TERMINATED or SUSPENDED VM goes as its
files; a RUNNING one is suspended, sent with its memory, and resumes on HOST where it left off.

Options:
  --host HOST           the host to move to (one of 'tsvm hosts list', UP, with room)
  --async               print the operation id and return at once
  --format table|json   output format (json: the move operation, with its figures)
`;

export async function moveCommand(argv: string[]): Promise<number> {
  let parsed: {
    values: { host?: string; async?: boolean; format?: string; help?: boolean };
    positionals: string[];
  };
  try {
    parsed = parseCommandLine("move", argv, {
      allowPositionals: true,
      options: {
        host: { type: "string" },
        async: { type: "boolean" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail("move", e, true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (message: string) => fail("move", new Error(`${message}; see 'tsvm move --help'`), true);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return usage(format);
  const [name, ...extra] = positionals;
  if (name === undefined) return usage("give the VM's name");
  if (extra.length > 0) return usage(`unexpected argument '${extra[0]}'`);
  if (values.host === undefined || values.host === "") return usage("give the host to move to (--host HOST)");
  try {
    const client = await connectDaemon();
    const op: Operation = await client.moveInstance(name, values.host);
    const done = await waitUnlessAsync(client, op, { async: values.async, json: format === "json" });
    if (done === undefined) return 0;
    if (format === "json") printJson(done);
    else process.stdout.write(`${name}: ${done.statusMessage}\n`);
    return 0;
  } catch (e) {
    return fail("move", e);
  }
}
