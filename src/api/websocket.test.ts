import assert from "node:assert/strict";
import { test } from "node:test";
import {
  acceptKey,
  encodeFrame,
  type Frame,
  FrameDecoder,
  MAX_FRAME_PAYLOAD,
  OPCODE_BINARY,
  OPCODE_CONTINUATION,
  OPCODE_PING,
  OPCODE_TEXT,
} from "./websocket.ts";

function decodeAll(chunks: Buffer[], masked: boolean): { frames: Frame[]; errors: Array<[number, string]> } {
  const frames: Frame[] = [];
  const errors: Array<[number, string]> = [];
  const d = new FrameDecoder(
    masked,
    (f) => frames.push(f),
    (code, reason) => errors.push([code, reason]),
  );
  for (const c of chunks) d.push(c);
  return { frames, errors };
}

test("the accept key of RFC 6455's example", () => {
  assert.equal(acceptKey("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
});

test("masked and unmasked frames of every length class round-trip, byte by byte too", () => {
  for (const len of [0, 5, 125, 126, 65535, 65536]) {
    const payload = Buffer.alloc(len, 0x61 + (len % 26));
    for (const masked of [true, false]) {
      const wire = encodeFrame(OPCODE_BINARY, payload, masked);
      const whole = decodeAll([wire], masked);
      assert.deepEqual(whole.errors, []);
      assert.equal(whole.frames.length, 1);
      assert.ok(whole.frames[0]!.payload.equals(payload), `len ${len}`);
      if (len <= 126) {
        const split = decodeAll(
          [...wire].map((b) => Buffer.from([b])),
          masked,
        );
        assert.ok(split.frames[0]!.payload.equals(payload));
      }
    }
  }
});

test("fragmented messages are joined; control frames may come between fragments", () => {
  const first = encodeFrame(OPCODE_TEXT, Buffer.from("hel"), true);
  first[0] = first[0]! & 0x7f; // FIN clear
  const ping = encodeFrame(OPCODE_PING, Buffer.from("p"), true);
  const last = encodeFrame(OPCODE_CONTINUATION, Buffer.from("lo"), true);
  const { frames, errors } = decodeAll([first, ping, last], true);
  assert.deepEqual(errors, []);
  assert.deepEqual(
    frames.map((f) => [f.opcode, f.payload.toString()]),
    [
      [OPCODE_PING, "p"],
      [OPCODE_TEXT, "hello"],
    ],
  );
});

test("peer-controlled lengths and masking are enforced: oversized 1009, unmasked client frame 1002", () => {
  const huge = Buffer.alloc(10);
  huge[0] = 0x82;
  huge[1] = 0x80 | 127;
  huge.writeBigUInt64BE(BigInt(MAX_FRAME_PAYLOAD) + 1n, 2);
  assert.deepEqual(decodeAll([huge], true).errors, [[1009, "frame too large"]]);
  assert.equal(decodeAll([encodeFrame(OPCODE_BINARY, Buffer.from("x"), false)], true).errors[0]![0], 1002);
  const orphan = encodeFrame(OPCODE_CONTINUATION, Buffer.from("x"), true);
  assert.equal(decodeAll([orphan], true).errors[0]![0], 1002);
});
