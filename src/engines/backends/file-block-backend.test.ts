import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import {
  closeSync,
  fsyncSync,
  mkdtempSync,
  openSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { GuestRam } from "../../machine/bus/guest-ram.ts";
import { CallbackIrqLine } from "../../machine/bus/irq-line.ts";
import {
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VirtioBlk,
} from "../../machine/devices/virtio/virtio-blk.ts";
import { VirtioMmio } from "../../machine/devices/virtio/virtio-mmio.ts";
import { VirtioTestDriver } from "../../machine/devices/virtio/virtio-test-driver.ts";
import { FileBlockBackend } from "./file-block-backend.ts";

const dir = mkdtempSync(join(tmpdir(), "tsvm-fbb-"));
after(() => rmSync(dir, { recursive: true, force: true }));

function image(name: string, bytes: Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, bytes);
  return p;
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 13 + seed) & 0xff;
  return b;
}

const call = (f: (done: (e: string | null) => void) => void) =>
  new Promise<string | null>((resolve) => f(resolve));

test("reads, writes and flushes a raw image file", async () => {
  const p = image("rw.img", pattern(8192, 1));
  const disk = await FileBlockBackend.open(p);
  assert.equal(disk.sizeBytes, 8192);
  assert.equal(disk.readOnly, false);
  const dst = new Uint8Array(1024);
  assert.equal(await call((d) => disk.read(512, dst, d)), null);
  assert.deepEqual(dst, pattern(8192, 1).subarray(512, 1536));
  const src = pattern(1024, 77);
  assert.equal(await call((d) => disk.write(4096, src, d)), null);
  assert.equal(await call((d) => disk.flush(d)), null);
  const want = pattern(8192, 1);
  want.set(src, 4096);
  assert.deepEqual(new Uint8Array(readFileSync(p)), want);
  await disk.close();
  assert.match((await call((d) => disk.read(0, dst, d)))!, /closed/);
});

test("out-of-range, unaligned and read-only accesses fail with a message, the file unchanged", async () => {
  const p = image("ro.img", pattern(4096, 2));
  const ro = await FileBlockBackend.open(p, { readOnly: true });
  assert.equal(ro.readOnly, true);
  assert.match((await call((d) => ro.write(0, new Uint8Array(512), d)))!, /read-only/);
  assert.match((await call((d) => ro.read(4096, new Uint8Array(512), d)))!, /beyond the end/);
  assert.match((await call((d) => ro.read(100, new Uint8Array(512), d)))!, /unaligned/);
  assert.equal(await call((d) => ro.flush(d)), null);
  await ro.close();
  assert.deepEqual(new Uint8Array(readFileSync(p)), pattern(4096, 2));
});

/** A file of `size` random bytes, written and synced so that every block of it is allocated. */
function filledImage(at: string, size: number): string {
  writeFileSync(at, randomBytes(size));
  const fd = openSync(at, "r+");
  fsyncSync(fd);
  closeSync(fd);
  return at;
}

/** 512-byte blocks the file holds on its filesystem. */
const blocks = (p: string) => statSync(p).blocks;

test("discard and write-zeroes with unmap punch holes: the host frees the blocks, the ranges read as zeros", async () => {
  const p = filledImage(join(dir, "punch.img"), 4 << 20);
  const before = new Uint8Array(readFileSync(p));
  const disk = await FileBlockBackend.open(p);
  const full = blocks(p);
  assert.ok(full >= 8192, `the file is allocated (${full} blocks)`);
  assert.equal(await call((d) => disk.discard(1 << 20, 1 << 20, d)), null);
  const afterDiscard = blocks(p);
  assert.ok(afterDiscard <= full - 2048, `1 MiB freed: ${full} → ${afterDiscard} blocks`);
  assert.equal(await call((d) => disk.writeZeroes(3 << 20, 512 * 1024, true, d)), null);
  assert.ok(blocks(p) <= afterDiscard - 1024, `512 KiB more freed: ${afterDiscard} → ${blocks(p)} blocks`);
  assert.equal(statSync(p).size, 4 << 20, "the file keeps its size");
  const dst = new Uint8Array(1 << 20);
  assert.equal(await call((d) => disk.read(1 << 20, dst, d)), null);
  assert.ok(
    dst.every((b) => b === 0),
    "the discarded range reads as zeros",
  );
  const want = before.slice();
  want.fill(0, 1 << 20, 2 << 20);
  want.fill(0, 3 << 20, (3 << 20) + 512 * 1024);
  assert.deepEqual(new Uint8Array(readFileSync(p)), want, "zeros there, every other byte as it was");
  await disk.close();
});

