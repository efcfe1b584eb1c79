// `tsvm exec NAME [-i] [-t] [--timeout S] [--agent-wait S] -- CMD…`: runs CMD in the VM's guest through
// its guest agent, writes the command's stdout and stderr to ours as they arrive, and exits with its
// status. With standard input to forward (it is not a terminal, or -i) or a terminal (-t) it runs as an
// agent session (attached-session.ts); otherwise as the API's plain exec.

import { ApiError } from "../api/client.ts";
import {
  DEFAULT_AGENT_WAIT_SECONDS,
  MAX_AGENT_WAIT_SECONDS,
  MAX_EXEC_TIMEOUT_SECONDS,
} from "../api/types.ts";
import { openSession } from "../api/session-connection.ts";
import { attachSession, terminalSize } from "./attached-session.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm exec NAME [-i] [-t] [--timeout S] [--agent-wait S] -- COMMAND [ARG…]

Runs COMMAND with its arguments in the RUNNING VM NAME, through the guest agent of its image (the words
are passed as they are, so use 'sh -c "…"' for pipes and redirections). Its stdout and stderr go to
this command's stdout and stderr as they arrive. Standard input is forwarded to it when it is not a
terminal (echo hi | tsvm exec web -- cat), or with -i; otherwise the command's is empty. Ctrl-C
interrupts it in the guest (SIGINT).

Options:
  -i, --interactive  forward standard input even when it is a terminal
  -t, --tty        run COMMAND in a pseudo-terminal (this terminal in raw mode meanwhile; its size follows)
  --timeout S      kill the command after S seconds (1-${MAX_EXEC_TIMEOUT_SECONDS}; default: no limit)
  --agent-wait S   while the guest still boots, wait up to S seconds for its agent (0-${MAX_AGENT_WAIT_SECONDS}; default ${DEFAULT_AGENT_WAIT_SECONDS})

Exit status: the command's own (0-255; 128+N when signal N ended it), 2 for a usage error, 255 when
the command could not be run (unknown VM, VM not RUNNING, no agent answering, timeout, …).
`;

/** Exit status when tsvm itself failed, as ssh does: the command's own statuses keep 0-254 (mostly). */
const EXEC_FAILED = 255;

/** One word for `sh -c`: left as it is when it has nothing special to sh, else single-quoted. */
export function shellQuote(word: string): string {
  if (/^[A-Za-z0-9_./=:,@%+-]+$/.test(word)) return word;
  return `'${word.replaceAll("'", `'\\''`)}'`;
}

/** One line on stderr, pointing at the help (messages from parseCommandLine already do). */
function usage(message: string): number {
  const hint = message.endsWith("--help'") ? "" : "; see 'tsvm exec --help'";
  process.stderr.write(`tsvm exec: ${message}${hint}\n`);
  return 2;
}

export function seconds(
  value: string | undefined,
  option: string,
  min: number,
  max: number,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || n < min || n > max)
    throw new Error(`--${option} must be a whole number of seconds from ${min} to ${max}`);
  return n;
}

export async function execCommand(argv: string[]): Promise<number> {
  const dashes = argv.indexOf("--");
  const own = dashes < 0 ? argv : argv.slice(0, dashes);
  const words = dashes < 0 ? [] : argv.slice(dashes + 1);
  let parsed: {
    values: { timeout?: string; "agent-wait"?: string; interactive?: boolean; tty?: boolean; help?: boolean };
    positionals: string[];
  };
  let timeoutSec: number | undefined;
  let agentWaitSec: number | undefined;
  try {
    parsed = parseCommandLine("exec", own, {
      allowPositionals: true,
      options: {
        timeout: { type: "string" },
        "agent-wait": { type: "string" },
        interactive: { type: "boolean", short: "i" },
        tty: { type: "boolean", short: "t" },
        help: { type: "boolean", short: "h" },
      },
    });
    timeoutSec = seconds(parsed.values.timeout, "timeout", 1, MAX_EXEC_TIMEOUT_SECONDS);
    agentWaitSec = seconds(parsed.values["agent-wait"], "agent-wait", 0, MAX_AGENT_WAIT_SECONDS);
  } catch (e) {
    return usage((e as Error).message);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) return usage("give exactly one VM name before '--'");
  if (words.length === 0) return usage("give the command after '--'");
  const name = parsed.positionals[0]!;
  const command = words.map(shellQuote).join(" ");
  const tty = parsed.values.tty === true;
  const stdin = parsed.values.interactive === true || process.stdin.isTTY !== true;
  if (tty || stdin) {
    const status = await execSession(
      name,
      command,
      { tty, stdin, timeoutSec, agentWaitSec },
      !parsed.values.interactive && !tty,
    );
    if (status !== undefined) return status;
  }

  const abort = new AbortController();
  const onSigint = () => abort.abort();
  process.once("SIGINT", onSigint);
  try {
    const client = await connectDaemon();
    const { exitCode } = await client.exec(
      name,
      { command, timeoutSec, agentWaitSec },
      (bytes, stream) => (stream === "stderr" ? process.stderr : process.stdout).write(bytes),
      abort.signal,
      (dropped) =>
        process.stderr.write(
          `tsvm exec: ${dropped} bytes of the command's output were dropped here (read too slowly)\n`,
        ),
    );
    return exitCode;
  } catch (e) {
    if (abort.signal.aborted) return 130; // as a shell reports a command ended by SIGINT
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`tsvm exec: ${message}\n`);
    return EXEC_FAILED;
  } finally {
    process.off("SIGINT", onSigint);
  }
}

/**
 * Runs the command as an agent session (stdin, a terminal); undefined when the guest agent is version 1
 * and `fallBack` allows the plain exec instead (stdin then not forwarded, as with older images).
 */
async function execSession(
  name: string,
  command: string,
  options: { tty: boolean; stdin: boolean; timeoutSec?: number; agentWaitSec?: number },
  fallBack: boolean,
): Promise<number | undefined> {
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  try {
    const client = await connectDaemon();
    const conn = await openSession(client, name, {
      command,
      tty: options.tty ? terminalSize() : undefined,
      agentWaitSec: options.agentWaitSec,
    });
    if (options.timeoutSec !== undefined)
      timer = setTimeout(() => {
        timedOut = true;
        conn.close();
      }, options.timeoutSec * 1000);
    const code = await attachSession(conn, { tty: options.tty, stdin: options.stdin });
    if (timedOut)
      throw new Error(
        `the command did not finish within ${(options.timeoutSec ?? 0) * 1000} ms and was killed`,
      );
    return code;
  } catch (e) {
    if (timedOut)
      e = new Error(
        `the command did not finish within ${(options.timeoutSec ?? 0) * 1000} ms and was killed`,
      );
    // agent-unavailable: an engine without an agent; the plain exec says so in its own words.
    if (fallBack && e instanceof ApiError && e.reason === "agent-unavailable") return undefined;
    if (fallBack && e instanceof ApiError && e.reason === "agent-unsupported") {
      process.stderr.write("tsvm exec: the guest agent is version 1: standard input is not forwarded\n");
      return undefined;
    }
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`tsvm exec: ${message}\n`);
    return EXEC_FAILED;
  } finally {
    clearTimeout(timer);
  }
}
