// WebSocket framing (RFC 6455 §5) for the serial console: the few pieces both ends need — the opening
// handshake's accept key, encoding a frame, and a decoder that bounds every peer-controlled length.

import { createHash, randomBytes } from "node:crypto";

/** RFC 6455 §1.3: the GUID appended to Sec-WebSocket-Key. */
const WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

export const OPCODE_CONTINUATION = 0x0;
export const OPCODE_TEXT = 0x1;
export const OPCODE_BINARY = 0x2;
export const OPCODE_CLOSE = 0x8;
export const OPCODE_PING = 0x9;
export const OPCODE_PONG = 0xa;

/** Console traffic comes in small pieces; a larger frame is refused (close code 1009). */
export const MAX_FRAME_PAYLOAD = 1 << 20;

export function acceptKey(key: string): string {
  return createHash("sha1")
    .update(key + WS_GUID)
    .digest("base64");
}

export function newClientKey(): string {
  return randomBytes(16).toString("base64");
}

/** One frame, FIN set. Clients must mask (§5.3), servers must not. */
export function encodeFrame(opcode: number, payload: Uint8Array, mask: boolean): Buffer {
  const len = payload.length;
  const lenBytes = len < 126 ? 0 : len < 65536 ? 2 : 8;
  const header = Buffer.alloc(2 + lenBytes + (mask ? 4 : 0));
  header[0] = 0x80 | opcode;
  header[1] = (mask ? 0x80 : 0) | (lenBytes === 0 ? len : lenBytes === 2 ? 126 : 127);
  if (lenBytes === 2) header.writeUInt16BE(len, 2);
  if (lenBytes === 8) header.writeBigUInt64BE(BigInt(len), 2);
  const body = Buffer.from(payload);
  if (mask) {
    const key = randomBytes(4);
    key.copy(header, 2 + lenBytes);
    for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  }
  return Buffer.concat([header, body]);
}

export interface Frame {
  readonly opcode: number;
  readonly payload: Buffer;
}

/**
 * Reassembles frames from a byte stream. Fragmented messages are joined; a protocol error (bad length,
 * unmasked client frame, oversized payload) is reported once through `onError` with its close code.
 */
export class FrameDecoder {
  private buffer: Buffer = Buffer.alloc(0);
  private fragments: Buffer[] = [];
  private fragmentOpcode = 0;
  private failed = false;

  constructor(
    private readonly expectMasked: boolean,
    private readonly onFrame: (frame: Frame) => void,
    private readonly onError: (code: number, reason: string) => void,
  ) {}

  push(chunk: Buffer): void {
    if (this.failed) return;
    this.buffer = this.buffer.length === 0 ? chunk : Buffer.concat([this.buffer, chunk]);
    for (;;) {
      if (this.buffer.length < 2) return;
      const b0 = this.buffer[0]!;
      const b1 = this.buffer[1]!;
      const fin = (b0 & 0x80) !== 0;
      const opcode = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let len = b1 & 0x7f;
      let offset = 2;
      if (len === 126) {
        if (this.buffer.length < 4) return;
        len = this.buffer.readUInt16BE(2);
        offset = 4;
      } else if (len === 127) {
        if (this.buffer.length < 10) return;
        const big = this.buffer.readBigUInt64BE(2);
        // Guest- and peer-controlled lengths are bounded before anything is allocated.
        if (big > BigInt(MAX_FRAME_PAYLOAD)) return void this.fail(1009, "frame too large");
        len = Number(big);
        offset = 10;
      }
      if (len > MAX_FRAME_PAYLOAD) return void this.fail(1009, "frame too large");
      if (masked !== this.expectMasked)
        return void this.fail(
          1002,
          this.expectMasked ? "client frames must be masked" : "server frames must not be masked",
        );
      const total = offset + (masked ? 4 : 0) + len;
      if (this.buffer.length < total) return;
      const payload = Buffer.from(this.buffer.subarray(total - len, total));
      if (masked) {
        const key = this.buffer.subarray(offset, offset + 4);
        for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!;
      }
      this.buffer = this.buffer.subarray(total);
      if (opcode >= 0x8) {
        if (!fin || len > 125) return void this.fail(1002, "bad control frame");
        this.onFrame({ opcode, payload });
        continue;
      }
      if (opcode === OPCODE_CONTINUATION) {
        if (this.fragments.length === 0) return void this.fail(1002, "continuation without a message");
      } else if (this.fragments.length > 0)
        return void this.fail(1002, "a new message inside a fragmented one");
      else this.fragmentOpcode = opcode;
      this.fragments.push(payload);
      const size = this.fragments.reduce((n, f) => n + f.length, 0);
      if (size > MAX_FRAME_PAYLOAD) return void this.fail(1009, "message too large");
      if (fin) {
        const message = Buffer.concat(this.fragments);
        this.fragments = [];
        this.onFrame({ opcode: this.fragmentOpcode, payload: message });
      }
    }
  }

  private fail(code: number, reason: string): void {
    this.failed = true;
    this.onError(code, reason);
  }
}

export function closePayload(code: number, reason: string): Buffer {
  const b = Buffer.alloc(2 + Buffer.byteLength(reason));
  b.writeUInt16BE(code, 0);
  b.write(reason, 2);
  return b;
}
