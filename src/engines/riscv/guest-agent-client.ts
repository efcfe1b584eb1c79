// Host side of the tsvm guest agent protocol (docs/guest-agent.md), spoken over a byte pipe to the
// agent on the guest's virtio-console port org.tsvm.agent.0: runs commands, streams their output back,
// returns their exit status.
//
// Protocol, version 1: lines of ASCII ending in "\n", fields separated by one space; ids are decimal
// numbers the host picks (1 … 2^31-1); payloads are standard base64 with padding and no line breaks.
//   host → guest   PING <id>                    answered by PONG <id>
//                  EXEC <id> <base64 command>   runs `sh -c command` (stdin /dev/null, own session)
//                  KILL <id>                    SIGKILL to the whole session of command <id>
//   guest → host   HELLO tsvm-agent 1           the agent (re)opened its port; a command in flight is lost
//                  PONG <id>
//                  OUT <id> <base64>            a chunk (≤ 3000 bytes) of the command's stdout
//                  ERR <id> <base64>            a chunk of its stderr
//                  EXIT <id> <status>           it ended: 0…255, 128+N when killed by signal N
//                  BUSY <id>                    refused: another command is still running
// The guest is not trusted: every line is bounded and checked; a malformed line fails the command in
// flight (which is then killed) and never throws out of `receive`.

/** Stable codes of GuestAgentError. */
export type GuestAgentErrorCode =
  | "AGENT_NOT_CONNECTED"
  | "AGENT_TIMEOUT"
  | "AGENT_BUSY"
  | "AGENT_PROTOCOL"
  | "AGENT_RESTARTED"
  | "AGENT_CLOSED"
  | "AGENT_BAD_COMMAND"
  | "AGENT_ABORTED";

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
export const GUEST_AGENT_PROTOCOL_VERSION = 1;
/** Longest line accepted from the guest: an OUT line of 3000 bytes is about 4020. */
export const GUEST_AGENT_MAX_LINE = 8192;
/** Longest command (UTF-8 bytes); the agent reads requests a byte at a time, so keep them short. */
export const GUEST_AGENT_MAX_COMMAND = 16384;

const HELLO = `HELLO tsvm-agent ${GUEST_AGENT_PROTOCOL_VERSION}`;
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

export interface GuestAgentClientOptions {
  /** Told about every line from the guest that breaks the protocol (for a log); the client carries on. */
  readonly onProtocolError?: (message: string) => void;
}

interface RunningExec {
  readonly id: number;
  readonly onOutput: ((bytes: Uint8Array, stream: GuestAgentStream) => void) | undefined;
  readonly resolve: (result: GuestAgentExecResult) => void;
  readonly reject: (error: GuestAgentError | Error) => void;
  readonly cleanup: () => void;
}

const BASE64_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const BASE64_VALUE = new Int8Array(128).fill(-1);
for (let i = 0; i < 64; i++) BASE64_VALUE[BASE64_ALPHABET.charCodeAt(i)] = i;

/** Standard base64 with padding. */
export function encodeBase64(bytes: Uint8Array): string {
  let out = "";
  for (let i = 0; i < bytes.length; i += 3) {
    const b0 = bytes[i]!;
    const b1 = i + 1 < bytes.length ? bytes[i + 1]! : 0;
    const b2 = i + 2 < bytes.length ? bytes[i + 2]! : 0;
    out += BASE64_ALPHABET[b0 >> 2]! + BASE64_ALPHABET[((b0 & 3) << 4) | (b1 >> 4)]!;
    out += i + 1 < bytes.length ? BASE64_ALPHABET[((b1 & 15) << 2) | (b2 >> 6)]! : "=";
    out += i + 2 < bytes.length ? BASE64_ALPHABET[b2 & 63]! : "=";
  }
  return out;
}

/** Strict standard base64 (padding required, nothing else allowed), or null when `s` is not that. */
export function decodeBase64(s: string): Uint8Array | null {
  if (s.length === 0 || s.length % 4 !== 0) return null;
  const pad = s.endsWith("==") ? 2 : s.endsWith("=") ? 1 : 0;
  const out = new Uint8Array((s.length / 4) * 3 - pad);
  let o = 0;
  for (let i = 0; i < s.length; i += 4) {
    let quad = 0;
    for (let j = 0; j < 4; j++) {
      const c = s.charCodeAt(i + j);
      const last = i + 4 === s.length;
      if (c === 0x3d && last && j >= 4 - pad) {
        quad <<= 6;
        continue;
      }
      const v = c < 128 ? BASE64_VALUE[c]! : -1;
      if (v < 0) return null;
      quad = (quad << 6) | v;
    }
    out[o++] = (quad >> 16) & 255;
    if (o < out.length) out[o++] = (quad >> 8) & 255;
    if (o < out.length) out[o++] = quad & 255;
  }
  // Non-canonical encodings (bits set in the padding) are refused: the agent's base64 never writes them.
  return encodeBase64(out) === s ? out : null;
}

