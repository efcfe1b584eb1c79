// `tsvm cp SRC VM:DST` and `tsvm cp VM:SRC DST`: copies files and directories into or out of a VM through
// its guest agent, without the network: a tar stream (npm `tar` here, busybox `tar` in the guest) through
// an agent session's stdin or stdout, recursive, with modes and modification times, of any size.

import { basename, resolve } from "node:path";
import { ApiError } from "../api/client.ts";
import { openSession, type SessionConnection } from "../api/session-connection.ts";
import { DEFAULT_AGENT_WAIT_SECONDS, MAX_AGENT_WAIT_SECONDS } from "../api/types.ts";
import {
  CP_ENDING_SIGNALS,
  CpError,
  hostDestination,
  hostExtraction,
  hostSource,
  packHostPath,
  tarSize,
} from "./cp-host-files.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { seconds, shellQuote } from "./exec.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { TransferProgress } from "./transfer-progress.ts";

const HELP = `Usage: tsvm cp [options] SRC VM:DST
       tsvm cp [options] VM:SRC DST

Copies a file or a directory (recursively) into or out of the RUNNING VM named VM, through its guest
agent (no network needed), keeping modes and modification times (files copied in belong to root).
DST may be an existing directory (the copy goes into it under SRC's name) or a new name in an existing
directory; a directory copied onto an existing one is merged into it. Copies to this host are written
under a temporary name and put in place only once complete. A host path with a colon: write it as ./a:b.
Needs an image built by this tsvm (guest agent version 2).

Options:
  --progress / --no-progress   show progress on stderr (default: when stderr is a terminal)
  --agent-wait S   while the guest still boots, wait up to S seconds for its agent (0-${MAX_AGENT_WAIT_SECONDS}; default ${DEFAULT_AGENT_WAIT_SECONDS})
`;

/** A guest's tar is told off in this many bytes of stderr at most (the rest is not kept). */
const MAX_GUEST_MESSAGE_BYTES = 4096;
/** The guest script's exit status for a problem it explained on stderr. */
const GUEST_REFUSED = 3;

/** `VM:PATH` (a VM name, then a non-empty path), or undefined for a host path. */
function vmPath(arg: string): { vm: string; path: string } | undefined {
  const m = /^([a-z](?:[-a-z0-9]{0,61}[a-z0-9])?):(.+)$/s.exec(arg);
  return m ? { vm: m[1]!, path: m[2]! } : undefined;
}

/**
 * The guest's side of a copy in: extract the archive from stdin into a temporary directory beside the
 * destination, then move it into place (merging a directory into an existing one); a damaged or cut-off
 * archive fails tar, and the temporary directory is removed on every way out.
 */
function guestUnpackScript(dest: string, sourceName: string): string {
  const d = shellQuote(dest);
  const n = shellQuote(sourceName);
  return [
    "set -e",
    `d=${d}; n=${n}; s=${n}`,
    'if [ -d "$d" ]; then dir="$d"; else dir=$(dirname -- "$d"); n=$(basename -- "$d"); fi',
    `[ -d "$dir" ] || { echo "$d: the directory $dir does not exist in the VM" >&2; exit ${GUEST_REFUSED}; }`,
    't=$(mktemp -d "$dir/.tsvm-cp.XXXXXX")',
    `trap 'rm -rf "$t"' EXIT`,
    'tar -x -f - -C "$t"',
    'if [ -d "$dir/$n" ] && [ ! -L "$dir/$n" ]; then',
    '  if [ -d "$t/$s" ] && [ ! -L "$t/$s" ]; then cp -a "$t/$s/." "$dir/$n/"',
    `  else echo "$dir/$n: cannot replace a directory with a file" >&2; exit ${GUEST_REFUSED}; fi`,
    'else mv -f "$t/$s" "$dir/$n"; fi',
  ].join("\n");
}

/** The guest's side of a copy out: its size (KiB, on stderr, for progress), then a tar of it on stdout. */
function guestPackScript(source: string): string {
  const s = shellQuote(source);
  return [
    `s=${s}`,
    `[ -e "$s" ] || [ -L "$s" ] || { echo "$s: no such file or directory in the VM" >&2; exit ${GUEST_REFUSED}; }`,
    'b=$(basename -- "$s")',
    'cd "$(dirname -- "$s")" || exit 1',
    'echo "tsvm-cp-size $(du -sk "$b" | cut -f1)" >&2',
    'exec tar -c -f - "$b"',
  ].join("\n");
}

/** Keeps the start of the guest's stderr, for the error line; picks out the size line. */
class GuestMessages {
  text = "";
  sizeKiB: number | undefined;

  take(bytes: Buffer): void {
    if (this.text.length < MAX_GUEST_MESSAGE_BYTES) this.text += bytes.toString("utf8");
    const m = /^tsvm-cp-size (\d+)\n/m.exec(this.text);
    if (m) {
      this.sizeKiB = Number(m[1]);
      this.text = this.text.replace(m[0], "");
    }
  }

  /** One line saying why the guest's side failed. */
  line(code: number): string {
    const lines = this.text.trim().split("\n").filter(Boolean);
    return lines.length > 0
      ? lines.join("; ").slice(0, 500)
      : `the copy failed in the VM (exit status ${code})`;
  }
}

