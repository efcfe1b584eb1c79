// The serial console's WebSocket against frames RFC 6455 says must fail the connection, sent byte by byte
// over a raw Unix socket to the real API server (a real VMM hosting the echoing stand-in guest behind it):
// each bad connection is failed, and a viewer attached meanwhile keeps working.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { closeAndKill } from "../../hypervisor/fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "../../hypervisor/fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { ApiClient, type SerialPortConnection } from "../client.ts";
import { apiSocketPath } from "../data-dir.ts";
import { ApiServer } from "./api-server.ts";

let home: string;
let hv: Hypervisor;
let server: ApiServer;
let client: ApiClient;
/** A well-behaved viewer attached for the whole file: it must keep working while others are failed. */
let witness: SerialPortConnection;
let witnessSaw = "";

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-ws-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096, 1));
  hv = await openFixtureHypervisor(home, join(home, "template.img"));
  server = new ApiServer(hv);
  await server.listenUnix(apiSocketPath(home));
  client = ApiClient.forDataDir(home);
  const op = await client.insertInstance({ name: "echo" });
  assert.equal((await client.waitUntilDone(op.id)).error, null);
  witness = await client.openSerialPort("echo");
  witness.onData((b) => {
    witnessSaw += b.toString("latin1");
  });
});

after(async () => {
  witness?.close();
  await server?.close();
  if (hv) await closeAndKill(hv);
  await rm(home, { recursive: true, force: true });
});

async function until(what: string, ok: () => boolean, ms = 10_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The witness types `text` and sees the guest echo it in capitals: the server still serves viewers. */
async function witnessStillServed(text: string): Promise<void> {
  witness.write(text);
  await until(`the witness's echo of ${text}`, () => witnessSaw.includes(text.toUpperCase()));
}

/** A client frame (masked, as RFC 6455 §5.3 requires of clients) with the first byte given whole. */
function frame(b0: number, payload: Buffer, mask = true): Buffer {
  const len = payload.length;
  const ext = len < 126 ? Buffer.alloc(0) : Buffer.alloc(len < 65536 ? 2 : 8);
  if (len >= 65536) ext.writeBigUInt64BE(BigInt(len));
  else if (len >= 126) ext.writeUInt16BE(len);
  const b1 = (mask ? 0x80 : 0) | (len < 126 ? len : len < 65536 ? 126 : 127);
  const key = mask ? randomBytes(4) : Buffer.alloc(0);
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i]! ^= key[i & 3]!;
  return Buffer.concat([Buffer.from([b0, b1]), ext, key, body]);
}

interface RawConnection {
  readonly socket: Socket;
  /** Everything the server sent after its handshake answer. */
  readonly received: () => Buffer;
  readonly closed: Promise<void>;
}

