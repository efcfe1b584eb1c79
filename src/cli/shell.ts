// `tsvm shell NAME`: an interactive login shell in the VM through its guest agent (no network needed): a
// pseudo-terminal in the guest, this terminal in raw mode meanwhile, and the shell's exit status as ours.

import { ApiError } from "../api/client.ts";
import { openSession } from "../api/session-connection.ts";
import { DEFAULT_AGENT_WAIT_SECONDS, MAX_AGENT_WAIT_SECONDS } from "../api/types.ts";
import { attachSession, terminalSize } from "./attached-session.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { seconds } from "./exec.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm shell NAME [--agent-wait S]

Opens an interactive login shell (/bin/sh -l, in /root) in the RUNNING VM NAME through its guest agent,
in a pseudo-terminal: this terminal is in raw mode until the shell ends (every key, Ctrl-C included, goes
to the guest), and its window size follows this terminal's. Needs an image built by this tsvm (guest
agent version 2).

Options:
  --agent-wait S   while the guest still boots, wait up to S seconds for its agent (0-${MAX_AGENT_WAIT_SECONDS}; default ${DEFAULT_AGENT_WAIT_SECONDS})

Exit status: the shell's own (0-255), 2 for a usage error, 255 when no shell could be opened (unknown VM,
VM not RUNNING, agent not up yet, …).
`;

export async function shellCommand(argv: string[]): Promise<number> {
  let parsed: { values: { "agent-wait"?: string; help?: boolean }; positionals: string[] };
  let agentWaitSec: number | undefined;
  try {
    parsed = parseCommandLine("shell", argv, {
      allowPositionals: true,
      options: { "agent-wait": { type: "string" }, help: { type: "boolean", short: "h" } },
    });
    agentWaitSec = seconds(parsed.values["agent-wait"], "agent-wait", 0, MAX_AGENT_WAIT_SECONDS);
  } catch (e) {
    process.stderr.write(`tsvm shell: ${(e as Error).message}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) {
    process.stderr.write("tsvm shell: give exactly one VM name; see 'tsvm shell --help'\n");
    return 2;
  }
  try {
    const client = await connectDaemon();
    const conn = await openSession(client, parsed.positionals[0]!, { tty: terminalSize(), agentWaitSec });
    return await attachSession(conn, { tty: true, stdin: true });
  } catch (e) {
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`tsvm shell: ${message}\n`);
    return 255;
  }
}