test("write-zeroes without unmap zeroes the range and keeps its blocks allocated", async () => {
  const p = filledImage(join(dir, "zero.img"), 2 << 20);
  const before = new Uint8Array(readFileSync(p));
  const disk = await FileBlockBackend.open(p);
  const full = blocks(p);
  assert.equal(await call((d) => disk.writeZeroes(4096, 1 << 20, false, d)), null);
  assert.ok(blocks(p) >= full, `no block freed: ${full} → ${blocks(p)}`);
  const want = before.slice();
  want.fill(0, 4096, 4096 + (1 << 20));
  assert.deepEqual(new Uint8Array(readFileSync(p)), want);
  await disk.close();
});

test("on tmpfs, which refuses FALLOC_FL_ZERO_RANGE, write-zeroes writes zeros instead", async () => {
  // tmpfs punches holes but answers EOPNOTSUPP to ZERO_RANGE: the fallback path on a real filesystem.
  const shm = mkdtempSync("/dev/shm/tsvm-fbb-");
  try {
    const p = filledImage(join(shm, "shm.img"), 3 << 20);
    const before = new Uint8Array(readFileSync(p));
    const disk = await FileBlockBackend.open(p);
    const full = blocks(p);
    // 2.5 MiB: more than one megabyte of zeros per write, and a partial last one.
    assert.equal(await call((d) => disk.writeZeroes(512, (5 << 19) - 512, false, d)), null);
    assert.ok(blocks(p) >= full, "written, not punched");
    const want = before.slice();
    want.fill(0, 512, 5 << 19);
    assert.deepEqual(new Uint8Array(readFileSync(p)), want);
    assert.equal(await call((d) => disk.writeZeroes(0, 512, false, d)), null, "again, without asking");
    assert.equal(await call((d) => disk.discard(1 << 20, 1 << 20, d)), null);
    assert.ok(blocks(p) <= full - 2048, "tmpfs does punch holes");
    await disk.close();
  } finally {
    rmSync(shm, { recursive: true, force: true });
  }
});

test("discard and write-zeroes refuse read-only, closed, unaligned and out-of-range requests, the file unchanged", async () => {
  const p = image("trim-ro.img", pattern(8192, 5));
  const ro = await FileBlockBackend.open(p, { readOnly: true });
  assert.match((await call((d) => ro.discard(0, 512, d)))!, /read-only/);
  assert.match((await call((d) => ro.writeZeroes(0, 512, true, d)))!, /read-only/);
  await ro.close();
  const rw = await FileBlockBackend.open(p);
  assert.match((await call((d) => rw.discard(4096, 8192, d)))!, /beyond the end/);
  assert.match((await call((d) => rw.writeZeroes(100, 512, false, d)))!, /unaligned/);
  assert.match((await call((d) => rw.writeZeroes(0, 100, true, d)))!, /unaligned/);
  await rw.close();
  assert.match((await call((d) => rw.discard(0, 512, d)))!, /closed/);
  assert.deepEqual(new Uint8Array(readFileSync(p)), pattern(8192, 5));
});

test("opening a missing file or one of partial sectors is refused", async () => {
  await assert.rejects(FileBlockBackend.open(join(dir, "absent.img")), { code: "disk-open-failed" });
  await assert.rejects(FileBlockBackend.open(image("odd.img", new Uint8Array(1000))), {
    code: "bad-disk-image",
  });
});

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  new DataView(h.buffer).setUint32(0, type, true);
  new DataView(h.buffer).setUint32(8, sector, true);
  return h;
}

