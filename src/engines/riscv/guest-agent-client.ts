// Host side of the tsvm guest agent protocol (docs/guest-agent.md), spoken over a byte pipe to the
// agent on the guest's virtio-console port org.tsvm.agent.0: runs commands, streams their output back,
// returns their exit status.
//
// Protocol, version 2 (version 1 is its first half): lines of ASCII ending in "\n", fields separated by
// one space; ids are decimal numbers the host picks (1 … 2^31-1); payloads are standard base64 with
// padding and no line breaks.
//   host → guest   PING <id>                    answered by PONG <id>
//                  EXEC <id> <base64 command>   runs `sh -c command` (stdin /dev/null, own session)
//                  KILL <id>                    SIGKILL to the whole session of command <id>
//            (v2)  OPEN <id> pipe|pty <cols> <rows> <base64 command | ->   a session (agent-session.ts)
//                  IN <id> <base64> | EOF <id> | WINCH <id> <cols> <rows> | SIGNAL <id> <n> | ACK <id> <n>
//                  VERSION <id>                 answered by VERSION <id> 2 (a version-1 agent ignores it)
//   guest → host   HELLO tsvm-agent 1|2         the agent (re)opened its port; whatever ran is lost
//                  PONG <id>
//                  OUT <id> <base64>            a chunk (≤ 3000 bytes) of the command's stdout
//                  ERR <id> <base64>            a chunk of its stderr
//                  EXIT <id> <status>           it ended: 0…255, 128+N when killed by signal N
//                  BUSY <id>                    refused: another command still runs (v1), too many (v2)
//            (v2)  ACK <id> <n>                 n more stdin bytes reached the command
//                  VERSION <id> <n>
// The guest is not trusted: every line is bounded and checked; a malformed line fails the commands in
// flight (which are then killed) and never throws out of `receive`; a session's unacknowledged output is
// bounded by its window, so nothing the guest sends grows the host's memory without bound.

import { type AgentSession, type AgentSessionHost, GuestAgentSession } from "./agent-session.ts";

/** Stable codes of GuestAgentError. */
export type GuestAgentErrorCode =
  | "AGENT_NOT_CONNECTED"
  | "AGENT_TIMEOUT"
  | "AGENT_BUSY"
  | "AGENT_PROTOCOL"
  | "AGENT_RESTARTED"
  | "AGENT_CLOSED"
  | "AGENT_BAD_COMMAND"
  | "AGENT_ABORTED"
  | "AGENT_UNSUPPORTED"
  | "AGENT_SESSION_ENDED";

export class GuestAgentError extends Error {
  constructor(
    readonly code: GuestAgentErrorCode,
    message: string,
  ) {
    super(message);
    this.name = "GuestAgentError";
  }
}

/** The name of the virtio-console port the agent listens on. */
export const GUEST_AGENT_PORT_NAME = "org.tsvm.agent.0";
/** The newest protocol this host speaks; it speaks every older one too. */
export const GUEST_AGENT_PROTOCOL_VERSION = 2;
/** Longest line accepted from the guest: an OUT line of 3000 bytes is about 4020. */
export const GUEST_AGENT_MAX_LINE = 8192;
/** Longest command (UTF-8 bytes); the agent reads requests a byte at a time, so keep them short. */
export const GUEST_AGENT_MAX_COMMAND = 16384;

const HELLO = /^HELLO tsvm-agent ([12])$/;
const MAX_ID = 0x7fff_ffff;
const NEWLINE = 0x0a;
/** waitForAgent's interval between pings. */
const WAIT_PING_MS = 5000;
/** How long a new exec waits for a cancelled command's EXIT before giving up with AGENT_BUSY. */
const DRAIN_MS = 10_000;

export type GuestAgentStream = "stdout" | "stderr";

export interface GuestAgentExecOptions {
  /** Each chunk of output as it arrives (the array is the caller's to keep). */
  readonly onOutput?: (bytes: Uint8Array, stream: GuestAgentStream) => void;
  /** Kill the command and reject with AGENT_TIMEOUT after this long; default: no limit. */
  readonly timeoutMs?: number;
  /** Kill the command and reject with AGENT_ABORTED when this fires (e.g. the user pressed Ctrl-C). */
  readonly signal?: AbortSignal;
}

