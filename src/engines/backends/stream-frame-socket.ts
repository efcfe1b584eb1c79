// A client of QEMU's stream netdev protocol over a Unix socket (each Ethernet frame prefixed by its length,
// 4 bytes big-endian), as passt and the private-network switch speak it: reconnects with backoff when the
// peer goes away, bounds every queue, and stops reading the socket while the guest has no receive space.

import { createConnection, type Socket } from "node:net";
import type { FrameBackend } from "./frame-backend.ts";

/** The largest frame a peer may announce: a 64 KiB IP packet plus its Ethernet header. A larger length
 *  prefix is not a frame but a broken or hostile peer: the connection is dropped and made again. */
export const STREAM_MAX_FRAME = 65536 + 14;
/** Guest → network bytes waiting for the socket; frames beyond it are dropped (counted). */
const TX_QUEUE_BYTES = 1 << 20;
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2000;

export interface StreamFrameSocketOptions {
  /** Written first on every (re)connection (the private-network switch identifies its member by it). */
  readonly hello?: Uint8Array;
  /** The connection came up (true) or went away (false). */
  readonly onConnectionChange?: (up: boolean) => void;
  /** First reconnect delay (doubles up to 2 s); for tests. */
  readonly backoffMs?: number;
}

export interface StreamFrameSocketStats {
  txFrames: number;
  txDropped: number;
  rxFrames: number;
  /** Connections dropped because the peer broke the framing (oversized or empty length prefix). */
  protocolErrors: number;
  /** Connections made after the first. */
  reconnects: number;
}

export class StreamFrameSocket implements FrameBackend {
  onFrame: ((frame: Uint8Array) => boolean) | null = null;
  readonly stats: StreamFrameSocketStats = {
    txFrames: 0,
    txDropped: 0,
    rxFrames: 0,
    protocolErrors: 0,
    reconnects: 0,
  };
  private socket: Socket | null = null;
  private up = false;
  private closed = false;
  private connections = 0;
  private backoff: number;
  private retry: ReturnType<typeof setTimeout> | null = null;
  /** Guest → network frames (with their prefixes) waiting for the next flush. */
  private txQueue: Buffer[] = [];
  private txQueued = 0;
  private flushScheduled = false;
  /** Received bytes not yet parsed into frames (at most one socket read plus a partial frame). */
  private rx: Buffer = Buffer.alloc(0);
  /** A frame the guest refused; delivered first on resume. */
  private held: Uint8Array | null = null;
  private paused = false;

  constructor(
    readonly path: string,
    private readonly options: StreamFrameSocketOptions = {},
  ) {
    this.backoff = options.backoffMs ?? BACKOFF_FIRST_MS;
    this.connect();
  }

  /** Whether the socket is connected now. */
  get connected(): boolean {
    return this.up;
  }

  send(frame: Uint8Array): void {
    // While the peer is away, frames are lost as on an unplugged cable; the guest's TCP retransmits.
    if (!this.up || this.txQueued + frame.length + 4 > TX_QUEUE_BYTES) {
      this.stats.txDropped++;
      return;
    }
    const b = Buffer.allocUnsafe(4 + frame.length);
    b.writeUInt32BE(frame.length, 0);
    b.set(frame, 4);
    this.txQueue.push(b);
    this.txQueued += b.length;
    this.stats.txFrames++;
    // Frames sent within one turn of the machine leave in one writev.
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(this.flush);
    }
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.held !== null) {
      const f = this.held;
      this.held = null;
      if (!this.deliver(f)) return;
    }
    this.parse();
    if (!this.paused) this.socket?.resume();
  }

  async close(): Promise<void> {
    this.closed = true;
    if (this.retry !== null) clearTimeout(this.retry);
    this.retry = null;
    const s = this.socket;
    this.socket = null;
    this.setUp(false);
    if (s && !s.destroyed) {
      await new Promise<void>((resolve) => {
        s.once("close", () => resolve());
        s.destroy();
      });
    }
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    const s = this.socket;
    const q = this.txQueue;
    this.txQueue = [];
    this.txQueued = 0;
    if (!s || !this.up) {
      this.stats.txDropped += q.length;
      this.stats.txFrames -= q.length;
      return;
    }
    s.cork();
    for (const b of q) s.write(b);
    s.uncork();
  };

  private connect(): void {
    if (this.closed) return;
    const s = createConnection(this.path);
    this.socket = s;
    s.on("connect", () => {
      if (this.socket !== s) return;
      if (this.connections++ > 0) this.stats.reconnects++;
      this.backoff = this.options.backoffMs ?? BACKOFF_FIRST_MS;
      if (this.options.hello && this.options.hello.length > 0) s.write(this.options.hello);
      this.rx = Buffer.alloc(0);
      this.held = null;
      this.paused = false;
      this.setUp(true);
    });
    s.on("data", (chunk: Buffer) => {
      if (this.socket !== s) return;
      this.rx = this.rx.length === 0 ? chunk : Buffer.concat([this.rx, chunk]);
      this.parse();
    });
    // Errors (ECONNREFUSED, ENOENT, EPIPE) are followed by "close", which reconnects.
    s.on("error", () => {});
    s.on("close", () => {
      if (this.socket !== s) return;
      this.socket = null;
      this.setUp(false);
      this.scheduleReconnect();
    });
  }

  private scheduleReconnect(): void {
    if (this.closed || this.retry !== null) return;
    const delay = this.backoff;
    this.backoff = Math.min(BACKOFF_MAX_MS, this.backoff * 2);
    this.retry = setTimeout(() => {
      this.retry = null;
      this.connect();
    }, delay);
  }

  private setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    if (!up) {
      this.stats.txDropped += this.txQueue.length;
      this.stats.txFrames -= this.txQueue.length;
      this.txQueue = [];
      this.txQueued = 0;
    }
    this.options.onConnectionChange?.(up);
  }

  /** Cuts whole frames out of `rx` and hands them to the guest until it refuses one. */
  private parse(): void {
    const s = this.socket;
    while (!this.paused && this.rx.length >= 4) {
      // Peer-controlled: the length prefix. A zero or oversized length cannot be resynchronised.
      const len = this.rx.readUInt32BE(0);
      if (len === 0 || len > STREAM_MAX_FRAME) {
        this.stats.protocolErrors++;
        this.rx = Buffer.alloc(0);
        s?.destroy();
        return;
      }
      if (this.rx.length < 4 + len) break;
      const frame = this.rx.subarray(4, 4 + len);
      this.rx = this.rx.subarray(4 + len);
      this.deliver(frame);
    }
    if (this.rx.length === 0) this.rx = Buffer.alloc(0);
  }

  /** Gives one frame to the guest; when refused, keeps it and stops reading the socket. */
  private deliver(frame: Uint8Array): boolean {
    const take = this.onFrame;
    if (take === null || take(frame)) {
      if (take !== null) this.stats.rxFrames++;
      return true;
    }
    this.held = frame;
    this.paused = true;
    this.socket?.pause();
    return false;
  }
}
