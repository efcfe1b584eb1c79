// The VMM's end of an agent session (vmm-protocol.ts, method "session"): opens the session with the guest's
// agent and relays it over the daemon's connection — stdin in acknowledged chunks, output held back (never
// dropped) while the daemon has a window of it unacknowledged, resize, signal and EOF — and kills the
// session when the connection closes.

import type { Socket } from "node:net";
import type { VmmSession } from "./vmm.ts";
import {
  encodeMessage,
  MAX_AGENT_WAIT_MS,
  MAX_EXEC_COMMAND_BYTES,
  MAX_TERMINAL_CELLS,
  SESSION_CHUNK_BYTES,
  SESSION_INPUT_WINDOW_BYTES,
  SESSION_OUTPUT_WINDOW_BYTES,
  type TerminalSize,
  type VmmGuest,
  type VmmRequest,
  type VmmResponse,
  type VmmSessionInput,
} from "./vmm-protocol.ts";

/**
 * The guest agent's error codes (GuestAgentErrorCode) as the hypervisor's; unknown ones are agent-error.
 * A Map: the code comes from the guest, and a guest answering `constructor` must not find Object's.
 */
const AGENT_ERROR_CODES: ReadonlyMap<string, string> = new Map([
  ["AGENT_NOT_CONNECTED", "agent-not-connected"],
  ["AGENT_TIMEOUT", "exec-timeout"],
  ["AGENT_BUSY", "agent-busy"],
  ["AGENT_BAD_COMMAND", "invalid-argument"],
  ["AGENT_ABORTED", "exec-cancelled"],
  ["AGENT_CLOSED", "not-running"],
  ["AGENT_UNSUPPORTED", "agent-unsupported"],
]);

/** An error from the guest's agent (or the engine) as the control protocol's error. */
export function agentFailure(e: unknown): { code: string; message: string } {
  const agentCode = (e as { code?: unknown }).code;
  const code = (typeof agentCode === "string" && AGENT_ERROR_CODES.get(agentCode)) || "agent-error";
  return { code, message: (e as Error).message };
}

/** A terminal size from a request, or undefined when it is not one. */
function terminalSize(v: unknown): TerminalSize | undefined {
  const t = v as { cols?: unknown; rows?: unknown } | undefined;
  const cell = (n: unknown) =>
    typeof n === "number" && Number.isInteger(n) && n >= 1 && n <= MAX_TERMINAL_CELLS;
  return t && cell(t.cols) && cell(t.rows) ? { cols: t.cols as number, rows: t.rows as number } : undefined;
}

/**
 * Serves one "session" request on `socket`: `onInput` is how the VMM's reader hands this session the
 * connection's later lines. Resolves when the session has ended and its last line is written.
 */