export interface GuestAgentExecResult {
  /** The command's exit status, 0…255 (128+N when signal N ended it). */
  readonly exitCode: number;
}

export interface GuestAgentOpenOptions {
  /** A pseudo-terminal of this size (stdout and stderr both come as "stdout"); default: pipes. */
  readonly tty?: { readonly cols: number; readonly rows: number };
  /**
   * Each chunk of output (the array is the caller's to keep). The guest is told it was consumed (and may
   * send more) when the returned promise resolves; at most 256 KiB are outstanding per session.
   */
  readonly onOutput: (bytes: Uint8Array, stream: GuestAgentStream) => void | Promise<void>;
  /** Kill the session and reject `exit` with AGENT_TIMEOUT after this long; default: no limit. */
  readonly timeoutMs?: number;
  /** Kill the session and reject `exit` with AGENT_ABORTED when this fires. */
  readonly signal?: AbortSignal;
}

export type { AgentSession } from "./agent-session.ts";

export interface GuestAgentClientOptions {
  /** Told about every line from the guest that breaks the protocol (for a log); the client carries on. */
  readonly onProtocolError?: (message: string) => void;
  /**
   * Told each time the agent says HELLO: it (re)opened its port, at boot — the first boot, or a reboot the
   * guest did by itself, which its host sees nowhere else.
   */
  readonly onHello?: (version: number) => void;
}

interface RunningExec {
  readonly id: number;
  readonly onOutput: ((bytes: Uint8Array, stream: GuestAgentStream) => void) | undefined;
  readonly resolve: (result: GuestAgentExecResult) => void;
  readonly reject: (error: GuestAgentError | Error) => void;
  readonly cleanup: () => void;
}

/** Standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64");
}

const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

/** Strict standard base64 (padding required, nothing else allowed), or null when `s` is not that. */
export function decodeBase64(s: string): Uint8Array | null {
  if (s.length === 0 || s.length % 4 !== 0 || !BASE64_TEXT.test(s)) return null;
  const bytes = Buffer.from(s, "base64");
  // Non-canonical encodings (bits set in the padding) are refused: the agent's base64 never writes them.
  if (bytes.toString("base64") !== s) return null;
  return new Uint8Array(bytes); // a copy: the caller keeps it, and Buffer's pool is shared
}

/**
 * One connection to a guest agent. `send` writes bytes towards the guest (e.g. the engine's
 * sendVirtioConsole for the agent's port); feed every byte the guest writes on that port to `receive`.
 * One `exec` runs at a time; `open` sessions (version 2) run beside it, as many as the agent allows.
 */
export class GuestAgentClient {
  private readonly line = new Uint8Array(GUEST_AGENT_MAX_LINE);
  private lineLength = 0;
  /** The current line passed GUEST_AGENT_MAX_LINE: skip to its end. */
  private discarding = false;
  private nextId = 1;
  private isConnected = false;
  private closedReason: string | null = null;
  private running: RunningExec | null = null;
  /** A command that was killed (timeout, abort, protocol error) and has not reported its EXIT yet. */
  private draining: number | null = null;
  private drained: (() => void)[] = [];
  private readonly pings = new Map<number, () => void>();
  private violations = 0;
  /** The agent's protocol version: from HELLO or a VERSION probe; 0 while unknown. */
  private agentVersion = 0;
  private probing: Promise<number> | null = null;
  private readonly versionWaiters = new Map<number, (version: number) => void>();
  private readonly sessions = new Map<number, GuestAgentSession>();
  private readonly sessionHost: AgentSessionHost = {
    sendLine: (line) => this.write(`${line}\n`),
    violation: (what) => this.countViolation(what),
    forget: (id) => this.sessions.delete(id),
  };
  private readonly onProtocolError: (message: string) => void;
  private readonly onHelloListener: (version: number) => void;

  constructor(
    private readonly send: (bytes: Uint8Array) => void,
    options: GuestAgentClientOptions = {},
  ) {
    this.onProtocolError = options.onProtocolError ?? (() => {});
    this.onHelloListener = options.onHello ?? (() => {});
  }

