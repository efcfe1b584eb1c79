import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import type { BlockBackend, Completion } from "../../ports.ts";
import { assertRoundTrip } from "../../state/round-trip.ts";
import { MemoryBlockBackend } from "./memory-block-backend.ts";
import {
  BLK_CONFIG_DISCARD_SECTOR_ALIGNMENT,
  BLK_CONFIG_MAX_DISCARD_SECTORS,
  BLK_CONFIG_MAX_DISCARD_SEG,
  BLK_CONFIG_MAX_WRITE_ZEROES_SECTORS,
  BLK_CONFIG_MAX_WRITE_ZEROES_SEG,
  BLK_CONFIG_WRITE_ZEROES_MAY_UNMAP,
  BLK_MAX_SEGMENT_SECTORS,
  BLK_MAX_SEGMENTS,
  VIRTIO_BLK_F_BLK_SIZE,
  VIRTIO_BLK_F_DISCARD,
  VIRTIO_BLK_F_FLUSH,
  VIRTIO_BLK_F_RO,
  VIRTIO_BLK_F_SEG_MAX,
  VIRTIO_BLK_F_WRITE_ZEROES,
  VIRTIO_BLK_S_IOERR,
  VIRTIO_BLK_S_OK,
  VIRTIO_BLK_S_UNSUPP,
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_FLUSH,
  VIRTIO_BLK_T_GET_ID,
  VIRTIO_BLK_T_IN,
  VIRTIO_BLK_T_OUT,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VirtioBlk,
} from "./virtio-blk.ts";
import { VirtioMmio } from "./virtio-mmio.ts";
import {
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_INT_VRING,
} from "./virtio-spec.ts";
import { type TestQueue, VirtioTestDriver } from "./virtio-test-driver.ts";

const RAM_BASE = 0x8000_0000;
const ALL = (1n << 64n) - 1n;

function header(type: number, sector: number): Uint8Array {
  const h = new Uint8Array(16);
  const v = new DataView(h.buffer);
  v.setUint32(0, type, true);
  v.setUint32(8, sector % 0x1_0000_0000, true);
  v.setUint32(12, Math.floor(sector / 0x1_0000_0000), true);
  return h;
}

