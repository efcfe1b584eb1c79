// Mapping a file copy-on-write with real files: the bytes are the file's, holes read as zeros, writes stay
// in the process and never reach the file, a 1 GiB file maps at once, and a wrong size or a missing file is
// refused with the file named.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, open, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { MappedFileError, mapFilePrivate } from "./mapped-file.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-map-"));
  dirs.push(dir);
  return dir;
}

const sha256 = (bytes: Uint8Array) => createHash("sha256").update(bytes).digest("hex");

test("a mapped file reads as the file; writes to it stay in the process", async () => {
  const path = join(await tempDir(), "ram.bin");
  const bytes = Buffer.alloc(64 * 1024);
  for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 7 + 3) & 0xff;
  await writeFile(path, bytes);
  const mapped = new Uint8Array(mapFilePrivate(path, bytes.length));
  assert.equal(mapped.length, bytes.length);
  assert.deepEqual(Buffer.from(mapped), bytes);
  mapped.fill(0xaa, 100, 20_000);
  mapped[bytes.length - 1] = 0x55;
  assert.equal(mapped[150], 0xaa);
  assert.equal(sha256(await readFile(path)), sha256(bytes), "the file is unchanged");
  // A second mapping of the same file sees the file, not the first mapping's writes.
  const again = new Uint8Array(mapFilePrivate(path, bytes.length));
  assert.equal(again[150], bytes[150]);
});

test("a sparse 1 GiB file maps at once; its holes read as zeros and its data as written", async () => {
  const path = join(await tempDir(), "big.bin");
  const size = 1 << 30;
  const fh = await open(path, "wx");
  await fh.write(Buffer.from("in the middle"), 0, 13, 512 << 20);
  await fh.truncate(size);
  await fh.close();
  const t0 = performance.now();
  const mapped = new Uint8Array(mapFilePrivate(path, size));
  const ms = performance.now() - t0;
  assert.ok(ms < 500, `mapping 1 GiB took ${ms.toFixed(1)} ms`);
  assert.equal(Buffer.from(mapped.subarray(512 << 20, (512 << 20) + 13)).toString(), "in the middle");
  assert.equal(mapped[0], 0);
  assert.equal(mapped[size - 1], 0);
  mapped[size - 1] = 1;
  const tail = Buffer.alloc(1);
  const check = await open(path, "r");
  await check.read(tail, 0, 1, size - 1);
  await check.close();
  assert.equal(tail[0], 0, "the write did not reach the file");
});

test("a file of another size, or none, is refused naming the file", async () => {
  const dir = await tempDir();
  const path = join(dir, "short.bin");
  await writeFile(path, Buffer.alloc(4096));
  assert.throws(
    () => mapFilePrivate(path, 8192),
    (e: Error) =>
      e instanceof MappedFileError &&
      e.code === "map-failed" &&
      e.message === `cannot map ${path}: it is 4096 bytes, expected 8192`,
  );
  assert.throws(() => mapFilePrivate(join(dir, "missing.bin"), 4096), { code: "ENOENT" });
  const empty = join(dir, "empty.bin");
  await writeFile(empty, "");
  assert.equal(mapFilePrivate(empty, 0).byteLength, 0);
});
