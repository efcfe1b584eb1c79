import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { openProbedDisk } from "./probed-disk.ts";
import { createQcow2 } from "./qcow2/index.ts";

const dir = mkdtempSync(join(tmpdir(), "tsvm-probed-"));
after(() => rmSync(dir, { recursive: true, force: true }));

const call = (f: (done: (e: string | null) => void) => void) =>
  new Promise<string | null>((resolve) => f(resolve));

const MAGIC = [0x51, 0x46, 0x49, 0xfb];

test("a raw file opens raw, with discard, and its guest cannot write the qcow2 magic into sector 0", async () => {
  const p = join(dir, "guest.raw");
  writeFileSync(p, new Uint8Array(8192).fill(7));
  const disk = await openProbedDisk(p);
  assert.equal(disk.format, "raw");
  assert.equal(disk.sizeBytes, 8192);
  assert.equal(typeof disk.discard, "function");
  assert.equal(typeof disk.writeZeroes, "function");
  const header = new Uint8Array(512);
  header.set(MAGIC);
  assert.match(
    (await call((d) => disk.write(0, header, d)))!,
    /refused a write of the qcow2 magic to sector 0/,
  );
  assert.deepEqual(new Uint8Array(readFileSync(p)), new Uint8Array(8192).fill(7), "nothing written");
  // Elsewhere the magic is data like any other, and sector 0 takes anything else.
  assert.equal(await call((d) => disk.write(512, header, d)), null);
  assert.equal(await call((d) => disk.write(0, new Uint8Array(512).fill(1), d)), null);
  assert.equal(await call((d) => disk.writeZeroes(1024, 512, true, d)), null);
  await disk.close();
  const want = new Uint8Array(8192).fill(7);
  want.set(header, 512);
  want.fill(1, 0, 512);
  want.fill(0, 1024, 1536);
  assert.deepEqual(new Uint8Array(readFileSync(p)), want);
  // Still raw when probed again.
  const again = await openProbedDisk(p);
  assert.equal(again.format, "raw");
  await again.close();
});

test("a qcow2 file opens as qcow2 (sector 0 is the guest's to write); a damaged one is refused naming it", async () => {
  const q = join(dir, "disk.qcow2");
  await createQcow2(q, { sizeBytes: 1 << 20 });
  const disk = await openProbedDisk(q);
  assert.equal(disk.format, "qcow2");
  assert.equal(disk.sizeBytes, 1 << 20);
  const header = new Uint8Array(512);
  header.set(MAGIC);
  assert.equal(await call((d) => disk.write(0, header, d)), null);
  const back = new Uint8Array(512);
  assert.equal(await call((d) => disk.read(0, back, d)), null);
  assert.deepEqual(back, header);
  await disk.close();

  const bad = join(dir, "bad.qcow2");
  const bytes = new Uint8Array(4096).fill(0xee);
  bytes.set(MAGIC);
  writeFileSync(bad, bytes);
  await assert.rejects(openProbedDisk(bad), (e: Error & { code?: string }) => {
    assert.equal(e.code, "bad-disk-image");
    assert.match(e.message, /bad\.qcow2/);
    return true;
  });
});
