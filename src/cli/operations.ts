// `tsvm operations wait|describe|list`: the long-running operations of the daemon.

import { connectDaemon } from "./daemon-connection.ts";
import { age, fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { OperationFailedError, waitUntilDone } from "./wait-operation.ts";

const HELP = `Usage: tsvm operations <wait|describe> ID [--format table|json]
       tsvm operations list [--format table|json]

  wait ID       waits until the operation is DONE; fails with its error, if it has one
  describe ID   shows the operation
  list          the recent operations, newest first
`;

export async function operationsCommand(argv: string[]): Promise<number> {
  let parsed: { values: { format?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("operations", argv, {
      allowPositionals: true,
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    return fail("operations", e, true);
  }
  const [sub, id, ...extra] = parsed.positionals;
  if (parsed.values.help || sub === undefined) {
    process.stdout.write(HELP);
    return parsed.values.help ? 0 : 2;
  }
  const format = parseFormat(parsed.values.format);
  if (format !== "table" && format !== "json") return fail("operations", new Error(format), true);
  if (sub === "list") {
    if (id !== undefined) return fail("operations", new Error("list takes no arguments"), true);
  } else if (sub === "wait" || sub === "describe") {
    if (id === undefined || extra.length > 0)
      return fail("operations", new Error(`give one operation id to ${sub}`), true);
  } else
    return fail("operations", new Error(`unknown subcommand '${sub}'; see 'tsvm operations --help'`), true);
  try {
    const client = await connectDaemon();
    if (sub === "list") {
      const list = await client.listOperations();
      if (format === "json") printJson(list.items);
      else
        printTable(
          ["ID", "TYPE", "TARGET", "STATUS", "STARTED", "ERROR"],
          list.items.map((o) => [
            o.id,
            o.operationType,
            o.targetName,
            o.status,
            age(o.insertTime),
            o.error?.message ?? "",
          ]),
        );
      return 0;
    }
    const op = sub === "wait" ? await waitUntilDone(client, id!) : await client.getOperation(id!);
    if (format === "json") printJson(op);
    else
      process.stdout.write(
        `${op.id}: ${op.operationType} of ${op.targetName}: ${op.status}${op.error ? ` with error: ${op.error.message}` : ""}\n`,
      );
    if (sub === "wait" && op.error) {
      if (format === "json") return 1;
      throw new OperationFailedError(op);
    }
    return 0;
  } catch (e) {
    return fail("operations", e);
  }
}
