// `tsvm logs NAME`: the VM's serial console history; --follow keeps printing what the guest writes.

import { parseArgs } from "node:util";
import { connectDaemon } from "./daemon-connection.ts";
import { fail } from "./output.ts";

const HELP = `Usage: tsvm logs NAME [--follow]

Prints the VM's serial console output since it was created (kept in its directory as console.log);
--follow keeps printing new output until Ctrl-C.
`;

export async function logsCommand(argv: string[]): Promise<number> {
  let parsed: { values: { follow?: boolean; help?: boolean }; positionals: string[] };
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { follow: { type: "boolean", short: "f" }, help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    return fail("logs", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) return fail("logs", new Error("give exactly one VM name"), true);
  const name = parsed.positionals[0]!;
  let stopping = false;
  if (parsed.values.follow) process.once("SIGINT", () => (stopping = true));
  try {
    const client = await connectDaemon();
    let start = 0;
    for (;;) {
      const out = await client.getSerialPortOutput(name, start);
      if (out.contents) process.stdout.write(out.contents);
      start = out.next;
      if (out.contents.length > 0) continue; // more may be waiting beyond the 1 MiB page
      if (!parsed.values.follow || stopping) return 0;
      await new Promise((r) => setTimeout(r, 300));
      if (stopping) return 0;
    }
  } catch (e) {
    return fail("logs", e);
  }
}