  /** Whether the agent has shown itself (HELLO or PONG) since this client was made. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** The agent's protocol version (1: an image from before sessions, 2: this one); 0 while unknown. */
  get version(): number {
    return this.agentVersion;
  }

  /** Lines from the guest that broke the protocol so far. */
  get protocolErrors(): number {
    return this.violations;
  }

  /** Bytes the guest wrote on the agent's port, in order, split anywhere. Never throws. */
  receive(bytes: Uint8Array): void {
    let at = 0;
    while (at < bytes.length) {
      const nl = bytes.indexOf(NEWLINE, at);
      const end = nl < 0 ? bytes.length : nl;
      if (!this.discarding) {
        // Guest-controlled: the line length, bounded by the buffer; the rest of a longer line is dropped.
        if (this.lineLength + (end - at) > this.line.length) {
          this.discarding = true;
          this.lineLength = 0;
          this.violation(`a line longer than ${GUEST_AGENT_MAX_LINE} bytes`);
        } else {
          this.line.set(bytes.subarray(at, end), this.lineLength);
          this.lineLength += end - at;
        }
      }
      if (nl < 0) break;
      if (this.discarding) this.discarding = false;
      else this.handleLine(this.lineLength);
      this.lineLength = 0;
      at = nl + 1;
    }
  }

