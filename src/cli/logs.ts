// `tsvm logs NAME`: the VM's serial console history; --follow keeps printing what the guest writes.

import { SERIAL_PORT_PAGE_BYTES } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm logs NAME [--follow]

Prints the VM's serial console output (kept in its directory as console.log and, once that reaches
4 MiB, console.log.1: only the last 4-8 MiB are kept; older output is gone, which stderr says);
--follow keeps printing new output until Ctrl-C.
`;

export async function logsCommand(argv: string[]): Promise<number> {
  let parsed: { values: { follow?: boolean; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("logs", argv, {
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
      // Only the last 4-8 MiB are kept: what lay before was rotated away (or, following, printed faster
      // than we read). Said on stderr so that stdout stays the guest's bytes.
      if (out.start > start)
        process.stderr.write(
          `tsvm logs: ${out.start - start} bytes of older output are no longer kept; showing from byte ${out.start}\n`,
        );
      if (out.contents) process.stdout.write(out.contents);
      start = out.next;
      // A full page means more may be waiting; a shorter one reached the end as it was (a guest printing
      // without end must not keep a plain `logs` from returning).
      if (out.next - out.start >= SERIAL_PORT_PAGE_BYTES) continue;
      if (out.contents.length > 0 && parsed.values.follow) continue;
      if (!parsed.values.follow || stopping) return 0;
      await new Promise((r) => setTimeout(r, 300));
      if (stopping) return 0;
    }
  } catch (e) {
    return fail("logs", e);
  }
}