/** How long a copy in ended by a signal waits for the guest to remove its temporary directory. */
const GUEST_CLEANUP_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

async function copyIn(conn: SessionConnection, source: string, progress: TransferProgress): Promise<void> {
  const messages = new GuestMessages();
  conn.onOutput((bytes, stream) => {
    if (stream === "stderr") messages.take(bytes);
  });
  const total = await tarSize(source);
  const { stream, failed } = await packHostPath(source);
  // A signal mid-copy ends the archive as a failure does, so the guest's tar fails and its temporary
  // directory goes (a killed session would leave it: the guest's processes get SIGKILL, no trap runs).
  let interrupted: NodeJS.Signals | undefined;
  let interrupt!: () => void;
  const interruption = new Promise<void>((resolve) => {
    interrupt = resolve;
  });
  const onSignal = (signal: NodeJS.Signals) => {
    interrupted ??= signal;
    interrupt();
  };
  for (const s of CP_ENDING_SIGNALS) process.on(s, onSignal);
  let sent = 0;
  try {
    for await (const chunk of stream) {
      if (failed() || interrupted) break;
      await Promise.race([conn.write(chunk), interruption]);
      sent += chunk.length;
      progress.update(sent, Math.max(total, sent));
    }
  } catch {
    // The pack failed; `failed` says how.
  }
  const problem = failed();
  if (problem || interrupted) {
    // An archive cut short at an entry's end would look complete: a block that is no tar header makes
    // the guest's tar fail (and its temporary directory go) instead of placing a partial copy.
    await Promise.race([conn.write(Buffer.alloc(512, 0xff)), sleep(GUEST_CLEANUP_MS)]);
  }
  conn.end();
  const code = await (interrupted
    ? Promise.race([conn.exit.catch(() => -1), sleep(GUEST_CLEANUP_MS).then(() => -1)])
    : conn.exit);
  for (const s of CP_ENDING_SIGNALS) process.off(s, onSignal);
  progress.finish();
  if (interrupted) {
    // Ends as the signal would have ended it (a shell sees 128+N).
    process.kill(process.pid, interrupted);
    await new Promise(() => {});
  }
  if (problem) throw new CpError(`${source}: ${problem} (nothing was copied)`);
  if (code !== 0) throw new CpError(messages.line(code));
}

async function copyOut(
  conn: SessionConnection,
  source: string,
  dest: string,
  progress: TransferProgress,
): Promise<void> {
  const messages = new GuestMessages();
  const name = basename(source);
  const extraction = await hostExtraction(await hostDestination(dest, name));
  let received = 0;
  try {
    conn.onOutput((bytes, stream) => {
      if (stream === "stderr") return messages.take(bytes);
      received += bytes.length;
      progress.update(
        received,
        messages.sizeKiB === undefined ? undefined : Math.max(received, messages.sizeKiB * 1024),
      );
      return extraction.write(bytes);
    });
    conn.end();
    const code = await conn.exit;
    progress.finish();
    if (code !== 0) throw new CpError(messages.line(code));
    await extraction.finish();
    await extraction.place(name);
  } catch (e) {
    await extraction.discard();
    throw e;
  }
}

export async function cpCommand(argv: string[]): Promise<number> {
  let parsed: {
    values: { progress?: boolean; "no-progress"?: boolean; "agent-wait"?: string; help?: boolean };
    positionals: string[];
  };
  let agentWaitSec: number | undefined;
  try {
    parsed = parseCommandLine("cp", argv, {
      allowPositionals: true,
      options: {
        progress: { type: "boolean" },
        "no-progress": { type: "boolean" },
        "agent-wait": { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
    agentWaitSec = seconds(parsed.values["agent-wait"], "agent-wait", 0, MAX_AGENT_WAIT_SECONDS);
  } catch (e) {
    process.stderr.write(`tsvm cp: ${(e as Error).message}\n`);
    return 2;
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (message: string) => {
    process.stderr.write(`tsvm cp: ${message}; see 'tsvm cp --help'\n`);
    return 2;
  };
  if (parsed.positionals.length !== 2) return usage("give a source and a destination");
  const [src, dst] = parsed.positionals as [string, string];
  const from = vmPath(src);
  const to = vmPath(dst);
  if (from && to) return usage("copy between a VM and this host, not between two VMs");
  if (!from && !to) return usage("one of the two paths must be VM:PATH");
  const show = parsed.values["no-progress"] ? false : parsed.values.progress ? true : undefined;
  try {
    const client = await connectDaemon();
    if (to) {
      await hostSource(src);
      const progress = TransferProgress.choose(`copying ${src} to ${dst}`, show);
      const conn = await openSession(client, to.vm, {
        command: guestUnpackScript(to.path, basename(resolve(src))),
        agentWaitSec,
      });
      await copyIn(conn, src, progress);
    } else if (from) {
      // The destination is checked before the VM is asked for anything.
      await hostDestination(dst, basename(from.path));
      const progress = TransferProgress.choose(`copying ${src} to ${dst}`, show);
      const conn = await openSession(client, from.vm, { command: guestPackScript(from.path), agentWaitSec });
      await copyOut(conn, from.path, dst, progress);
    }
    return 0;
  } catch (e) {
    const message = e instanceof ApiError || e instanceof Error ? e.message : String(e);
    process.stderr.write(`tsvm cp: ${message}\n`);
    return 1;
  }
}
