// One session of guest agent protocol version 2 (docs/guest-agent.md): a command or login shell in the
// guest, on pipes or a pseudo-terminal, with stdin, window size, signals and flow control both ways. The
// GuestAgentClient owns the line protocol and routes the guest's OUT/ERR/ACK/EXIT/BUSY for this id here.

/** Output bytes the guest may send before the host acknowledges them; more is a protocol violation. */
export const AGENT_OUTPUT_WINDOW = 256 * 1024;
/** Stdin bytes the host keeps unacknowledged per session (the agent buffers at most twice this). */
export const AGENT_STDIN_WINDOW = 64 * 1024;
/** Raw bytes per IN line (~4 KB of line, like OUT). */
export const AGENT_STDIN_CHUNK = 3000;

export type AgentStream = "stdout" | "stderr";

/** A session as the caller sees it (GuestAgentClient.open). */
export interface AgentSession {
  /** Sends stdin bytes; resolves once they are within the flow-control window (sent to the guest). */
  write(bytes: Uint8Array): Promise<void>;
  /** Closes stdin after what was written (a terminal gets its EOF character). */
  end(): void;
  /** A terminal's new window size (the foreground process group gets SIGWINCH). */
  resize(cols: number, rows: number): void;
  /** Signal `n` (1…64) to the terminal's foreground process group, or the command's group. */
  signal(n: number): void;
  /** SIGKILL to every process of the session; `exit` then gives 137. */
  kill(): void;
  /** The exit status (0…255, 128+N after signal N), once all output was delivered and acknowledged. */
  readonly exit: Promise<number>;
}

/** What the session needs of its client. */
export interface AgentSessionHost {
  /** Writes one protocol line (no newline); may throw when the port is gone. */
  sendLine(line: string): void;
  /** A protocol violation by the guest in this session (the client counts and logs it). */
  violation(what: string): void;
  /** The session is finished: forget its id. */
  forget(id: number): void;
}

interface PendingWrite {
  readonly bytes: Uint8Array;
  offset: number;
  readonly resolve: () => void;
  readonly reject: (err: Error) => void;
}

/** Errors a session rejects with; the client supplies its error class so codes stay in one place. */
export type AgentSessionErrorFactory = (
  code: "AGENT_TIMEOUT" | "AGENT_ABORTED" | "AGENT_BUSY" | "AGENT_PROTOCOL" | "AGENT_SESSION_ENDED",
  message: string,
) => Error;

export class GuestAgentSession implements AgentSession {
  readonly exit: Promise<number>;
  private resolveExit!: (status: number) => void;
  private rejectExit!: (err: Error) => void;
  /** OPEN was sent (the agent's version is known to be 2). */
  private started = false;
  private finished = false;
  private readonly writes: PendingWrite[] = [];
  private stdinInFlight = 0;
  private eofAsked = false;
  private eofSent = false;
  /** Output bytes received and not yet acknowledged to the guest (delivered or not). */
  private outputOutstanding = 0;
  /** Output bytes delivered (callbacks settled) not yet sent in an ACK. */
  private ackPending = 0;
  private ackScheduled = false;
  private readonly delivering = new Set<Promise<void>>();
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly onAbort = () =>
    this.fail(this.makeError("AGENT_ABORTED", "the session was cancelled"), true);

  constructor(
    readonly id: number,
    private readonly host: AgentSessionHost,
    private readonly openLine: string,
    private readonly onOutput: (bytes: Uint8Array, stream: AgentStream) => void | Promise<void>,
    private readonly makeError: AgentSessionErrorFactory,
    private readonly options: { timeoutMs?: number; signal?: AbortSignal },
  ) {
    this.exit = new Promise<number>((resolve, reject) => {
      this.resolveExit = resolve;
      this.rejectExit = reject;
    });
    // A caller that only writes and never awaits `exit` must not see an unhandled rejection.
    this.exit.catch(() => {});
    if (options.signal?.aborted) {
      this.finished = true;
      this.rejectExit(this.makeError("AGENT_ABORTED", "the session was cancelled"));
      return;
    }
    options.signal?.addEventListener("abort", this.onAbort);
    if (options.timeoutMs !== undefined) {
      const ms = options.timeoutMs;
      this.timer = setTimeout(
        () =>
          this.fail(
            this.makeError("AGENT_TIMEOUT", `the session did not end within ${ms} ms and was killed`),
            true,
          ),
        ms,
      );
    }
  }

  /** Sends OPEN (the client learned the agent speaks version 2). */
  start(): void {
    if (this.finished || this.started) return;
    this.started = true;
    this.send(this.openLine);
    this.pump();
  }

  write(bytes: Uint8Array): Promise<void> {
    if (this.finished) return Promise.reject(this.makeError("AGENT_SESSION_ENDED", "the session has ended"));
    if (this.eofAsked) return Promise.reject(new Error("write after end(): stdin is closed"));
    if (bytes.length === 0) return Promise.resolve();
    return new Promise<void>((resolve, reject) => {
      // A copy: the caller may reuse its buffer once the promise resolves, before every byte is sent.
      this.writes.push({ bytes: bytes.slice(), offset: 0, resolve, reject });
      this.pump();
    });
  }

  end(): void {
    if (this.finished || this.eofAsked) return;
    this.eofAsked = true;
    this.pump();
  }

  resize(cols: number, rows: number): void {
    checkRange("cols", cols, 0, 65535);
    checkRange("rows", rows, 0, 65535);
    if (this.started && !this.finished) this.send(`WINCH ${this.id} ${cols} ${rows}`);
  }