function pattern(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

function setup(backend: BlockBackend, serial = "tsvm-disk-0", wanted = ALL) {
  const ram = new GuestRam(RAM_BASE, 1 << 20);
  const irq = new CallbackIrqLine(() => {});
  const blk = new VirtioBlk(backend, { serial });
  const mmio = new VirtioMmio("virtio_mmio@10001000", blk, ram, irq);
  const drv = new VirtioTestDriver(mmio, ram);
  const features = drv.negotiate(wanted);
  assert.ok(features !== null);
  const q = drv.setupQueue(0);
  drv.driverOk();
  return { ram, irq, blk, mmio, drv, q, features };
}

/** Waits for pending microtasks and I/O callbacks of a deferred backend. */
const settle = () => new Promise((r) => setTimeout(r, 0));

function statusOf(drv: VirtioTestDriver, q: TestQueue, head: number) {
  const used = drv.takeUsed(q);
  const e = used.find((u) => u.id === head);
  assert.ok(e, `request ${head} completed`);
  const last = e.buffers[e.buffers.length - 1]!;
  return { status: drv.get(last.addr, 1)[0], entry: e };
}

test("features: VERSION_1, INDIRECT_DESC, SEG_MAX, BLK_SIZE, FLUSH offered; RO only for read-only disks", () => {
  const rw = setup(new MemoryBlockBackend(4096));
  const f = rw.features;
  for (const bit of [
    VIRTIO_F_VERSION_1,
    VIRTIO_F_INDIRECT_DESC,
    VIRTIO_BLK_F_SEG_MAX,
    VIRTIO_BLK_F_BLK_SIZE,
    VIRTIO_BLK_F_FLUSH,
  ])
    assert.equal((f >> BigInt(bit)) & 1n, 1n, `bit ${bit}`);
  assert.equal((f >> BigInt(VIRTIO_BLK_F_RO)) & 1n, 0n);
  const ro = setup(new MemoryBlockBackend(4096, { readOnly: true }));
  assert.equal((ro.features >> BigInt(VIRTIO_BLK_F_RO)) & 1n, 1n);
});

test("config space: capacity in sectors (byte, halfword and word reads), seg_max, blk_size", () => {
  const { drv } = setup(new MemoryBlockBackend(512 * 1000));
  assert.equal(drv.config32(0), 1000);
  assert.equal(drv.config32(4), 0);
  assert.equal(drv.config16(0), 1000);
  assert.equal(drv.config8(0), 1000 & 0xff);
  assert.equal(drv.config8(1), 1000 >> 8);
  assert.equal(drv.config32(12), 254);
  assert.equal(drv.config32(20), 512);
  assert.equal(drv.config32(0x1000 - 0x100 - 4), 0, "beyond the config space reads 0");
});

for (const deferred of [false, true]) {
  const mode = deferred ? "asynchronous" : "synchronous";
  test(`write then read back across sectors, direct and indirect chains (${mode} backend)`, async () => {
    const disk = new MemoryBlockBackend(512 * 64, { deferred });
    const { drv, q, irq } = setup(disk);
    const data = pattern(3 * 512, 1);
    // Data split over two descriptors of odd sizes, as scattered pages would be.
    const w = drv.add(q, [
      { data: header(VIRTIO_BLK_T_OUT, 5) },
      { data: data.subarray(0, 700) },
      { data: data.subarray(700) },
      { writable: 1 },
    ]);
    drv.kick(q);
    await settle();
    assert.equal(irq.high, true, "used-buffer interrupt raised");
    assert.equal(drv.interrupt() & VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_INT_VRING);
    assert.equal(irq.high, false, "acknowledged");
    assert.equal(statusOf(drv, q, w).status, VIRTIO_BLK_S_OK);
    assert.deepEqual(disk.bytes.subarray(5 * 512, 8 * 512), data);
    assert.ok(
      disk.bytes.subarray(0, 5 * 512).every((b) => b === 0),
      "bytes before untouched",
    );
    assert.ok(
      disk.bytes.subarray(8 * 512).every((b) => b === 0),
      "bytes after untouched",
    );

    const r = drv.add(
      q,
      [
        { data: header(VIRTIO_BLK_T_IN, 5) },
        { writable: 1000 },
        { writable: 3 * 512 - 1000 },
        { writable: 1 },
      ],
      { indirect: true },
    );
    drv.kick(q);
    await settle();
    const { status, entry } = statusOf(drv, q, r);
    assert.equal(status, VIRTIO_BLK_S_OK);
    assert.equal(entry.len, 3 * 512 + 1, "used length counts data and status");
    const got = new Uint8Array([
      ...drv.get(entry.buffers[1]!.addr, 1000),
      ...drv.get(entry.buffers[2]!.addr, 536),
    ]);
    assert.deepEqual(got, data);
  });
}

test("a request larger than the bounce chunk moves all its bytes", async () => {
  const size = 1 << 20;
  const disk = new MemoryBlockBackend(pattern(size, 9).slice(), { deferred: true });
  const ram = new GuestRam(RAM_BASE, 4 << 20);
  const blk = new VirtioBlk(disk);
  const mmio = new VirtioMmio("blk", blk, ram, new CallbackIrqLine(() => {}));
  const drv = new VirtioTestDriver(mmio, ram);
  drv.negotiate(ALL);
  const q = drv.setupQueue(0);
  drv.driverOk();
  const r = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 0) }, { writable: size }, { writable: 1 }]);
  drv.kick(q);
  while (blk.inflightCount > 0) await settle();
  const { status, entry } = statusOf(drv, q, r);
  assert.equal(status, VIRTIO_BLK_S_OK);
  assert.deepEqual(drv.get(entry.buffers[1]!.addr, size), disk.bytes);
});

test("sectors beyond the capacity and partial sectors give VIRTIO_BLK_S_IOERR, the disk unchanged", () => {
  const disk = new MemoryBlockBackend(512 * 8);
  const { drv, q, mmio } = setup(disk);
  const cases = [
    [{ data: header(VIRTIO_BLK_T_IN, 8) }, { writable: 512 }, { writable: 1 }],
    [{ data: header(VIRTIO_BLK_T_IN, 7) }, { writable: 1024 }, { writable: 1 }],
    [{ data: header(VIRTIO_BLK_T_OUT, 2 ** 53) }, { data: new Uint8Array(512) }, { writable: 1 }],
    [
      { data: header(VIRTIO_BLK_T_OUT, 0xffff_ffff * 0x1_0000_0000) },
      { data: new Uint8Array(512) },
      { writable: 1 },
    ],
    [{ data: header(VIRTIO_BLK_T_OUT, 0) }, { data: new Uint8Array(100).fill(1) }, { writable: 1 }],
  ];
  for (const c of cases) {
    const h = drv.add(q, c);
    drv.kick(q);
    assert.equal(statusOf(drv, q, h).status, VIRTIO_BLK_S_IOERR);
  }
  assert.ok(disk.bytes.every((b) => b === 0));
  assert.equal(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0, "an I/O error is not a device error");
  assert.equal(mmio.lastError, "");
});