/** Opens the console WebSocket by hand on the API's Unix socket and checks the 101 answer. */
async function rawConsole(): Promise<RawConnection> {
  const socket = connect(apiSocketPath(home));
  let data = Buffer.alloc(0);
  socket.on("data", (c: Buffer) => {
    data = Buffer.concat([data, c]);
  });
  socket.on("error", () => {});
  const closed = new Promise<void>((resolve) => socket.once("close", () => resolve()));
  socket.write(
    "GET /v1/instances/echo/serialPort HTTP/1.1\r\nHost: tsvm\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
      `Sec-WebSocket-Key: ${randomBytes(16).toString("base64")}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
  );
  await until("the handshake answer", () => data.includes("\r\n\r\n"));
  const end = data.indexOf("\r\n\r\n") + 4;
  assert.match(data.subarray(0, end).toString("latin1"), /^HTTP\/1\.1 101 /);
  return { socket, received: () => data.subarray(end), closed };
}

/**
 * Sends `bytes` and expects the server to fail the connection: the socket closes, and when a close frame
 * came first, its code is `code`.
 */
async function expectFailed(bytes: Buffer | Buffer[], code: number): Promise<void> {
  const conn = await rawConsole();
  for (const b of Array.isArray(bytes) ? bytes : [bytes]) conn.socket.write(b);
  await Promise.race([
    conn.closed,
    new Promise((_, reject) =>
      setTimeout(() => reject(new Error(`the server kept the connection open (expected ${code})`)), 5000),
    ),
  ]);
  // Console output may have come before the close frame: find the close frame among the server's frames.
  const got = conn.received();
  let at = 0;
  let closeCode: number | undefined;
  while (at + 2 <= got.length) {
    const opcode = got[at]! & 0x0f;
    let len = got[at + 1]! & 0x7f;
    let head = 2;
    if (len === 126) {
      len = got.readUInt16BE(at + 2);
      head = 4;
    } else if (len === 127) {
      len = Number(got.readBigUInt64BE(at + 2));
      head = 10;
    }
    if (opcode === 0x8 && len >= 2) closeCode = got.readUInt16BE(at + head);
    at += head + len;
  }
  if (closeCode !== undefined) assert.equal(closeCode, code);
}

test("a frame with a reserved bit set fails the connection (1002)", async () => {
  await expectFailed(frame(0x80 | 0x40 | 0x2, Buffer.from("x")), 1002); // RSV1, no extension agreed
  await expectFailed(frame(0x80 | 0x20 | 0x2, Buffer.from("x")), 1002); // RSV2
  await expectFailed(frame(0x80 | 0x10 | 0x1, Buffer.from("x")), 1002); // RSV3
  await witnessStillServed("after reserved bits");
});

test("reserved data and control opcodes fail the connection (1002)", async () => {
  for (const opcode of [0x3, 0x7, 0xb, 0xf]) await expectFailed(frame(0x80 | opcode, Buffer.from("x")), 1002);
  await witnessStillServed("after reserved opcodes");
});

test("a text message that is not UTF-8 fails the connection (1007), also when split over fragments", async () => {
  await expectFailed(frame(0x81, Buffer.from([0x68, 0xff, 0xfe])), 1007);
  await expectFailed(frame(0x81, Buffer.from([0xed, 0xa0, 0x80])), 1007); // an encoded UTF-16 surrogate
  // The first byte of a two-byte sequence ends one fragment; the next fragment does not continue it.
  await expectFailed([frame(0x01, Buffer.from([0x61, 0xc3])), frame(0x80, Buffer.from([0x41]))], 1007);
  await witnessStillServed("after bad utf-8");
});

test("a close frame with a 1-byte payload, or an invalid close code, fails the connection (1002)", async () => {
  await expectFailed(frame(0x88, Buffer.from([0x03])), 1002);
  const reservedCode = Buffer.alloc(2);
  reservedCode.writeUInt16BE(1005); // "MUST NOT be set as a status code in a Close control frame"
  await expectFailed(frame(0x88, reservedCode), 1002);
  await witnessStillServed("after bad close");
});

test("unmasked client frames, fragmented control frames and orphan continuations fail the connection", async () => {
  await expectFailed(frame(0x82, Buffer.from("x"), false), 1002);
  await expectFailed(frame(0x09, Buffer.from("p")), 1002); // a ping without FIN
  await expectFailed(frame(0x80, Buffer.from("x")), 1002); // a continuation with nothing to continue
  await expectFailed([frame(0x01, Buffer.from("a")), frame(0x81, Buffer.from("b"))], 1002); // new message mid-way
  await witnessStillServed("after framing errors");
});

test("a message over maxPayload (1 MiB) fails with 1009 before the server reads it all", async () => {
  const head = Buffer.from([0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x20, 0, 0, 1, 2, 3, 4]); // 2 MiB announced
  await expectFailed(head, 1009);
  // Fragments that add up past the bound are refused the same way.
  const half = Buffer.alloc(600 * 1024, 0x61);
  await expectFailed([frame(0x02, half), frame(0x80, half)], 1009);
  await witnessStillServed("after oversized");
});

test("fragments are bounded: 100 (some empty) make one message; 100,000 empty ones fail (1008)", async () => {
  const conn = await rawConsole();
  conn.socket.write(frame(0x02, Buffer.alloc(0)));
  for (let i = 0; i < 98; i++) conn.socket.write(frame(0x00, Buffer.from(i % 2 ? "" : "z")));
  conn.socket.write(frame(0x80, Buffer.from("end")));
  await until("the echo of the fragmented message", () =>
    conn
      .received()
      .toString("latin1")
      .includes(`${"Z".repeat(49)}END`),
  );
  conn.socket.destroy();
  // Each fragment, empty or not, counts: a list entry per fragment cannot grow without bound.
  const empty = frame(0x00, Buffer.alloc(0));
  await expectFailed(
    [frame(0x02, Buffer.alloc(0)), Buffer.concat(Array.from({ length: 100_000 }, () => empty))],
    1008,
  );
  await witnessStillServed("after empty fragments");
});

test("a ping gets its pong, text and binary messages are typed, and a clean close is answered", async () => {
  const conn = await rawConsole();
  conn.socket.write(frame(0x89, Buffer.from("are you there")));
  conn.socket.write(frame(0x81, Buffer.from("text ")));
  conn.socket.write(frame(0x82, Buffer.from("binary")));
  await until("the pong and the echo", () => {
    const got = conn.received().toString("latin1");
    // Frame headers sit between the two echoes in the raw bytes.
    return got.includes("are you there") && got.includes("TEXT ") && got.includes("BINARY");
  });
  assert.ok(conn.received().includes(Buffer.from([0x8a, 13])), "a pong frame carrying the ping's payload");
  const bye = Buffer.alloc(2);
  bye.writeUInt16BE(1000);
  conn.socket.write(frame(0x88, bye));
  await conn.closed;
  const got = conn.received();
  const close = got.lastIndexOf(Buffer.from([0x88, 2, 0x03, 0xe8]));
  assert.ok(close >= 0, "the server answers the close with 1000");
});
