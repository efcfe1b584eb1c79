// `tsvm events [NAME]`: the VMs' transitions, resets and deletions, and with --follow the new ones as they
// happen.

import type { VmEvent } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm events [NAME] [--follow] [--format table|json]

Lists the recorded events (of one VM when NAME is given); --follow keeps printing new ones until Ctrl-C.
With --format json, one JSON object per line.
`;

export async function eventsCommand(argv: string[]): Promise<number> {
  let parsed: { values: { format?: string; follow?: boolean; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("events", argv, {
      allowPositionals: true,
      options: {
        format: { type: "string" },
        follow: { type: "boolean", short: "f" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail("events", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(parsed.values.format);
  if (format !== "table" && format !== "json") return fail("events", new Error(format), true);
  if (parsed.positionals.length > 1) return fail("events", new Error("give at most one VM name"), true);
  const name = parsed.positionals[0];
  const print = (e: VmEvent) =>
    process.stdout.write(
      format === "json"
        ? `${JSON.stringify(e)}\n`
        : `${e.time}  ${e.vmName}  ${e.type === "transition" ? `${e.from ?? "-"} → ${e.to}` : e.type}  ${e.message}\n`,
    );
  try {
    const client = await connectDaemon();
    if (!parsed.values.follow) {
      let after = 0;
      for (;;) {
        const page = await client.listEvents(after, name);
        page.items.forEach(print);
        if (page.items.length === 0) break;
        after = page.items[page.items.length - 1]!.seq;
      }
      return 0;
    }
    const abort = new AbortController();
    process.once("SIGINT", () => abort.abort());
    await client.watchEvents(0, print, abort.signal, name, (dropped) =>
      process.stderr.write(
        `tsvm events: ${dropped} events were lost here (this reader fell too far behind)\n`,
      ),
    );
    return 0;
  } catch (e) {
    return fail("events", e);
  }
}