test("virtio-blk over a file: the guest's writes reach the file, reads return it, out-of-range is IOERR", async () => {
  const p = image("guest.img", pattern(64 * 512, 3));
  const disk = await FileBlockBackend.open(p);
  const ram = new GuestRam(0x8000_0000, 1 << 20);
  const irq = new CallbackIrqLine(() => {});
  const mmio = new VirtioMmio("virtio_mmio@10001000", new VirtioBlk(disk), ram, irq);
  const drv = new VirtioTestDriver(mmio, ram);
  assert.ok(drv.negotiate((1n << 64n) - 1n) !== null);
  const q = drv.setupQueue(0);
  drv.driverOk();

  const data = pattern(2048, 99);
  const w = drv.add(q, [{ data: header(VIRTIO_BLK_T_OUT, 10) }, { data }, { writable: 1 }]);
  const f = drv.add(q, [{ data: header(VIRTIO_BLK_T_FLUSH, 0) }, { writable: 1 }]);
  const r = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 0) }, { writable: 1024 }, { writable: 1 }]);
  const bad = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 63) }, { writable: 1024 }, { writable: 1 }]);
  drv.kick(q);
  const used = new Map<number, ReturnType<VirtioTestDriver["takeUsed"]>[number]>();
  const early = drv.takeUsed(q);
  // File I/O completes later; only the out-of-range read is answered inside the notify.
  assert.deepEqual(
    early.map((u) => u.id),
    [bad],
  );
  for (const u of early) used.set(u.id, u);
  for (let i = 0; i < 200 && used.size < 4; i++) {
    await new Promise((res) => setTimeout(res, 5));
    for (const u of drv.takeUsed(q)) used.set(u.id, u);
  }
  const status = (h: number) => {
    const b = used.get(h)!.buffers;
    return drv.get(b[b.length - 1]!.addr, 1)[0];
  };
  assert.equal(status(w), VIRTIO_BLK_S_OK);
  assert.equal(status(f), VIRTIO_BLK_S_OK);
  assert.equal(status(r), VIRTIO_BLK_S_OK);
  assert.equal(status(bad), VIRTIO_BLK_S_IOERR);
  assert.equal(irq.high, true);
  assert.deepEqual(drv.get(used.get(r)!.buffers[1]!.addr, 1024), pattern(64 * 512, 3).subarray(0, 1024));
  const want = pattern(64 * 512, 3);
  want.set(data, 10 * 512);
  assert.deepEqual(new Uint8Array(readFileSync(p)), want);
  await disk.close();
});

test("virtio-blk over a file: the guest's discard frees the file's blocks", async () => {
  const p = filledImage(join(dir, "guest-trim.img"), 2 << 20);
  const disk = await FileBlockBackend.open(p);
  const ram = new GuestRam(0x8000_0000, 1 << 20);
  const mmio = new VirtioMmio(
    "virtio_mmio@10001000",
    new VirtioBlk(disk),
    ram,
    new CallbackIrqLine(() => {}),
  );
  const drv = new VirtioTestDriver(mmio, ram);
  const features = drv.negotiate((1n << 64n) - 1n);
  assert.equal((features! >> BigInt(VIRTIO_BLK_F_DISCARD)) & 1n, 1n, "a raw file offers discard");
  const q = drv.setupQueue(0);
  drv.driverOk();
  const seg = new Uint8Array(16);
  new DataView(seg.buffer).setUint32(0, 1024, true); // sector 1024 (512 KiB), 2048 sectors (1 MiB)
  new DataView(seg.buffer).setUint32(8, 2048, true);
  const full = blocks(p);
  const h = drv.add(q, [{ data: header(VIRTIO_BLK_T_DISCARD, 0) }, { data: seg }, { writable: 1 }]);
  drv.kick(q);
  const [u] = drv.takeUsed(q);
  assert.equal(u?.id, h, "punching a hole completes inside the notify");
  assert.equal(drv.get(u!.buffers[2]!.addr, 1)[0], VIRTIO_BLK_S_OK);
  assert.ok(blocks(p) <= full - 2048, `${full} → ${blocks(p)} blocks`);
  await disk.close();
});
