// The daemon's end of the serial console over WebSocket (RFC 6455, spoken by the `ws` package): completes
// a client's upgrade and joins it to one console connection of the VM's VMM, with back-pressure both ways,
// so a client that reads slowly (or not at all) costs the daemon a bounded queue; the VMM then drops the
// output that client cannot take and says how much in its byte stream.

import type { IncomingMessage } from "node:http";
import type { Duplex } from "node:stream";
import { type RawData, WebSocket, WebSocketServer } from "ws";

/** Largest message a client may send (typed input comes in small pieces); a larger one fails with 1009. */
export const MAX_CONSOLE_MESSAGE_BYTES = 1024 * 1024;
/** Most frames one client message may be split into. */
export const MAX_CONSOLE_MESSAGE_FRAGMENTS = 1024;
/** Console output queued for one client past which the daemon stops reading from the VMM. */
export const CONSOLE_HIGH_WATER_BYTES = 256 * 1024;
/** ... and below which it reads again. */
const CONSOLE_LOW_WATER_BYTES = 64 * 1024;

export class SerialPortSockets {
  private readonly server = new WebSocketServer({
    noServer: true,
    maxPayload: MAX_CONSOLE_MESSAGE_BYTES,
    // Fragments of one message, empty ones too (each costs a little work and bookkeeping): past this the
    // connection fails with 1008. Typed input needs none.
    maxFragments: MAX_CONSOLE_MESSAGE_FRAGMENTS,
    // Console bytes are small and interactive; compression would cost CPU and hide the queue's size.
    perMessageDeflate: false,
  });

  /**
   * Completes the WebSocket handshake on `socket` and joins it to `vmm` (a console connection of the VM's
   * VMM). A handshake `ws` refuses (bad key or version) is answered 400 by it; `vmm` is then closed.
   */
  accept(req: IncomingMessage, socket: Duplex, head: Buffer, vmm: Duplex): void {
    // The client may have gone while the VMM was being asked.
    if (socket.destroyed) return void vmm.destroy();
    socket.once("close", () => vmm.destroy());
    this.server.handleUpgrade(req, socket, head, (ws) => bridge(ws, vmm));
  }

  /** Console output queued in the daemon for all clients, not yet taken by them (or by the kernel). */
  get queuedBytes(): number {
    let total = 0;
    for (const ws of this.server.clients) total += ws.bufferedAmount;
    return total;
  }

  /** Ends every console connection (the daemon is shutting down). */
  close(): void {
    for (const ws of this.server.clients) ws.terminate();
  }
}

/**
 * Console output goes to the client as binary messages; the client's binary or text messages are typed
 * into the console. A protocol error by the client (bad frame, invalid UTF-8 text, oversized message)
 * fails the connection as RFC 6455 says (ws closes it with 1002, 1007 or 1009).
 */
function bridge(ws: WebSocket, vmm: Duplex): void {
  let paused = false;
  const sent = () => {
    if (paused && ws.bufferedAmount <= CONSOLE_LOW_WATER_BYTES) {
      paused = false;
      vmm.resume();
    }
  };
  vmm.on("data", (chunk: Buffer) => {
    if (ws.readyState !== WebSocket.OPEN) return;
    ws.send(chunk, { binary: true }, sent);
    if (!paused && ws.bufferedAmount >= CONSOLE_HIGH_WATER_BYTES) {
      paused = true;
      vmm.pause();
    }
  });
  ws.on("message", (data: RawData) => {
    // The VMM reads input as fast as the guest takes it; a client typing faster waits for it.
    // binaryType is "nodebuffer": every message, text or binary, fragmented or not, is one Buffer.
    if (!vmm.write(data as Buffer)) {
      ws.pause();
      vmm.once("drain", () => ws.resume());
    }
  });
  vmm.on("close", () => ws.close(1001, "the VM's console closed"));
  vmm.on("error", () => {});
  ws.on("error", () => {});
  ws.on("close", () => vmm.destroy());
}