  /** Resolves when the agent answers a PING (or says HELLO) within `timeoutMs`; rejects with AGENT_TIMEOUT otherwise. */
  ping(timeoutMs = 5000): Promise<void> {
    if (this.closedReason !== null)
      return Promise.reject(new GuestAgentError("AGENT_CLOSED", this.closedReason));
    const id = this.takeId();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pings.delete(id);
        reject(new GuestAgentError("AGENT_TIMEOUT", `the guest agent did not answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pings.set(id, () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.write(`PING ${id}\n`);
      } catch (err) {
        clearTimeout(timer);
        this.pings.delete(id);
        reject(err);
      }
    });
  }

  /**
   * Pings until the agent answers (a booting guest starts it late), for at most `timeoutMs`; rejects with
   * AGENT_NOT_CONNECTED when it never does. The port keeps requests until the agent opens it and a HELLO
   * counts as an answer, so a ping every few seconds is enough (and leaves little backlog to answer).
   */
  async waitForAgent(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (this.isConnected) {
        await this.learnVersion();
        return;
      }
      if (left <= 0) break;
      try {
        await this.ping(Math.min(WAIT_PING_MS, left));
        await this.learnVersion();
        return;
      } catch (err) {
        if (!(err instanceof GuestAgentError) || err.code !== "AGENT_TIMEOUT") throw err;
      }
    }
    throw new GuestAgentError(
      "AGENT_NOT_CONNECTED",
      `no guest agent answered on virtio-console port ${GUEST_AGENT_PORT_NAME} within ${Math.round(timeoutMs / 1000)} s (is the guest still booting, or does its image lack /etc/tsvm/agent?)`,
    );
  }

  /** Runs `command` with `sh -c` in the guest; resolves with its exit status once it has ended. */
  async exec(command: string, options: GuestAgentExecOptions = {}): Promise<GuestAgentExecResult> {
    this.checkOpen();
    if (!this.isConnected) {
      throw new GuestAgentError(
        "AGENT_NOT_CONNECTED",
        `the guest agent has not answered on virtio-console port ${GUEST_AGENT_PORT_NAME} yet (is the guest still booting?)`,
      );
    }
    const bytes = this.checkCommand(command);
    if (this.running)
      throw new GuestAgentError("AGENT_BUSY", "another command is still running in the guest");
    if (options.signal?.aborted) throw new GuestAgentError("AGENT_ABORTED", "the command was cancelled");
    await this.drain();
    this.checkOpen();
    if (this.running)
      throw new GuestAgentError("AGENT_BUSY", "another command is still running in the guest");
    if (options.signal?.aborted) throw new GuestAgentError("AGENT_ABORTED", "the command was cancelled");

    const id = this.takeId();
    return new Promise<GuestAgentExecResult>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | null = null;
      const onAbort = () =>
        this.failRunning(id, new GuestAgentError("AGENT_ABORTED", "the command was cancelled"), true);
      const cleanup = () => {
        if (timer !== null) clearTimeout(timer);
        options.signal?.removeEventListener("abort", onAbort);
      };
      this.running = { id, onOutput: options.onOutput, resolve, reject, cleanup };
      if (options.timeoutMs !== undefined) {
        timer = setTimeout(
          () =>
            this.failRunning(
              id,
              new GuestAgentError(
                "AGENT_TIMEOUT",
                `the command did not finish within ${options.timeoutMs} ms and was killed`,
              ),
              true,
            ),
          options.timeoutMs,
        );
      }
      options.signal?.addEventListener("abort", onAbort);
      try {
        this.write(`EXEC ${id} ${encodeBase64(bytes)}\n`);
      } catch (err) {
        this.running = null;
        cleanup();
        reject(err);
      }
    });
  }

  /**
   * Opens a session (protocol version 2): `command` run by `sh -c`, or a login shell (`/bin/sh -l` in
   * /root) for null; on pipes, or on a pseudo-terminal with `tty` (TERM=xterm-256color). Its output goes
   * to `onOutput` with flow control; `exit` gives its status. With a version-1 agent it throws (or, while
   * the version is still being learned, `exit` rejects with) AGENT_UNSUPPORTED.
   */
  open(command: string | null, options: GuestAgentOpenOptions): AgentSession {
    this.checkOpen();
    if (!this.isConnected) {
      throw new GuestAgentError(
        "AGENT_NOT_CONNECTED",
        `the guest agent has not answered on virtio-console port ${GUEST_AGENT_PORT_NAME} yet (is the guest still booting?)`,
      );
    }
    if (this.agentVersion === 1) throw unsupported();
    const payload = command === null ? "-" : encodeBase64(this.checkCommand(command));
    const tty = options.tty;
    if (tty) {
      for (const [what, n] of [
        ["cols", tty.cols],
        ["rows", tty.rows],
      ] as const)
        if (!Number.isInteger(n) || n < 0 || n > 65535)
          throw new GuestAgentError("AGENT_BAD_COMMAND", `the terminal's ${what} must be 0…65535, not ${n}`);
    }
    const id = this.takeId();
    const line = `OPEN ${id} ${tty ? `pty ${tty.cols} ${tty.rows}` : "pipe 0 0"} ${payload}`;
    const session = new GuestAgentSession(
      id,
      this.sessionHost,
      line,
      options.onOutput,
      (code, message) => new GuestAgentError(code, message),
      { timeoutMs: options.timeoutMs, signal: options.signal },
    );
    this.sessions.set(id, session);
    if (this.agentVersion >= 2) session.start();
    else
      void this.learnVersion().then(
        (version) => {
          if (version >= 2) session.start();
          else if (version === 1) session.fail(unsupported(), false);
          else
            session.fail(
              new GuestAgentError("AGENT_TIMEOUT", "the guest agent did not say which protocol it speaks"),
              false,
            );
        },
        (err: Error) => session.fail(err, false),
      );
    return session;
  }

  /** Ends this client: whatever waits is rejected with AGENT_CLOSED (the VM stopped, the port closed). */
  close(reason = "the guest agent connection was closed"): void {
    if (this.closedReason !== null) return;
    this.closedReason = reason;
    this.isConnected = false;
    const err = new GuestAgentError("AGENT_CLOSED", reason);
    const running = this.running;
    this.running = null;
    if (running) {
      running.cleanup();
      running.reject(err);
    }
    this.failSessions(err);
    for (const done of this.versionWaiters.values()) done(0);
    this.versionWaiters.clear();
    this.endDrain();
  }

  // ---- internals ----

  /** The command's UTF-8 bytes, if the agent can carry them. */
  private checkCommand(command: string): Uint8Array {
    const bytes = new TextEncoder().encode(command);
    if (bytes.length > GUEST_AGENT_MAX_COMMAND)
      throw new GuestAgentError(
        "AGENT_BAD_COMMAND",
        `the command is ${bytes.length} bytes long; the guest agent takes at most ${GUEST_AGENT_MAX_COMMAND}`,
      );
    if (bytes.includes(0))
      throw new GuestAgentError("AGENT_BAD_COMMAND", "a command cannot contain a NUL character");
    return bytes;
  }

  /**
   * The agent's version. An agent that answered only pings (one running since before a restore) is
   * asked with VERSION followed by a PING: a version-1 agent ignores the first, and as the agent answers
   * in order, a PONG before any VERSION answer means version 1. Resolves 0 if the client closes.
   */
  private learnVersion(): Promise<number> {
    if (this.agentVersion !== 0) return Promise.resolve(this.agentVersion);
    if (this.probing) return this.probing;
    const id = this.takeId();
    const probe = new Promise<number>((resolve) => this.versionWaiters.set(id, resolve)).finally(() => {
      this.versionWaiters.delete(id);
      if (this.probing === probe) this.probing = null;
    });
    this.probing = probe;
    try {
      this.write(`VERSION ${id}\n`);
    } catch (err) {
      this.versionWaiters.delete(id);
      this.probing = null;
      return Promise.reject(err);
    }
    void this.ping(WAIT_PING_MS).then(
      () => this.settleVersion(id, this.agentVersion || 1),
      () => this.settleVersion(id, this.agentVersion),
    );
    return probe;
  }

  /** The answer to probe `probeId` (a VERSION for any other id is ignored). */
  private settleVersion(probeId: number, version: number): void {
    const done = this.versionWaiters.get(probeId);
    if (!done) return;
    this.versionWaiters.delete(probeId);
    if (version !== 0) this.agentVersion = version;
    done(version);
  }

  private failSessions(error: Error): void {
    const sessions = [...this.sessions.values()];
    this.sessions.clear();
    for (const session of sessions) session.fail(error, false);
  }

  private checkOpen(): void {
    if (this.closedReason !== null) throw new GuestAgentError("AGENT_CLOSED", this.closedReason);
  }

  private takeId(): number {
    const id = this.nextId;
    this.nextId = id === MAX_ID ? 1 : id + 1;
    return id;
  }

  private write(text: string): void {
    this.send(new TextEncoder().encode(text));
  }

  /** Waits (bounded) for a killed command's EXIT, so the agent is free for the next one. */
  private drain(): Promise<void> {
    if (this.draining === null) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.drained = this.drained.filter((f) => f !== done);
        reject(
          new GuestAgentError(
            "AGENT_BUSY",
            `the guest agent is still ending a cancelled command after ${DRAIN_MS / 1000} s`,
          ),
        );
      }, DRAIN_MS);
      const done = () => {
        clearTimeout(timer);
        resolve();
      };
      this.drained.push(done);
    });
  }

  private endDrain(): void {
    this.draining = null;
    const waiting = this.drained;
    this.drained = [];
    for (const done of waiting) done();
  }

  /** Fails command `id` if it is the one running; with `kill`, asks the agent to kill it too. */
  private failRunning(id: number, error: Error, kill: boolean): void {
    const running = this.running;
    if (!running || running.id !== id) return;
    this.running = null;
    running.cleanup();
    if (kill && this.closedReason === null) {
      this.draining = id;
      try {
        this.write(`KILL ${id}\n`);
      } catch {
        // The pipe is gone: nothing more to ask; the rejection below says what happened to the command.
      }
    }
    running.reject(error);
  }

  /** Counts and reports a violation; returns the message. */
  private countViolation(what: string): string {
    this.violations++;
    const message = `the guest agent broke the protocol: ${what}`;
    try {
      this.onProtocolError(message);
    } catch {
      // A logger's failure is not the guest's doing; it must not stop the parser.
    }
    return message;
  }

  /** A line that broke the protocol: what was in flight may have lost bytes, so it fails (and is killed). */
  private violation(what: string): void {
    const error = new GuestAgentError("AGENT_PROTOCOL", this.countViolation(what));
    if (this.running) this.failRunning(this.running.id, error, true);
    for (const session of [...this.sessions.values()]) session.fail(error, true);
  }

  private handleLine(length: number): void {
    const line = this.line;
    for (let i = 0; i < length; i++) {
      const c = line[i]!;
      // Guest-controlled: only printable ASCII is ever valid here.
      if (c < 0x20 || c > 0x7e) {
        this.violation("a line with a byte that is not printable ASCII");
        return;
      }
    }
    const text = Buffer.from(line.buffer, line.byteOffset, length).toString("latin1");
    const hello = HELLO.exec(text);
    if (hello) {
      this.onHello(Number(hello[1]));
      return;
    }
    if (text.startsWith("HELLO ")) {
      this.isConnected = false;
      this.violation(
        `'${text.slice(0, 80)}': this host speaks tsvm-agent protocol 1 to ${GUEST_AGENT_PROTOCOL_VERSION}`,
      );
      return;
    }
    const m = /^([A-Z]+) ([1-9][0-9]{0,9})(?: (.+))?$/.exec(text);
    const id = m ? Number(m[2]) : 0;
    if (!m || id > MAX_ID) {
      this.violation(`an unknown message '${text.slice(0, 80)}'`);
      return;
    }
    const [, kind, , arg] = m;
    const mine = this.running !== null && this.running.id === id;
    const session = this.sessions.get(id);
    switch (kind) {
      case "PONG": {
        if (arg !== undefined) break;
        this.isConnected = true;
        const done = this.pings.get(id);
        this.pings.delete(id);
        done?.();
        return;
      }
      case "VERSION": {
        const version = arg === undefined ? 0 : parseCount(arg);
        if (version < 2 || version > GUEST_AGENT_PROTOCOL_VERSION) break;
        this.settleVersion(id, version);
        return;
      }
      case "OUT":
      case "ERR": {
        if (arg === undefined) break;
        const bytes = decodeBase64(arg);
        if (bytes === null) break;
        const stream = kind === "OUT" ? "stdout" : "stderr";
        if (mine) this.output(bytes, stream);
        else session?.output(bytes, stream);
        return;
      }
      case "ACK": {
        const count = arg === undefined ? -1 : parseCount(arg);
        if (count < 0) break;
        session?.stdinAcknowledged(count);
        return;
      }
      case "EXIT": {
        if (arg === undefined || !/^(0|[1-9][0-9]{0,2})$/.test(arg) || Number(arg) > 255) break;
        if (this.draining === id) this.endDrain();
        if (mine) {
          const running = this.running!;
          this.running = null;
          running.cleanup();
          running.resolve({ exitCode: Number(arg) });
        }
        session?.exited(Number(arg));
        return;
      }
      case "BUSY": {
        if (arg !== undefined) break;
        if (mine)
          this.failRunning(
            id,
            new GuestAgentError("AGENT_BUSY", "the guest agent is still running another command"),
            false,
          );
        session?.refused();
        return;
      }
    }
    this.violation(`a malformed message '${text.slice(0, 80)}'`);
  }

  private output(bytes: Uint8Array, stream: GuestAgentStream): void {
    const running = this.running!;
    try {
      running.onOutput?.(bytes, stream);
    } catch (err) {
      // The caller's own failure (say its output stream closed): stop the command rather than lose output.
      this.failRunning(running.id, err instanceof Error ? err : new Error(String(err)), true);
    }
  }

  /**
   * The agent (re)opened its port: after a guest reboot it knows nothing of before, so a command in
   * flight is lost (and killed, in case the agent only reopened the port and it still runs); nothing is
   * drained, as an EXIT may never come.
   */
  private onHello(version: number): void {
    this.isConnected = true;
    this.agentVersion = version;
    for (const done of [...this.versionWaiters.values()]) done(version);
    this.versionWaiters.clear();
    // The agent is there: that answers every ping waiting.
    const pings = [...this.pings.values()];
    this.pings.clear();
    for (const done of pings) done();
    if (this.running)
      this.failRunning(
        this.running.id,
        new GuestAgentError("AGENT_RESTARTED", "the guest agent restarted while the command ran"),
        true,
      );
    this.failSessions(
      new GuestAgentError("AGENT_RESTARTED", "the guest agent restarted while the session ran"),
    );
    this.endDrain();
    this.onHelloListener(version);
  }
}

function unsupported(): GuestAgentError {
  return new GuestAgentError(
    "AGENT_UNSUPPORTED",
    "the guest agent is version 1; shell, stdin and cp need an image built by this tsvm",
  );
}

/** A decimal count 0 … 2^31-1 without leading zeros, or -1. */
function parseCount(s: string): number {
  if (!/^(0|[1-9][0-9]{0,9})$/.test(s)) return -1;
  const n = Number(s);
  return n > MAX_ID ? -1 : n;
}
