// `tsvm start|stop|reset|suspend|resume|delete NAME`: one lifecycle action, waited on unless --async.

import type { Operation } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { waitUnlessAsync } from "./wait-operation.ts";

export type InstanceAction = "start" | "stop" | "reset" | "suspend" | "resume" | "delete";

const WHAT: Record<InstanceAction, string> = {
  start: "Starts a TERMINATED VM with a fresh boot.",
  stop: "Stops a RUNNING VM: the guest is asked to power off and forced after a timeout. Disks are kept.",
  reset: "Resets a RUNNING VM, like its reset button: the guest reboots at once.",
  suspend: "Suspends a RUNNING VM: its whole state is written to files and its CPU and memory released.",
  resume: "Resumes a SUSPENDED VM where it left off.",
  delete: "Deletes a VM with its disk and state (a RUNNING VM is stopped first).",
};

const DONE: Record<InstanceAction, string> = {
  start: "Started",
  stop: "Stopped",
  reset: "Reset",
  suspend: "Suspended",
  resume: "Resumed",
  delete: "Deleted",
};

export async function instanceActionCommand(action: InstanceAction, argv: string[]): Promise<number> {
  let parsed: { values: { format?: string; async?: boolean; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine(action, argv, {
      allowPositionals: true,
      options: {
        format: { type: "string" },
        async: { type: "boolean" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail(action, e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(
      `Usage: tsvm ${action} NAME [--async] [--format table|json]\n\n${WHAT[action]}\n` +
        "  --async   print the operation id and return at once ('tsvm operations wait ID' waits for it)\n",
    );
    return 0;
  }
  const format = parseFormat(parsed.values.format);
  if (format !== "table" && format !== "json") return fail(action, new Error(format), true);
  if (parsed.positionals.length !== 1) return fail(action, new Error("give exactly one VM name"), true);
  const name = parsed.positionals[0]!;
  try {
    const client = await connectDaemon();
    const op: Operation =
      action === "delete" ? await client.deleteInstance(name) : await client.instanceAction(name, action);
    const done = await waitUnlessAsync(client, op, { async: parsed.values.async, json: format === "json" });
    if (done === undefined) return 0;
    if (format === "json") printJson(action === "delete" ? done : await client.getInstance(name));
    else process.stdout.write(`${DONE[action]} ${name}.\n`);
    return 0;
  } catch (e) {
    return fail(action, e);
  }
}