/**
 * One connection to a guest agent. `send` writes bytes towards the guest (e.g. the engine's
 * sendVirtioConsole for the agent's port); feed every byte the guest writes on that port to `receive`.
 * One command runs at a time.
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
  private readonly onProtocolError: (message: string) => void;

  constructor(
    private readonly send: (bytes: Uint8Array) => void,
    options: GuestAgentClientOptions = {},
  ) {
    this.onProtocolError = options.onProtocolError ?? (() => {});
  }

  /** Whether the agent has shown itself (HELLO or PONG) since this client was made. */
  get connected(): boolean {
    return this.isConnected;
  }

  /** Lines from the guest that broke the protocol so far. */
  get protocolErrors(): number {
    return this.violations;
  }

  /** Bytes the guest wrote on the agent's port, in order, split anywhere. Never throws. */
  receive(bytes: Uint8Array): void {
    for (let i = 0; i < bytes.length; i++) {
      const b = bytes[i]!;
      if (b === NEWLINE) {
        if (this.discarding) this.discarding = false;
        else this.handleLine(this.lineLength);
        this.lineLength = 0;
      } else if (!this.discarding) {
        // Guest-controlled: the line length, bounded by the buffer; the rest of a longer line is dropped.
        if (this.lineLength === this.line.length) {
          this.discarding = true;
          this.lineLength = 0;
          this.violation(`a line longer than ${GUEST_AGENT_MAX_LINE} bytes`);
        } else {
          this.line[this.lineLength++] = b;
        }
      }
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
      if (this.isConnected) return;
      if (left <= 0) break;
      try {
        await this.ping(Math.min(WAIT_PING_MS, left));
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
    const bytes = new TextEncoder().encode(command);
    if (bytes.length > GUEST_AGENT_MAX_COMMAND)
      throw new GuestAgentError(
        "AGENT_BAD_COMMAND",
        `the command is ${bytes.length} bytes long; the guest agent takes at most ${GUEST_AGENT_MAX_COMMAND}`,
      );
    if (bytes.includes(0))
      throw new GuestAgentError("AGENT_BAD_COMMAND", "a command cannot contain a NUL character");
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
    this.endDrain();
  }

  // ---- internals ----

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

  private violation(what: string): void {
    this.violations++;
    const message = `the guest agent broke the protocol: ${what}`;
    try {
      this.onProtocolError(message);
    } catch {
      // A logger's failure is not the guest's doing; it must not stop the parser.
    }
    if (this.running) this.failRunning(this.running.id, new GuestAgentError("AGENT_PROTOCOL", message), true);
  }

  private handleLine(length: number): void {
    let text = "";
    for (let i = 0; i < length; i++) {
      const c = this.line[i]!;
      // Guest-controlled: only printable ASCII is ever valid here.
      if (c < 0x20 || c > 0x7e) {
        this.violation("a line with a byte that is not printable ASCII");
        return;
      }
      text += String.fromCharCode(c);
    }
    if (text === HELLO) {
      this.onHello();
      return;
    }
    if (text.startsWith("HELLO ")) {
      this.isConnected = false;
      this.violation(
        `'${text.slice(0, 80)}': this host speaks tsvm-agent protocol ${GUEST_AGENT_PROTOCOL_VERSION}`,
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
    switch (kind) {
      case "PONG": {
        if (arg !== undefined) break;
        this.isConnected = true;
        const done = this.pings.get(id);
        this.pings.delete(id);
        done?.();
        return;
      }
      case "OUT":
      case "ERR": {
        if (arg === undefined) break;
        const bytes = decodeBase64(arg);
        if (bytes === null) break;
        if (mine) this.output(bytes, kind === "OUT" ? "stdout" : "stderr");
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
  private onHello(): void {
    this.isConnected = true;
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
    this.endDrain();
  }
}
