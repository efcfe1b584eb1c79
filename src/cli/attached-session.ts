// A guest session (session-connection.ts) attached to this process's standard streams, as `tsvm shell` and
// `tsvm exec` use it: output to stdout/stderr with back-pressure, stdin forwarded (and its end passed on),
// and for a terminal session the host terminal in raw mode — restored on every way out (the end, an error,
// a signal, an exception) — with its window size sent at the start and on every SIGWINCH.

import type { SessionConnection } from "../api/session-connection.ts";

/** Signals that end tsvm (and with it the session) rather than reach the guest. */
const ENDING_SIGNALS = ["SIGTERM", "SIGHUP"] as const;
const SIGNAL_NUMBERS: Readonly<Record<string, number>> = { SIGINT: 2, SIGHUP: 1, SIGTERM: 15 };

export interface AttachOptions {
  /** The session has a terminal: put ours in raw mode (when stdin is one) and pass its size on. */
  readonly tty: boolean;
  /** Forward our stdin; otherwise the session's stdin is closed at once (pipes) or left open (a terminal). */
  readonly stdin: boolean;
}

/** The terminal size to open a session with: stdout's when it is a terminal, else 80×24. */
export function terminalSize(): { cols: number; rows: number } {
  const out = process.stdout;
  return out.isTTY && out.columns > 0 && out.rows > 0
    ? { cols: out.columns, rows: out.rows }
    : { cols: 80, rows: 24 };
}

/** Bytes to one of our output streams; a promise when it is full (the session then holds back). */
function writeOut(stream: NodeJS.WriteStream, bytes: Buffer): Promise<void> | undefined {
  if (stream.write(bytes)) return undefined;
  return new Promise((resolve) => {
    const done = () => {
      stream.off("drain", done);
      stream.off("close", done);
      stream.off("error", done);
      resolve();
    };
    stream.on("drain", done);
    stream.on("close", done);
    stream.on("error", done);
  });
}

/**
 * Runs `conn` attached to our streams until it ends; resolves with its exit status. Rejects (with the
 * terminal restored) when the connection failed; a SIGTERM or SIGHUP closes the session and resolves
 * 128 + the signal's number.
 */
export async function attachSession(conn: SessionConnection, options: AttachOptions): Promise<number> {
  const stdin = process.stdin;
  const raw = options.tty && stdin.isTTY === true;
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    if (raw && stdin.isRaw) stdin.setRawMode(false);
  };
  // The last resort: an exit from anywhere (an exception, process.exit) still gives the terminal back.
  process.once("exit", restore);
  let endedBy: string | undefined;
  const onEnding = (signal: string) => {
    endedBy = signal;
    conn.close();
  };
  // Outside raw mode Ctrl-C is a SIGINT to us: it goes to the guest's command, as typing it would.
  const onSigint = () => conn.signal(SIGNAL_NUMBERS.SIGINT!);
  const onWinch = () => {
    const size = terminalSize();
    conn.resize(size.cols, size.rows);
  };
  const onData = (chunk: Buffer) => {
    // One chunk at a time: the guest takes stdin at its own pace.
    stdin.pause();
    void conn.write(chunk).then(() => stdin.resume());
  };
  const onEnd = () => conn.end();
  for (const s of ENDING_SIGNALS) process.on(s, onEnding);
  process.on("SIGINT", onSigint);
  try {
    conn.onOutput((bytes, stream) => writeOut(stream === "stderr" ? process.stderr : process.stdout, bytes));
    if (raw) stdin.setRawMode(true);
    if (options.tty && process.stdout.isTTY) {
      process.on("SIGWINCH", onWinch);
      onWinch();
    }
    if (options.stdin) {
      stdin.on("data", onData);
      stdin.once("end", onEnd);
      stdin.resume();
    } else if (!options.tty) conn.end();
    const code = await conn.exit.catch((e: unknown) => {
      if (endedBy) return 128 + (SIGNAL_NUMBERS[endedBy] ?? 0);
      throw e;
    });
    return endedBy ? 128 + (SIGNAL_NUMBERS[endedBy] ?? 0) : code;
  } finally {
    restore();
    process.off("exit", restore);
    for (const s of ENDING_SIGNALS) process.off(s, onEnding);
    process.off("SIGINT", onSigint);
    process.off("SIGWINCH", onWinch);
    stdin.off("data", onData);
    stdin.off("end", onEnd);
    stdin.pause();
    conn.close();
  }
}