  signal(n: number): void {
    checkRange("signal", n, 1, 64);
    if (this.started && !this.finished) this.send(`SIGNAL ${this.id} ${n}`);
  }

  kill(): void {
    if (this.started && !this.finished) this.send(`KILL ${this.id}`);
  }

  // ---- from the client ----

  /** An OUT/ERR chunk from the guest. */
  output(bytes: Uint8Array, stream: AgentStream): void {
    if (this.finished) return;
    this.outputOutstanding += bytes.length;
    // Guest-controlled: the guest may not run ahead of the window; that is what bounds our memory.
    if (this.outputOutstanding > AGENT_OUTPUT_WINDOW) {
      this.host.violation(`session ${this.id} sent more than ${AGENT_OUTPUT_WINDOW} bytes unacknowledged`);
      this.fail(this.makeError("AGENT_PROTOCOL", "the guest agent ignored the flow-control window"), true);
      return;
    }
    let result: void | Promise<void>;
    try {
      result = this.onOutput(bytes, stream);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)), true);
      return;
    }
    if (result instanceof Promise) {
      const settled: Promise<void> = result.then(
        () => {
          this.delivering.delete(settled);
          this.acknowledge(bytes.length);
        },
        (err: unknown) => {
          this.delivering.delete(settled);
          this.fail(err instanceof Error ? err : new Error(String(err)), true);
        },
      );
      this.delivering.add(settled);
    } else {
      this.acknowledge(bytes.length);
    }
  }

  /** ACK from the guest: that many stdin bytes reached the command. */
  stdinAcknowledged(count: number): void {
    if (this.finished) return;
    if (count > this.stdinInFlight) {
      this.host.violation(
        `session ${this.id} acknowledged ${count} stdin bytes, only ${this.stdinInFlight} sent`,
      );
      this.fail(this.makeError("AGENT_PROTOCOL", "the guest agent acknowledged stdin it was not sent"), true);
      return;
    }
    this.stdinInFlight -= count;
    // Sent from inside `receive` (the device's transmit handler): the virtio-console device keeps one
    // descriptor chain per queue, so a send from there is safe (virtio-console.test.ts).
    this.pump();
  }

  /** EXIT from the guest: resolves once every chunk before it was delivered. */
  exited(status: number): void {
    this.host.forget(this.id);
    if (this.finished) return;
    this.finished = true;
    this.cleanup();
    this.rejectWrites(this.makeError("AGENT_SESSION_ENDED", "the session has ended"));
    void Promise.all([...this.delivering]).then(() => this.resolveExit(status));
  }

  /** BUSY from the guest: it runs too many sessions (or the id is taken). */
  refused(): void {
    this.host.forget(this.id);
    this.fail(this.makeError("AGENT_BUSY", "the guest agent runs too many sessions; try again later"), false);
  }

  /** Ends the session with `error`; with `kill`, the guest is asked to kill what still runs. */
  fail(error: Error, kill: boolean): void {
    if (this.finished) return;
    this.finished = true;
    this.cleanup();
    if (kill && this.started) {
      try {
        this.host.sendLine(`KILL ${this.id}`);
      } catch {
        // The port is gone: the rejection below says what happened.
      }
    }
    // Without a kill nothing more comes for this id; after one, its EXIT still does and forgets it.
    if (!kill || !this.started) this.host.forget(this.id);
    this.rejectWrites(error);
    this.rejectExit(error);
  }

  // ---- internals ----

  private send(line: string): void {
    try {
      this.host.sendLine(line);
    } catch (err) {
      this.fail(err instanceof Error ? err : new Error(String(err)), false);
    }
  }

  /** Sends stdin while the window has room, then EOF once everything asked for is out. */
  private pump(): void {
    while (this.started && !this.finished && this.writes.length > 0) {
      const w = this.writes[0]!;
      const room = AGENT_STDIN_WINDOW - this.stdinInFlight;
      if (room <= 0) return;
      const n = Math.min(AGENT_STDIN_CHUNK, room, w.bytes.length - w.offset);
      const chunk = w.bytes.subarray(w.offset, w.offset + n);
      this.stdinInFlight += n;
      w.offset += n;
      this.send(
        `IN ${this.id} ${Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length).toString("base64")}`,
      );
      if (w.offset === w.bytes.length) {
        this.writes.shift();
        w.resolve();
      }
    }
    if (this.started && !this.finished && this.eofAsked && !this.eofSent && this.writes.length === 0) {
      this.eofSent = true;
      this.send(`EOF ${this.id}`);
    }
  }

  private acknowledge(count: number): void {
    this.outputOutstanding -= count;
    if (this.finished) return;
    this.ackPending += count;
    // One ACK for everything delivered in this turn of the event loop, not one per 3000-byte chunk.
    if (this.ackScheduled) return;
    this.ackScheduled = true;
    queueMicrotask(() => {
      this.ackScheduled = false;
      if (this.finished || this.ackPending === 0) return;
      const n = this.ackPending;
      this.ackPending = 0;
      this.send(`ACK ${this.id} ${n}`);
    });
  }

  private rejectWrites(error: Error): void {
    const writes = this.writes.splice(0);
    for (const w of writes) w.reject(error);
  }

  private cleanup(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.options.signal?.removeEventListener("abort", this.onAbort);
  }
}

function checkRange(what: string, n: number, min: number, max: number): void {
  if (!Number.isInteger(n) || n < min || n > max)
    throw new RangeError(`${what} must be an integer from ${min} to ${max}, not ${n}`);
}
