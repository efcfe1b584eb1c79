// The client's end of an agent session (GET /v1/instances/{name}/sessions over WebSocket; the messages in
// schemas/session-schemas.ts): stdin with back-pressure, output handed to one listener whose promise holds
// the rest back (and with it, through the daemon and the VMM, the guest), resize, signal, EOF, the exit.

import type { RawData, WebSocket } from "ws";
import { type ApiClient, ApiError } from "./client.ts";
import { SESSION_CHANNEL, type SessionControl, type SessionEvent } from "./schemas/session-schemas.ts";
import { API_BASE } from "./types.ts";

/** Largest session message accepted from the daemon (a chunk of the guest's output: a few KiB). */
const MAX_SESSION_FRAME_BYTES = 16 * 1024 * 1024;
/** Stdin queued in this process past which write() waits for the daemon to take it. */
const STDIN_HIGH_WATER_BYTES = 256 * 1024;
/** Most stdin bytes in one message (the daemon takes up to 256 KiB). */
const STDIN_MESSAGE_BYTES = 64 * 1024;

export interface SessionOptions {
  /** `sh -c command`; a login shell when absent. */
  readonly command?: string;
  /** A pseudo-terminal of this size; pipes when absent. */
  readonly tty?: { readonly cols: number; readonly rows: number };
  /** How long the daemon waits for the agent of a guest still booting. */
  readonly agentWaitSec?: number;
}

/**
 * Opens an interactive session in the VM's guest: `command` with `sh -c`, or a login shell. Rejects
 * ApiError when it cannot start (VM not RUNNING, agent not up yet, agent of version 1).
 */
export async function openSession(
  client: ApiClient,
  name: string,
  options: SessionOptions = {},
): Promise<SessionConnection> {
  const q = new URLSearchParams();
  if (options.command !== undefined) q.set("command", options.command);
  q.set("tty", options.tty ? "true" : "false");
  if (options.tty) {
    q.set("cols", String(options.tty.cols));
    q.set("rows", String(options.tty.rows));
  }
  if (options.agentWaitSec !== undefined) q.set("agentWaitSec", String(options.agentWaitSec));
  const path = `${API_BASE}/instances/${encodeURIComponent(name)}/sessions?${q}`;
  return new SessionConnection(await client.webSocket(path, MAX_SESSION_FRAME_BYTES));
}

export type SessionOutputListener = (bytes: Buffer, stream: "stdout" | "stderr") => void | Promise<void>;

export class SessionConnection {
  /** The exit status (0-255); rejects ApiError when the session failed or the connection broke. */
  readonly exit: Promise<number>;
  private listener: SessionOutputListener | undefined;
  private readonly early: { bytes: Buffer; stream: "stdout" | "stderr" }[] = [];
  private waits = 0;

  constructor(private readonly ws: WebSocket) {
    let ended: SessionEvent | undefined;
    this.exit = new Promise<number>((resolve, reject) => {
      ws.once("close", (code: number, reason: Buffer) => {
        if (ended?.type === "exit") resolve(ended.exitCode);
        else if (ended?.type === "error") reject(new ApiError(500, ended.code, ended.message));
        else
          reject(
            new ApiError(
              0,
              "session-interrupted",
              `the session's connection closed before it ended (${code}${reason.length > 0 ? `: ${reason}` : ""})`,
            ),
          );
      });
    });
    this.exit.catch(() => {});
    ws.on("error", () => {});
    ws.on("message", (data: RawData, isBinary: boolean) => {
      const bytes = data as Buffer;
      if (!isBinary) {
        try {
          ended = JSON.parse(bytes.toString("utf8")) as SessionEvent;
        } catch {
          ws.close(1008, "a text message that is not JSON");
        }
        return;
      }
      const stream = bytes[0] === SESSION_CHANNEL.stderr ? "stderr" : "stdout";
      this.deliver(bytes.subarray(1), stream);
    });
    ws.resume();
  }

  /** Receives output; output that came before the first call is delivered at once. */
  onOutput(listener: SessionOutputListener): void {
    this.listener = listener;
    for (const { bytes, stream } of this.early.splice(0)) this.deliver(bytes, stream);
  }

  /** Sends stdin bytes; resolves once this process's queue is short again. */
  async write(bytes: Uint8Array): Promise<void> {
    for (let at = 0; at < bytes.length; at += STDIN_MESSAGE_BYTES) {
      if (this.ws.readyState !== this.ws.OPEN) return;
      const chunk = bytes.subarray(at, at + STDIN_MESSAGE_BYTES);
      const frame = Buffer.allocUnsafe(chunk.length + 1);
      frame[0] = SESSION_CHANNEL.stdin;
      frame.set(chunk, 1);
      this.ws.send(frame, { binary: true });
      while (this.ws.readyState === this.ws.OPEN && this.ws.bufferedAmount > STDIN_HIGH_WATER_BYTES)
        await new Promise((r) => setTimeout(r, 5));
    }
  }

  /** No more stdin. */
  end(): void {
    this.control({ type: "eof" });
  }

  resize(cols: number, rows: number): void {
    this.control({ type: "resize", cols, rows });
  }

  signal(n: number): void {
    this.control({ type: "signal", signal: n });
  }

  /** Closes the connection, which kills the session if it still runs. */
  close(): void {
    if (this.ws.readyState === this.ws.OPEN || this.ws.readyState === this.ws.CONNECTING) this.ws.close(1000);
  }

  private control(c: SessionControl): void {
    if (this.ws.readyState === this.ws.OPEN) this.ws.send(JSON.stringify(c));
  }

  private deliver(bytes: Buffer, stream: "stdout" | "stderr"): void {
    if (!this.listener) {
      this.early.push({ bytes, stream });
      return;
    }
    const wait = this.listener(bytes, stream);
    if (!wait) return;
    // The listener is behind: read nothing more until it catches up (the daemon, then the guest, wait).
    if (this.waits++ === 0) this.ws.pause();
    void wait.finally(() => {
      if (--this.waits === 0) this.ws.resume();
    });
  }
}
