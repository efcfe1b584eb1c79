// The live migration stream (migration-stream.ts): what is sent in rounds arrives whole, and every kind of
// bad stream (forged, corrupted, cut, oversized, out of bounds) is refused with one line naming the problem.
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  type MigrationHello,
  MigrationStreamError,
  MigrationStreamWriter,
  receiveMigration,
} from "./migration-stream.ts";

const RAM_BYTES = 64 * 1024;
const HELLO: MigrationHello = { engine: "riscv", memoryBytes: RAM_BYTES, ticket: "t-0123456789" };

/** A machine-state-like tree: live RAM, a small section and a bigint, as the engine's has. */
function machine() {
  const ram = new Uint8Array(RAM_BYTES);
  ram.fill(7, 4096, 3 * 4096);
  ram[10 * 4096 + 5] = 9;
  return { ram, data: { ram, regs: new Uint32Array([1, 2, 0xffffffff]), pc: 0x8020_0000n, name: "hart0" } };
}

/** A whole stream as a source sends it: two rounds, a state, a round after it and a second state, END. */
async function stream(hello: MigrationHello = HELLO, ramOverride?: Uint8Array): Promise<Buffer> {
  const chunks: Buffer[] = [];
  const w = new MigrationStreamWriter({ write: async (b) => void chunks.push(b) });
  const { ram, data } = machine();
  const sent = ramOverride ?? ram;
  await w.hello(hello);
  const round0 = await w.pages(sent, null);
  if (!ramOverride) assert.equal(round0, 3 * 4096, "round 0: the non-zero pages only");
  sent[3 * 4096] = 1;
  await w.pages(sent, Uint32Array.of(3, 4));
  await w.state({ engine: "riscv-virt", version: 1, data: { ...data, name: "stale" } }, ram);
  ram[12 * 4096] = 2;
  await w.pages(ram, Uint32Array.of(12));
  await w.state({ engine: "riscv-virt", version: 1, data }, ram);
  await w.end();
  const all = Buffer.concat(chunks);
  assert.equal(all.length, w.bytes);
  return all;
}

/** `bytes` as a network delivers them: in chunks of odd sizes. */
async function* chunked(bytes: Buffer, size = 1000): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += size) yield bytes.subarray(at, at + size);
}

test("a stream sent in rounds arrives whole: RAM as last sent, the last state, its other sections and bigints", async () => {
  const bytes = await stream();
  const got = await receiveMigration(chunked(bytes), HELLO);
  const data = got.snapshot.data as ReturnType<typeof machine>["data"];
  const { ram } = machine();
  ram[3 * 4096] = 1;
  ram[12 * 4096] = 2;
  assert.ok(Buffer.from(data.ram).equals(Buffer.from(ram)), "RAM as the source left it");
  assert.deepEqual([...data.regs], [1, 2, 0xffffffff]);
  assert.equal(data.pc, 0x8020_0000n);
  assert.equal(data.name, "hart0", "the later STATE replaced the earlier");
  assert.equal(got.snapshot.engine, "riscv-virt");
  assert.equal(got.bytes, bytes.length);
  assert.equal(got.ramBytes, (3 + 2 + 1) * 4096);
});

