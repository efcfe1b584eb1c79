import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { closeSync, mkdtempSync, openSync, readSync, rmSync, truncateSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { skipUnless } from "../../../../tests/skip-unless.ts";
import { badImage, oneClusterImage, patch, u32, u64 } from "./fixtures/image-bytes.ts";
import { openDisk, reclaimLeaks } from "./index.ts";

const skip = {
  skip: skipUnless(
    spawnSync("qemu-img", ["--version"]).status === 0,
    "qemu-img (qemu-utils) is not installed",
  ),
};
const dir = mkdtempSync(join(tmpdir(), "tsvm-qcow2-leaks-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
const CLUSTER = 65536;
/** Where createQcow2 puts refcount block 0 (16-bit entries). */
const REFBLOCK = 2 * CLUSTER;
let n = 0;

const call = (f: (done: (e: string | null) => void) => void) =>
  new Promise<string | null>((resolve) => f(resolve));

/** A fresh tsvm qcow2 holding one cluster of 0x77 (the L2 table is cluster 4, the data cluster 5). */
const image = (sizeBytes = 64 * MiB) => oneClusterImage(join(dir, `img${n++}.qcow2`), sizeBytes);

function peek(path: string, offset: number, length: number): Buffer {
  const fd = openSync(path, "r");
  const b = Buffer.alloc(length);
  readSync(fd, b, 0, length, offset);
  closeSync(fd);
  return b;
}
const markedClean = (path: string) => (peek(path, 92, 4).readUInt32BE(0) & 0x80000000) !== 0;
/** As a crashed writer leaves the file: the clean mark gone. */
const unmark = (path: string) => patch(path, 92, u32(0));
const leak = (path: string, cluster: number) => patch(path, REFBLOCK + cluster * 2, [0, 1]);

function check(path: string): { status: number | null; out: string } {
  const r = spawnSync("qemu-img", ["check", path], { encoding: "utf8" });
  return { status: r.status, out: r.stdout + r.stderr };
}

async function refusedForWriting(path: string, problem: RegExp): Promise<void> {
  await assert.rejects(openDisk(path), badImage(path, problem));
  // Reading never counts references: the guest's data stays readable.
  const d = await openDisk(path, { readOnly: true });
  await d.close();
}

test(
  "a clean close marks the file, which qemu-img checks and describes without a word about the mark",
  skip,
  async () => {
    const p = await image();
    assert.ok(markedClean(p));
    const c = check(p);
    assert.equal(c.status, 0, c.out);
    assert.match(c.out, /^No errors were found on the image\.$/m);
    const info = spawnSync("qemu-img", ["info", p], { encoding: "utf8" });
    assert.equal(info.status, 0);
    assert.doesNotMatch(info.stdout + info.stderr, /warn|autoclear|unknown/i);
    // Open for writing, the mark is gone until the close: a crash meanwhile leaves the file unmarked.
    const d = await openDisk(p);
    assert.ok(!markedClean(p));
    await d.close();
    assert.ok(markedClean(p));
  },
);

test(
  "a writable open of an unmarked file gives back leaked clusters, past the file's end too",
  skip,
  async () => {
    const p = await image();
    // qemu-img check counts only clusters inside the file; a killed writer's pool mostly lies past its end.
    truncateSync(p, 10 * CLUSTER);
    leak(p, 9);
    leak(p, 300);
    // Still marked: the open trusts the mark and counts nothing (the cheap path every clean start takes).
    const d0 = await openDisk(p);
    await d0.close();
    assert.match(check(p).out, /1 leaked clusters were found/);
    unmark(p);
    assert.equal(check(p).status, 3);
    const d = await openDisk(p);
    const got = new Uint8Array(CLUSTER);
    assert.equal(await call((done) => d.read(0, got, done)), null);
    assert.ok(
      got.every((x) => x === 0x77),
      "the data survived the repair",
    );
    await d.close();
    const c = check(p);
    assert.equal(c.status, 0, c.out);
    assert.deepEqual([...peek(p, REFBLOCK + 300 * 2, 2)], [0, 0], "the leak past the end went too");
    // reclaimLeaks does the same for the hypervisor, and says how much came back.
    leak(p, 8);
    leak(p, 400);
    unmark(p);
    assert.equal(await reclaimLeaks(p), 2);
    assert.equal(check(p).status, 0);
    assert.equal(await reclaimLeaks(p), 0);
  },
);

test("a write by QEMU clears the mark, so tsvm counts again after QEMU", skip, async () => {
  const p = await image();
  const io = spawnSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x11 1M 64k", p], { encoding: "utf8" });
  assert.equal(io.status, 0, io.stderr);
  assert.ok(!markedClean(p), "QEMU clears an autoclear bit it does not know");
  leak(p, 500);
  assert.equal(await reclaimLeaks(p), 1);
  assert.equal(check(p).status, 0);
});

test("a file from elsewhere is counted though it carries the mark (evenIfMarkedClean)", skip, async () => {
  const p = await image();
  leak(p, 600);
  assert.ok(markedClean(p));
  assert.equal(await reclaimLeaks(p), 0, "the mark is trusted by default");
  assert.equal(await reclaimLeaks(p, { evenIfMarkedClean: true }), 1);
  assert.ok(markedClean(p), "counted, it is marked again");
  assert.equal(check(p).status, 0);
  // A marked file whose refcount is below its references is refused, not trusted.
  patch(p, REFBLOCK + 5 * 2, [0, 0]);
  await assert.rejects(
    reclaimLeaks(p, { evenIfMarkedClean: true }),
    badImage(p, /cluster 5 is referenced 1 times but its refcount is 0/),
  );
});

test("the repair refuses a refcount lower than the references: corruption, not a leak", skip, async () => {
  const p = await image();
  patch(p, REFBLOCK + 5 * 2, [0, 0]); // the data cluster, counted free
  unmark(p);
  await refusedForWriting(
    p,
    /cluster 5 is referenced 1 times but its refcount is 0; repair it with qemu-img/,
  );
});

test("the repair refuses an L1 table naming one L2 table twice, reading it once", skip, async () => {
  const p = await image(2048 * MiB); // 4 L1 entries
  const l1 = 3 * CLUSTER;
  patch(p, l1 + 8, [...peek(p, l1, 8)]);
  unmark(p);
  await refusedForWriting(p, /L2 table 1 at 0x40000 overlaps other metadata/);
});

test("the repair refuses a refcount block beyond the end of the file", skip, async () => {
  const p = await image();
  patch(p, CLUSTER + 8, u64(2 ** 40)); // refcount table entry 1
  unmark(p);
  await refusedForWriting(p, /refcount block 1 at 0x10000000000 lies beyond the end of the file/);
});

test("the repair refuses references that overflow a 1-bit refcount", skip, async () => {
  const p = join(dir, "rc1.qcow2");
  assert.equal(
    spawnSync("qemu-img", ["create", "-q", "-f", "qcow2", "-o", "refcount_bits=1", p, "64M"]).status,
    0,
  );
  assert.equal(spawnSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0x22 0 64k", p]).status, 0);
  const l1 = Number(peek(p, 40, 8).readBigUInt64BE(0));
  const l2 = Number(peek(p, l1, 8).readBigUInt64BE(0) & 0x00fffffffffffe00n);
  patch(p, l2 + 8, [...peek(p, l2, 8)]); // guest cluster 1 shares guest cluster 0's host cluster
  await refusedForWriting(p, /is referenced more often than its 1-bit refcount can count/);
});
