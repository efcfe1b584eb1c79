import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { GuestRam } from "../../machine/bus/guest-ram.ts";
import { CallbackIrqLine } from "../../machine/bus/irq-line.ts";
import {
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
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