export async function relaySession(
  guest: VmmGuest,
  req: VmmRequest,
  socket: Socket,
  onInput: (handler: (msg: VmmSessionInput) => void) => void,
  engine: string,
): Promise<void> {
  const reply = (msg: Omit<VmmResponse, "id">) => {
    if (!socket.destroyed) socket.write(encodeMessage({ id: req.id, ...msg }));
  };
  if (!guest.openSession) {
    reply({
      error: {
        code: "agent-unavailable",
        message: `the ${engine} engine has no guest agent to open sessions with`,
      },
    });
    return;
  }
  const p = req.params ?? {};
  const command = p.command ?? null;
  if (
    command !== null &&
    (typeof command !== "string" ||
      command.length === 0 ||
      command.includes("\0") ||
      Buffer.byteLength(command) > MAX_EXEC_COMMAND_BYTES)
  ) {
    reply({
      error: {
        code: "invalid-argument",
        message: `the command must be text of 1 to ${MAX_EXEC_COMMAND_BYTES} bytes`,
      },
    });
    return;
  }
  const tty = p.tty === undefined ? undefined : terminalSize(p.tty);
  if (p.tty !== undefined && !tty) {
    reply({
      error: {
        code: "invalid-argument",
        message: `a terminal has 1 to ${MAX_TERMINAL_CELLS} columns and rows`,
      },
    });
    return;
  }
  const agentWaitMs =
    typeof p.agentWaitMs === "number" && p.agentWaitMs > 0 ? Math.min(p.agentWaitMs, MAX_AGENT_WAIT_MS) : 0;

  // Output: sent at once, but its promise (which the agent waits for before it acknowledges the chunk to
  // the guest) settles only once the daemon has acknowledged all but a window of what was sent.
  let sent = 0;
  let acked = 0;
  const waiting: { upTo: number; resolve: () => void }[] = [];
  const releaseOutput = () => {
    while (waiting.length > 0 && waiting[0]!.upTo - acked <= SESSION_OUTPUT_WINDOW_BYTES) {
      waiting.shift()!.resolve();
    }
  };
  const closed = () => socket.destroyed || socket.closed;
  let session: VmmSession;
  try {
    session = await guest.openSession(command, {
      tty,
      agentWaitMs,
      onOutput: (bytes, stream) => {
        if (closed()) return;
        // A line must stay under MAX_MESSAGE_BYTES: a large chunk goes as several.
        for (let at = 0; at < bytes.length; at += SESSION_CHUNK_BYTES) {
          const piece = bytes.subarray(at, at + SESSION_CHUNK_BYTES);
          reply({
            output: {
              stream,
              data: Buffer.from(piece.buffer, piece.byteOffset, piece.length).toString("base64"),
            },
          });
        }
        sent += bytes.length;
        if (sent - acked <= SESSION_OUTPUT_WINDOW_BYTES) return;
        const upTo = sent;
        return new Promise<void>((resolve) => waiting.push({ upTo, resolve }));
      },
    });
  } catch (e) {
    reply({ error: agentFailure(e) });
    return;
  }
  const open = session;
  const onClose = () => {
    open.kill();
    for (const w of waiting.splice(0)) w.resolve();
  };
  socket.once("close", onClose);
  if (closed()) onClose();

  // Stdin goes to the guest in order, one chunk at a time; EOF after it. The daemon's window bounds the queue.
  const queue: (Uint8Array | "eof")[] = [];
  let queued = 0;
  let pumping = false;
  const pump = async () => {
    if (pumping) return;
    pumping = true;
    try {
      while (queue.length > 0 && !closed()) {
        const item = queue.shift()!;
        if (item === "eof") {
          open.end();
          continue;
        }
        queued -= item.length;
        await open.write(item);
        reply({ inputAck: item.length });
      }
    } catch {
      // The session ended under the write: its exit (below) says how.
    } finally {
      pumping = false;
    }
  };
  let broken = false;
  const protocolError = (what: string) => {
    if (broken) return;
    broken = true;
    reply({ error: { code: "bad-request", message: `the daemon broke the session protocol: ${what}` } });
    socket.destroy();
  };
  onInput((msg) => {
    if (typeof msg.input === "string") {
      const bytes = Buffer.from(msg.input, "base64");
      queued += bytes.length;
      if (bytes.length > SESSION_CHUNK_BYTES || queued > 2 * SESSION_INPUT_WINDOW_BYTES)
        return protocolError("more stdin than its window");
      queue.push(bytes);
      void pump();
    } else if (msg.eof === true) {
      queue.push("eof");
      void pump();
    } else if (msg.resize !== undefined) {
      const size = terminalSize(msg.resize);
      if (!size) return protocolError("a resize that is not a terminal size");
      open.resize(size.cols, size.rows);
    } else if (typeof msg.signal === "number") {
      if (!Number.isInteger(msg.signal) || msg.signal < 1 || msg.signal > 64)
        return protocolError("a signal number outside 1-64");
      open.signal(msg.signal);
    } else if (typeof msg.ack === "number") {
      if (!Number.isInteger(msg.ack) || msg.ack < 0 || acked + msg.ack > sent)
        return protocolError("an acknowledgement of output never sent");
      acked += msg.ack;
      releaseOutput();
    } else protocolError("an unknown message");
  });
  reply({ opened: true });
  try {
    reply({ result: { exitCode: await open.exit } });
  } catch (e) {
    reply({ error: agentFailure(e) });
  } finally {
    socket.off("close", onClose);
  }
}