test("bad streams are refused with one line naming the problem", async () => {
  const good = await stream();
  const refused = async (input: Buffer | AsyncIterable<Buffer>, why: RegExp, expect = HELLO) => {
    const err = await receiveMigration(Buffer.isBuffer(input) ? chunked(input, 4096) : input, expect).then(
      () => assert.fail("accepted"),
      (e: unknown) => e,
    );
    assert.ok(err instanceof MigrationStreamError, String(err));
    assert.equal(err.code, "move-failed");
    assert.match(err.message, why);
    assert.ok(!err.message.includes("\n"), "one line");
  };
  await refused(good, /ticket is wrong/, { ...HELLO, ticket: "t-other" });
  await refused(good, /bytes of RAM, not 131072/, { ...HELLO, memoryBytes: 2 * RAM_BYTES });
  await refused(good, /engine riscv, not kvm/, { ...HELLO, engine: "kvm" });
  // A byte flipped in a page (past HELLO): only END's digest can tell.
  const flipped = Buffer.from(good);
  flipped[200] ^= 0x40;
  await refused(flipped, /SHA-256 does not match/);
  await refused(good.subarray(0, good.length - 10), /cut after \d+ bytes, in a frame/);
  await refused(good.subarray(0, good.length - 37), /cut after \d+ bytes, before its end/);
  await refused(Buffer.from("GET / HTTP/1.1\r\n\r\n"), /unknown kind 71/);
  const huge = Buffer.alloc(5);
  huge.writeUInt8(1, 0);
  huge.writeUInt32LE(0xffffffff, 1);
  await refused(huge, /more than 4096/);
  // A page that is not the HELLO's RAM: written into a buffer of the size it said, it would not fit.
  const bigger = new Uint8Array(4 * RAM_BYTES);
  bigger[3 * RAM_BYTES] = 1;
  await refused(await stream(HELLO, bigger), /outside the guest's RAM/);
  // Pages before HELLO.
  await refused(good.subarray(good.readUInt32LE(1) + 5), /does not begin with HELLO/);
});

test("a disk sent after the pause lands at its path only once the whole stream is verified", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-migration-disk-"));
  try {
    const source = join(dir, "source.qcow2");
    // Larger than one DISK frame (8 MiB), and not a multiple of it.
    const content = randomBytes((9 << 20) + 123);
    await writeFile(source, content);
    const withDisk = async (): Promise<Buffer> => {
      const chunks: Buffer[] = [];
      const w = new MigrationStreamWriter({ write: async (b) => void chunks.push(b) });
      const { ram, data } = machine();
      await w.hello(HELLO);
      await w.pages(ram, null);
      assert.equal(await w.disk(source), content.length);
      await w.state({ engine: "riscv-virt", version: 1, data }, ram);
      await w.end();
      return Buffer.concat(chunks);
    };
    const good = await withDisk();
    const target = join(dir, "vm", "disk.qcow2");
    await mkdir(join(dir, "vm"));
    const disk = { path: target, maxBytes: 16 << 20 };
    const left = () => readdir(join(dir, "vm"));

    // Corrupted in its last byte: nothing is left in the VM's directory, not even the staged file.
    const flipped = Buffer.from(good);
    flipped[flipped.length - 40] ^= 1;
    await assert.rejects(receiveMigration(chunked(flipped, 65536), HELLO, undefined, disk), /SHA-256/);
    assert.deepEqual(await left(), []);
    // Cut in the middle of the disk.
    await assert.rejects(
      receiveMigration(chunked(good.subarray(0, 5 << 20), 65536), HELLO, undefined, disk),
      /cut after/,
    );
    assert.deepEqual(await left(), []);
    // Larger than the target allows.
    await assert.rejects(
      receiveMigration(chunked(good, 65536), HELLO, undefined, { path: target, maxBytes: 1 << 20 }),
      /disk is larger than the 1048576 bytes/,
    );
    assert.deepEqual(await left(), []);
    // A disk the target does not expect, and none where it expects one.
    await assert.rejects(
      receiveMigration(chunked(good, 65536), HELLO),
      /carries a disk, and the target expects none/,
    );
    await assert.rejects(
      receiveMigration(chunked(await stream(), 4096), HELLO, undefined, disk),
      /carried no disk/,
    );
    assert.deepEqual(await left(), []);

    const got = await receiveMigration(chunked(good, 65536), HELLO, undefined, disk);
    assert.equal(got.diskBytes, content.length);
    assert.ok((await readFile(target)).equals(content), "the disk as the source had it");
    assert.deepEqual(await left(), ["disk.qcow2"]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