test("writes to a read-only disk fail with IOERR; reads succeed", () => {
  const disk = new MemoryBlockBackend(pattern(4096, 3).slice(), { readOnly: true });
  const { drv, q } = setup(disk);
  const w = drv.add(q, [
    { data: header(VIRTIO_BLK_T_OUT, 0) },
    { data: new Uint8Array(512) },
    { writable: 1 },
  ]);
  drv.kick(q);
  assert.equal(statusOf(drv, q, w).status, VIRTIO_BLK_S_IOERR);
  assert.deepEqual(disk.bytes, pattern(4096, 3));
  const r = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 1) }, { writable: 512 }, { writable: 1 }]);
  drv.kick(q);
  const { status, entry } = statusOf(drv, q, r);
  assert.equal(status, VIRTIO_BLK_S_OK);
  assert.deepEqual(drv.get(entry.buffers[1]!.addr, 512), pattern(4096, 3).subarray(512, 1024));
});

test("flush, GET_ID and unknown request types", async () => {
  let flushes = 0;
  const disk = new MemoryBlockBackend(4096, { deferred: true });
  const inner = disk.flush.bind(disk);
  disk.flush = (done) => {
    flushes++;
    inner(done);
  };
  const { drv, q } = setup(disk, "serial-number-that-is-too-long");
  const f = drv.add(q, [{ data: header(VIRTIO_BLK_T_FLUSH, 0) }, { writable: 1 }]);
  const id = drv.add(q, [{ data: header(VIRTIO_BLK_T_GET_ID, 0) }, { writable: 20 }, { writable: 1 }]);
  const u = drv.add(q, [{ data: header(99, 0) }, { writable: 1 }]);
  drv.kick(q);
  await settle();
  const used = drv.takeUsed(q);
  const by = (h: number) => used.find((e) => e.id === h)!;
  const st = (h: number) => {
    const b = by(h).buffers;
    return drv.get(b[b.length - 1]!.addr, 1)[0];
  };
  assert.equal(flushes, 1);
  assert.equal(st(f), VIRTIO_BLK_S_OK);
  assert.equal(st(id), VIRTIO_BLK_S_OK);
  assert.equal(new TextDecoder().decode(drv.get(by(id).buffers[1]!.addr, 20)), "serial-number-that-i");
  assert.equal(st(u), VIRTIO_BLK_S_UNSUPP);
});

test("a backend error becomes IOERR for the guest", () => {
  const disk = new MemoryBlockBackend(4096);
  disk.read = (_o, _d, done) => done("host disk on fire");
  const { drv, q } = setup(disk);
  const r = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 0) }, { writable: 512 }, { writable: 1 }]);
  drv.kick(q);
  assert.equal(statusOf(drv, q, r).status, VIRTIO_BLK_S_IOERR);
});

test("a backend completing twice completes the request once", () => {
  const disk = new MemoryBlockBackend(4096);
  disk.flush = (done) => {
    done(null);
    done(null);
  };
  const { drv, q, ram } = setup(disk);
  drv.add(q, [{ data: header(VIRTIO_BLK_T_FLUSH, 0) }, { writable: 1 }]);
  drv.kick(q);
  assert.equal(ram.view.getUint16(q.used - RAM_BASE + 2, true), 1);
});

