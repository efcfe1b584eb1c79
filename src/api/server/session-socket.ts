// The daemon's end of agent sessions over WebSocket (RFC 6455, spoken by the `ws` package): completes a
// client's upgrade and bridges it to a session of the VM's VMM. Binary messages carry bytes behind a 1-byte
// channel (0 stdin; 1 stdout, 2 stderr), text messages JSON controls (session-schemas.ts). Both directions
// have back-pressure and nothing is dropped: the client's stdin is not read on while the guest is behind,
// and output is acknowledged to the VMM (which then lets the guest write more) only once it has left this
// process's queue. A client that goes away kills the session.

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";
import type { VmmSession } from "../../hypervisor/vmm.ts";
import { schemaCheck } from "../schemas/schema-check.ts";
import {
  MAX_SESSION_MESSAGE_BYTES,
  SESSION_CHANNEL,
  SessionControl,
  type SessionEvent,
} from "../schemas/session-schemas.ts";

/** Output queued for one client past which its session's output is not acknowledged (the guest waits). */
export const SESSION_HIGH_WATER_BYTES = 256 * 1024;
/** ... and below which it is again. */
const SESSION_LOW_WATER_BYTES = 64 * 1024;

const checkControl = schemaCheck(SessionControl);

/** The VMM session a client's upgrade joins, opened once the output has somewhere to go. */
export type SessionOpener = (
  onOutput: (bytes: Uint8Array, stream: "stdout" | "stderr") => void | Promise<void>,
) => Promise<VmmSession>;

export class SessionSockets {
  private readonly server = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_SESSION_MESSAGE_BYTES,
    maxFragments: 1024,
    // Interactive bytes and tar streams: compression would cost CPU and hide the queue's size.
    perMessageDeflate: false,
  });

  /**
   * Opens the session (its errors are the caller's to answer as HTTP errors: the client has not been
   * upgraded yet), then completes the WebSocket handshake on `socket` and bridges the two.
   */
  async accept(req: IncomingMessage, socket: Duplex, head: Buffer, open: SessionOpener): Promise<void> {
    // Output that comes before the handshake is done waits here (the VMM holds back the rest).
    let ws: WebSocket | undefined;
    const early: { bytes: Uint8Array; stream: "stdout" | "stderr" }[] = [];
    let readyResolve!: () => void;
    const ready = new Promise<void>((resolve) => {
      readyResolve = resolve;
    });
    const session = await open((bytes, stream) => {
      if (!ws) {
        early.push({ bytes: new Uint8Array(bytes), stream });
        return ready;
      }
      return sendOutput(ws, bytes, stream);
    });
    if (socket.destroyed) {
      session.kill();
      return;
    }
    socket.once("close", () => session.kill());
    this.server.handleUpgrade(req, socket, head, (upgraded) => {
      ws = upgraded;
      for (const { bytes, stream } of early.splice(0)) void sendOutput(upgraded, bytes, stream);
      readyResolve();
      bridge(upgraded, session);
    });
  }

  /** Output queued in the daemon for all session clients, not yet taken by them (or by the kernel). */
  get queuedBytes(): number {
    let total = 0;
    for (const ws of this.server.clients) total += ws.bufferedAmount;
    return total;
  }

  /** Ends every session (the daemon is shutting down). */
  close(): void {
    for (const ws of this.server.clients) ws.terminate();
  }
}

/** Sends one chunk of output; resolves once the client's queue is short again (back-pressure). */
function sendOutput(
  ws: WebSocket,
  bytes: Uint8Array,
  stream: "stdout" | "stderr",
): Promise<void> | undefined {
  if (ws.readyState !== WebSocket.OPEN) return undefined;
  const frame = Buffer.allocUnsafe(bytes.length + 1);
  frame[0] = stream === "stderr" ? SESSION_CHANNEL.stderr : SESSION_CHANNEL.stdout;
  frame.set(bytes, 1);
  ws.send(frame, { binary: true });
  if (ws.bufferedAmount < SESSION_HIGH_WATER_BYTES) return undefined;
  return new Promise<void>((resolve) => {
    const check = () => {
      if (ws.readyState !== WebSocket.OPEN || ws.bufferedAmount <= SESSION_LOW_WATER_BYTES) {
        clearInterval(timer);
        ws.off("close", check);
        resolve();
      }
    };
    // `ws` has no drain event of its own; its socket's queue is polled while the client is behind.
    const timer = setInterval(check, 10);
    ws.once("close", check);
  });
}

function bridge(ws: WebSocket, session: VmmSession): void {
  const event = (e: SessionEvent) => {
    if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify(e));
  };
  const violation = (reason: string) => {
    if (ws.readyState === WebSocket.OPEN) ws.close(1008, reason.slice(0, 120));
    session.kill();
  };
  let stdin = Promise.resolve();
  let pending = 0;
  ws.on("message", (data: RawData, isBinary: boolean) => {
    // binaryType is "nodebuffer": every message, fragmented or not, is one Buffer.
    const bytes = data as Buffer;
    if (isBinary) {
      if (bytes.length === 0 || bytes[0] !== SESSION_CHANNEL.stdin)
        return violation("a binary message must start with channel 0 (stdin)");
      if (bytes.length === 1) return;
      // The guest takes stdin at its own pace: the client is not read on until this message is in, and
      // messages `ws` had already parsed queue behind it, in order.
      pending++;
      ws.pause();
      stdin = stdin
        .then(() => session.write(bytes.subarray(1)))
        .then(
          () => {
            if (--pending === 0) ws.resume();
          },
          () => {},
        );
      return;
    }
    let parsed: unknown;
    try {
      parsed = JSON.parse(bytes.toString("utf8"));
    } catch {
      return violation("a text message must be JSON");
    }
    const checked = checkControl(parsed);
    if (!checked.ok)
      return violation(`not a session control: ${checked.problem.field} ${checked.problem.text}`);
    const control = checked.value;
    if (control.type === "resize") session.resize(control.cols, control.rows);
    else if (control.type === "signal") session.signal(control.signal);
    else stdin = stdin.then(() => session.end());
  });
  session.exit.then(
    (exitCode) => {
      event({ type: "exit", exitCode });
      if (ws.readyState === WebSocket.OPEN) ws.close(1000, "the session ended");
    },
    (e: Error & { code?: string }) => {
      event({ type: "error", code: e.code ?? "internal", message: e.message });
      if (ws.readyState === WebSocket.OPEN) ws.close(1011, "the session failed");
    },
  );
  ws.on("error", () => {});
  ws.on("close", () => session.kill());
}
