import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { STREAM_MAX_FRAME, StreamFrameSocket } from "./stream-frame-socket.ts";

/** A peer speaking the stream protocol on a real Unix socket: records what it receives. */
class Peer {
  readonly sockets: Socket[] = [];
  received = Buffer.alloc(0);
  server!: Server;
  constructor(readonly path: string) {}

  listen(): Promise<void> {
    this.server = createServer((s) => {
      this.sockets.push(s);
      s.on("data", (b) => {
        this.received = Buffer.concat([this.received, b]);
      });
      s.on("error", () => {});
    });
    return new Promise((resolve) => this.server.listen(this.path, resolve));
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise((resolve) => this.server.close(resolve));
  }

  get last(): Socket {
    return this.sockets.at(-1)!;
  }
}

function framed(...frames: Uint8Array[]): Buffer {
  return Buffer.concat(
    frames.flatMap((f) => {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(f.length);
      return [h, Buffer.from(f)];
    }),
  );
}

function frame(n: number, fill: number): Uint8Array {
  return new Uint8Array(n).fill(fill);
}

async function until(what: string, cond: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function setup(hello?: Uint8Array) {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-sfs-"));
  const path = join(dir, "s.sock");
  const peer = new Peer(path);
  await peer.listen();
  const changes: boolean[] = [];
  const sock = new StreamFrameSocket(path, {
    hello,
    backoffMs: 10,
    onConnectionChange: (up) => changes.push(up),
  });
  const got: Uint8Array[] = [];
  sock.onFrame = (f) => {
    got.push(new Uint8Array(f));
    return true;
  };
  await until("connection", () => sock.connected && peer.sockets.length === 1);
  const cleanup = async () => {
    await sock.close();
    await peer.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { dir, path, peer, sock, got, changes, cleanup };
}

test("frames go out with a 4-byte big-endian length after the hello, and come in split across reads", async () => {
  const { peer, sock, got, changes, cleanup } = await setup(new TextEncoder().encode("hi\n"));
  try {
    sock.send(frame(60, 1));
    sock.send(frame(1514, 2));
    await until("peer got both", () => peer.received.length === 3 + 64 + 1518);
    assert.deepEqual(peer.received.subarray(0, 3), Buffer.from("hi\n"));
    assert.deepEqual(peer.received.subarray(3), framed(frame(60, 1), frame(1514, 2)));
    // One byte at a time: the prefix and the frame split over many reads.
    const bytes = framed(frame(100, 7), frame(42, 8));
    for (const b of bytes) {
      peer.last.write(Buffer.from([b]));
      await new Promise((r) => setTimeout(r, 1));
    }
    await until("two frames", () => got.length === 2);
    assert.deepEqual(got, [frame(100, 7), frame(42, 8)]);
    assert.equal(sock.stats.txFrames, 2);
    assert.equal(sock.stats.rxFrames, 2);
    assert.deepEqual(changes, [true]);
  } finally {
    await cleanup();
  }
});

test("a hostile length prefix drops the connection; the client reconnects and says hello again", async () => {
  const { peer, sock, got, changes, cleanup } = await setup(new TextEncoder().encode("hello\n"));
  try {
    const bad = Buffer.alloc(4);
    bad.writeUInt32BE(STREAM_MAX_FRAME + 1);
    peer.last.write(Buffer.concat([framed(frame(20, 3)), bad, Buffer.alloc(100)]));
    await until("reconnect", () => peer.sockets.length === 2 && sock.connected);
    assert.equal(sock.stats.protocolErrors, 1);
    assert.equal(sock.stats.reconnects, 1);
    assert.deepEqual(got, [frame(20, 3)], "the frame before the bad prefix was delivered, nothing after");
    assert.deepEqual(changes, [true, false, true]);
    await until("second hello", () => peer.received.toString().split("hello\n").length === 3);
    // The new connection works both ways.
    peer.last.write(framed(frame(30, 4)));
    await until("frame after reconnect", () => got.length === 2);
    assert.deepEqual(got[1], frame(30, 4));
  } finally {
    await cleanup();
  }
});

test("the peer restarting: frames sent while it is away are dropped and counted, then traffic resumes", async () => {
  const { path, peer, sock, got, cleanup } = await setup();
  try {
    await peer.close();
    await until("down", () => !sock.connected);
    sock.send(frame(60, 5));
    assert.equal(sock.stats.txDropped, 1);
    // Stays away for a few backoff rounds (ENOENT / ECONNREFUSED), then comes back.
    await new Promise((r) => setTimeout(r, 100));
    const again = new Peer(path);
    rmSync(path, { force: true });
    await again.listen();
    try {
      await until("reconnected", () => sock.connected && again.sockets.length === 1);
      sock.send(frame(61, 6));
      await until("peer got it", () => again.received.length === 65);
      assert.deepEqual(again.received, framed(frame(61, 6)));
      again.last.write(framed(frame(50, 9)));
      await until("guest got it", () => got.length === 1);
    } finally {
      await again.close();
    }
  } finally {
    await cleanup();
  }
});

test("while the guest has no receive space the socket is not read; resume delivers the rest in order", async () => {
  const { peer, sock, cleanup } = await setup();
  try {
    const got: number[] = [];
    let space = 2;
    sock.onFrame = (f) => {
      if (space === 0) return false;
      space--;
      got.push(f[0]!);
      return true;
    };
    const frames = Array.from({ length: 200 }, (_, i) => frame(1000, i & 0xff));
    // More than the socket buffers hold, so the peer sees backpressure too.
    for (let round = 0; round < 5; round++) peer.last.write(framed(...frames));
    await until("first two", () => got.length === 2);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(got.length, 2, "nothing delivered without space");
    assert.ok(peer.last.writableLength > 0, "the peer is held back by the kernel buffers");
    for (let delivered = 2; delivered < 1000; ) {
      space = 7;
      sock.resume();
      await until("more", () => got.length > delivered || got.length === 1000);
      delivered = got.length;
    }
    assert.equal(got.length, 1000);
    assert.deepEqual(
      got,
      Array.from({ length: 1000 }, (_, i) => (i % 200) & 0xff),
    );
    assert.equal(sock.stats.rxFrames, 1000);
  } finally {
    await cleanup();
  }
});

test("close stops reconnecting", async () => {
  const { peer, sock, cleanup } = await setup();
  await sock.close();
  await peer.close();
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(sock.connected, false);
  await cleanup();
});