test("a request without header or status sets DEVICE_NEEDS_RESET and raises a config interrupt", () => {
  const { drv, q, mmio } = setup(new MemoryBlockBackend(4096));
  drv.add(q, [{ data: new Uint8Array(8) }, { writable: 1 }]);
  drv.kick(q);
  assert.equal(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.equal(drv.interrupt() & 2, 2);
  assert.match(mmio.lastError, /header/);
  assert.equal(drv.takeUsed(q).length, 0);
});

test("completions after a device reset do not touch guest RAM", async () => {
  const disk = new MemoryBlockBackend(pattern(4096, 5).slice(), { deferred: true });
  const { drv, q, ram } = setup(disk);
  const r = drv.add(q, [{ data: header(VIRTIO_BLK_T_IN, 0) }, { writable: 512 }, { writable: 1 }]);
  drv.kick(q);
  const before = ram.u8.slice();
  drv.w32(0x70, 0); // Status ← 0: reset
  await settle();
  assert.deepEqual(ram.u8, before, "no data, status or used-ring write after reset");
  assert.ok(r >= 0);
});

test("state: save → load → save is equal; a mutation changes it; in-flight requests are re-issued after load", async () => {
  const disk = new MemoryBlockBackend(pattern(4096, 7).slice(), { deferred: true });
  const a = setup(disk);
  const s0 = a.mmio.saveState();
  a.mmio.loadState(structuredClone(s0));
  assert.deepEqual(a.mmio.saveState(), s0);

  // Offer a read and save while the disk has not answered.
  const r = a.drv.add(a.q, [{ data: header(VIRTIO_BLK_T_IN, 2) }, { writable: 512 }, { writable: 1 }]);
  a.drv.kick(a.q);
  const s1 = a.mmio.saveState();
  assert.notDeepEqual(s1, s0);
  assert.deepEqual((s1.device as unknown as { inflight: number[] }).inflight, [r]);

  // A second machine: same RAM contents, fresh device, loads the state and completes the read itself.
  const ram2 = new GuestRam(RAM_BASE, a.ram.size);
  ram2.u8.set(a.ram.u8);
  const blk2 = new VirtioBlk(disk);
  const irq2 = new CallbackIrqLine(() => {});
  const mmio2 = new VirtioMmio("virtio_mmio@10001000", blk2, ram2, irq2);
  mmio2.loadState(structuredClone(s1));
  assert.deepEqual(mmio2.saveState(), s1);
  await settle();
  await settle();
  const drv2 = new VirtioTestDriver(mmio2, ram2);
  drv2.queues[0] = a.q;
  const { status, entry } = statusOf(drv2, a.q, r);
  assert.equal(status, VIRTIO_BLK_S_OK);
  assert.deepEqual(drv2.get(entry.buffers[1]!.addr, 512), pattern(4096, 7).subarray(1024, 1536));
  assert.equal(irq2.high, true);
});

test("loadState refuses a bad state and changes nothing", () => {
  const { mmio } = setup(new MemoryBlockBackend(4096));
  const good = mmio.saveState();
  const bad = [
    { ...good, version: 2 },
    { ...good, status: 0x1ff },
    { ...good, queues: [] },
    { ...good, queues: [{ ...good.queues[0]!, size: 3, ready: true }] },
    { ...good, queues: [{ ...good.queues[0]!, descLo: 0x10, ready: true }] },
    { ...good, device: { version: 1, inflight: [300] } },
    { ...good, device: { version: 1, inflight: [1, 1] } },
  ];
  for (const s of bad) {
    assert.throws(() => mmio.loadState(s as typeof good), { code: "bad-state" });
    assert.deepEqual(mmio.saveState(), good);
  }
});

test("blk transport state passes the shared round-trip check (features, queue, in-flight request)", () => {
  const disk = new MemoryBlockBackend(4096, { deferred: true });
  assertRoundTrip(
    assert,
    () => setup(disk).mmio,
    (mmio) => {
      mmio.write(0x14, 4, 1); // DeviceFeaturesSel
      mmio.write(0x30, 4, 0); // QueueSel
    },
  );
});

// ---- discard and write-zeroes (§5.2.6, virtio 1.1+) ----

/** Segments of a discard or write-zeroes request: [sector, num_sectors, flags] each. */
function segments(
  ...segs: ReadonlyArray<readonly [sector: number, count: number, flags?: number]>
): Uint8Array {
  const b = new Uint8Array(16 * segs.length);
  const v = new DataView(b.buffer);
  segs.forEach(([sector, count, flags = 0], i) => {
    v.setUint32(16 * i, sector % 0x1_0000_0000, true);
    v.setUint32(16 * i + 4, Math.floor(sector / 0x1_0000_0000), true);
    v.setUint32(16 * i + 8, count, true);
    v.setUint32(16 * i + 12, flags, true);
  });
  return b;
}

/** A memory disk that records each discard and write-zeroes call it is given. */
function recordingDisk(bytes: Uint8Array, options: { deferred?: boolean; readOnly?: boolean } = {}) {
  const disk = new MemoryBlockBackend(bytes, options);
  const calls: string[] = [];
  const discard = disk.discard.bind(disk);
  const writeZeroes = disk.writeZeroes.bind(disk);
  disk.discard = (offset: number, length: number, done: Completion) => {
    calls.push(`discard ${offset}+${length}`);
    discard(offset, length, done);
  };
  disk.writeZeroes = (offset: number, length: number, unmap: boolean, done: Completion) => {
    calls.push(`zeroes ${offset}+${length}${unmap ? " unmap" : ""}`);
    writeZeroes(offset, length, unmap, done);
  };
  return { disk, calls };
}

/** A disk with only the required methods: no discard, no write-zeroes. */
function plainDisk(size: number): BlockBackend {
  const m = new MemoryBlockBackend(size);
  return {
    sizeBytes: m.sizeBytes,
    readOnly: false,
    read: (o, d, done) => m.read(o, d, done),
    write: (o, s, done) => m.write(o, s, done),
    flush: (done) => m.flush(done),
  };
}

const bit = (f: bigint, b: number) => (f >> BigInt(b)) & 1n;

test("discard and write-zeroes are offered, with their config fields, only by a writable disk that has them", () => {
  const { drv, features } = setup(new MemoryBlockBackend(4096));
  assert.equal(bit(features, VIRTIO_BLK_F_DISCARD), 1n);
  assert.equal(bit(features, VIRTIO_BLK_F_WRITE_ZEROES), 1n);
  assert.equal(drv.config32(BLK_CONFIG_MAX_DISCARD_SECTORS), BLK_MAX_SEGMENT_SECTORS);
  assert.equal(drv.config32(BLK_CONFIG_MAX_DISCARD_SEG), BLK_MAX_SEGMENTS);
  assert.equal(drv.config32(BLK_CONFIG_DISCARD_SECTOR_ALIGNMENT), 8);
  assert.equal(drv.config32(BLK_CONFIG_MAX_WRITE_ZEROES_SECTORS), BLK_MAX_SEGMENT_SECTORS);
  assert.equal(drv.config32(BLK_CONFIG_MAX_WRITE_ZEROES_SEG), BLK_MAX_SEGMENTS);
  assert.equal(drv.config8(BLK_CONFIG_WRITE_ZEROES_MAY_UNMAP), 1);
  for (const other of [plainDisk(4096), new MemoryBlockBackend(4096, { readOnly: true })]) {
    const o = setup(other);
    assert.equal(bit(o.features, VIRTIO_BLK_F_DISCARD), 0n);
    assert.equal(bit(o.features, VIRTIO_BLK_F_WRITE_ZEROES), 0n);
    for (let off = BLK_CONFIG_MAX_DISCARD_SECTORS; off < 60; off += 4) assert.equal(o.drv.config32(off), 0);
  }
});

for (const deferred of [false, true]) {
  const mode = deferred ? "asynchronous" : "synchronous";
  test(`discard and write-zeroes of several segments reach the disk and zero exactly their ranges (${mode})`, async () => {
    const { disk, calls } = recordingDisk(pattern(512 * 64, 4).slice(), { deferred });
    const { drv, q } = setup(disk);
    const d = drv.add(q, [
      { data: header(VIRTIO_BLK_T_DISCARD, 0) },
      { data: segments([2, 3], [40, 8]) },
      { writable: 1 },
    ]);
    const z = drv.add(
      q,
      [
        { data: header(VIRTIO_BLK_T_WRITE_ZEROES, 0) },
        // Segments split over two descriptors, one of them a zero-length range (nothing to do).
        { data: segments([10, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP]).subarray(0, 10) },
        {
          data: new Uint8Array([
            ...segments([10, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP]).subarray(10),
            ...segments([63, 1], [5, 0]),
          ]),
        },
        { writable: 1 },
      ],
      { indirect: true },
    );
    drv.kick(q);
    await settle();
    const used = drv.takeUsed(q);
    for (const h of [d, z]) {
      const e = used.find((u) => u.id === h)!;
      assert.equal(drv.get(e.buffers[e.buffers.length - 1]!.addr, 1)[0], VIRTIO_BLK_S_OK);
      assert.equal(e.len, 1, "only the status byte is written");
    }
    // Each request's segments go in order; the two requests may interleave.
    assert.deepEqual(calls.sort(), [
      "discard 1024+1536",
      "discard 20480+4096",
      "zeroes 32256+512",
      "zeroes 5120+512 unmap",
    ]);
    const want = pattern(512 * 64, 4);
    for (const [s, n] of [
      [2, 3],
      [40, 8],
      [10, 1],
      [63, 1],
    ] as const)
      want.fill(0, s * 512, (s + n) * 512);
    assert.deepEqual(disk.bytes, want, "zeros in the ranges, the rest untouched");
  });
}

test("malformed discard and write-zeroes requests are refused before the disk is touched", () => {
  const { disk, calls } = recordingDisk(pattern(512 * 8, 6).slice());
  const { drv, q, mmio } = setup(disk);
  const D = VIRTIO_BLK_T_DISCARD;
  const Z = VIRTIO_BLK_T_WRITE_ZEROES;
  const cases: Array<[string, number, Uint8Array, number]> = [
    ["discard with unmap", D, segments([0, 1, VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP]), VIRTIO_BLK_S_UNSUPP],
    ["discard with a reserved flag", D, segments([0, 1, 2]), VIRTIO_BLK_S_UNSUPP],
    ["write-zeroes with a reserved flag", Z, segments([0, 1, 0x8000_0001]), VIRTIO_BLK_S_UNSUPP],
    ["a good segment then a reserved flag", Z, segments([0, 1], [1, 1, 4]), VIRTIO_BLK_S_UNSUPP],
    ["no segment", D, new Uint8Array(0), VIRTIO_BLK_S_IOERR],
    ["a partial segment", Z, segments([0, 1]).subarray(0, 12), VIRTIO_BLK_S_IOERR],
    ["a segment and a half", D, new Uint8Array([...segments([0, 1]), 0, 0, 0, 0]), VIRTIO_BLK_S_IOERR],
    [
      "more segments than max_discard_seg",
      D,
      segments(...Array.from({ length: BLK_MAX_SEGMENTS + 1 }, () => [0, 1] as const)),
      VIRTIO_BLK_S_IOERR,
    ],
    ["a range past the end", D, segments([7, 2]), VIRTIO_BLK_S_IOERR],
    ["a sector past the end", Z, segments([9, 0]), VIRTIO_BLK_S_IOERR],
    ["a sector above 2^53", Z, segments([2 ** 60, 1]), VIRTIO_BLK_S_IOERR],
    ["a sector that wraps with its count", D, segments([2 ** 64 - 2 ** 12, 0xffff_ffff]), VIRTIO_BLK_S_IOERR],
    [
      "more sectors than max_discard_sectors",
      D,
      segments([0, BLK_MAX_SEGMENT_SECTORS + 1]),
      VIRTIO_BLK_S_IOERR,
    ],
    ["a good segment then a bad range", Z, segments([0, 1], [8, 1]), VIRTIO_BLK_S_IOERR],
  ];
  for (const [what, type, data, want] of cases) {
    const h = drv.add(q, [{ data: header(type, 0) }, { data }, { writable: 1 }]);
    drv.kick(q);
    assert.equal(statusOf(drv, q, h).status, want, what);
  }
  assert.deepEqual(calls, [], "no backend call");
  assert.deepEqual(disk.bytes, pattern(512 * 8, 6));
  assert.equal(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0, "a bad request is not a device error");
  assert.equal(mmio.lastError, "");
});

test("segments that lie outside guest RAM break the device, not the disk", () => {
  const { disk, calls } = recordingDisk(pattern(512 * 8, 6).slice());
  const { drv, q, ram } = setup(disk);
  const h = drv.add(q, [
    { data: header(VIRTIO_BLK_T_DISCARD, 0) },
    { data: segments([0, 1]) },
    { writable: 1 },
  ]);
  // The segments' descriptor (the head's next) now names 16 bytes straddling the end of RAM.
  const head = q.desc - RAM_BASE + 16 * h;
  const next = ram.view.getUint16(head + 14, true);
  ram.view.setUint32(q.desc - RAM_BASE + 16 * next, RAM_BASE + ram.size - 8, true);
  drv.kick(q);
  assert.equal(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.deepEqual(calls, []);
  assert.deepEqual(disk.bytes, pattern(512 * 8, 6));
});

test("without the feature negotiated, or on a disk without it, the requests are UNSUPP", () => {
  const { disk, calls } = recordingDisk(pattern(4096, 8).slice());
  const lacking = [
    setup(
      disk,
      "a",
      ALL & ~(1n << BigInt(VIRTIO_BLK_F_DISCARD)) & ~(1n << BigInt(VIRTIO_BLK_F_WRITE_ZEROES)),
    ),
    setup(plainDisk(4096)),
    setup(new MemoryBlockBackend(pattern(4096, 8).slice(), { readOnly: true })),
  ];
  for (const { drv, q } of lacking)
    for (const type of [VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES]) {
      const h = drv.add(q, [{ data: header(type, 0) }, { data: segments([0, 1]) }, { writable: 1 }]);
      drv.kick(q);
      assert.equal(statusOf(drv, q, h).status, VIRTIO_BLK_S_UNSUPP);
    }
  assert.deepEqual(calls, []);
  assert.deepEqual(disk.bytes, pattern(4096, 8));
});

test("a backend error in any segment makes the request IOERR", () => {
  const disk = new MemoryBlockBackend(4096);
  let n = 0;
  disk.writeZeroes = (_o, _l, _u, done) => done(++n === 2 ? "host disk on fire" : null);
  const { drv, q } = setup(disk);
  const h = drv.add(q, [
    { data: header(VIRTIO_BLK_T_WRITE_ZEROES, 0) },
    { data: segments([0, 1], [1, 1], [2, 1]) },
    { writable: 1 },
  ]);
  drv.kick(q);
  assert.equal(statusOf(drv, q, h).status, VIRTIO_BLK_S_IOERR);
  assert.equal(n, 2, "the request stops at the failed segment");
});

test("state: an in-flight write-zeroes is re-issued after a load; features survive; a device without them refuses the state", async () => {
  const bytes = pattern(4096, 9).slice();
  const disk = new MemoryBlockBackend(bytes, { deferred: true });
  const a = setup(disk);
  // Hold the disk's answer: the request stays in flight while the state is saved.
  disk.writeZeroes = () => {};
  const h = a.drv.add(a.q, [
    { data: header(VIRTIO_BLK_T_WRITE_ZEROES, 0) },
    { data: segments([1, 2]) },
    { writable: 1 },
  ]);
  a.drv.kick(a.q);
  const saved = a.mmio.saveState();
  assert.deepEqual((saved.device as unknown as { inflight: number[] }).inflight, [h]);

  const ram2 = new GuestRam(RAM_BASE, a.ram.size);
  ram2.u8.set(a.ram.u8);
  const disk2 = new MemoryBlockBackend(bytes, { deferred: true });
  const blk2 = new VirtioBlk(disk2);
  const mmio2 = new VirtioMmio("virtio_mmio@10001000", blk2, ram2, new CallbackIrqLine(() => {}));
  mmio2.loadState(structuredClone(saved));
  assert.deepEqual(mmio2.saveState(), saved);
  await settle();
  await settle();
  const drv2 = new VirtioTestDriver(mmio2, ram2);
  drv2.queues[0] = a.q;
  assert.equal(statusOf(drv2, a.q, h).status, VIRTIO_BLK_S_OK);
  assert.ok(bytes.subarray(512, 1536).every((b) => b === 0));
  assert.equal(bit(drv2.deviceFeatures(), VIRTIO_BLK_F_WRITE_ZEROES), 1n);

  // A device over a disk without write-zeroes cannot take a driver that negotiated it.
  const ram3 = new GuestRam(RAM_BASE, a.ram.size);
  const mmio3 = new VirtioMmio(
    "virtio_mmio@10001000",
    new VirtioBlk(plainDisk(4096)),
    ram3,
    new CallbackIrqLine(() => {}),
  );
  const before = mmio3.saveState();
  assert.throws(() => mmio3.loadState(structuredClone(saved)), {
    code: "bad-state",
    message: /accepted features this device does not offer/,
  });
  assert.deepEqual(mmio3.saveState(), before);
});
