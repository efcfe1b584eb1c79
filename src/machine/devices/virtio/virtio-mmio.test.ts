import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import type { AccessWidth } from "../../bus/mmio-device.ts";
import { MemoryBlockBackend } from "./memory-block-backend.ts";
import { VirtioBlk } from "./virtio-blk.ts";
import { VirtioConsole } from "./virtio-console.ts";
import type { VirtioDevice } from "./virtio-device.ts";
import { VirtioMmio } from "./virtio-mmio.ts";
import { VirtioRng } from "./virtio-rng.ts";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_BLOCK,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_MAGIC_VALUE,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_SHM_SEL,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VENDOR_ID,
  VIRTIO_MMIO_VENDOR_ID_REG,
  VIRTIO_MMIO_VERSION_REG,
} from "./virtio-spec.ts";
import { VirtioTestDriver } from "./virtio-test-driver.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "./virtqueue.ts";

const BASE = 0x8000_0000;
const ALL = (1n << 64n) - 1n;

function blk(irqLog?: boolean[]) {
  const ram = new GuestRam(BASE, 256 * 1024);
  const irq = new CallbackIrqLine((l) => irqLog?.push(l));
  const mmio = new VirtioMmio("virtio_mmio@10001000", new VirtioBlk(new MemoryBlockBackend(8192)), ram, irq);
  return { ram, irq, mmio, drv: new VirtioTestDriver(mmio, ram) };
}

test("identification registers as Linux's virtio_mmio_probe reads them", () => {
  const { mmio } = blk();
  assert.equal(mmio.read(VIRTIO_MMIO_MAGIC_VALUE, 4), VIRTIO_MMIO_MAGIC);
  assert.equal(mmio.read(VIRTIO_MMIO_VERSION_REG, 4), 2);
  assert.equal(mmio.read(VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_BLOCK);
  assert.equal(mmio.read(VIRTIO_MMIO_VENDOR_ID_REG, 4), VIRTIO_MMIO_VENDOR_ID);
  // Only aligned 32-bit accesses reach the control registers.
  assert.equal(mmio.read(VIRTIO_MMIO_MAGIC_VALUE, 2), 0);
  assert.equal(mmio.read(VIRTIO_MMIO_MAGIC_VALUE + 1, 4), 0);
  // No shared memory regions: length all ones.
  mmio.write(VIRTIO_MMIO_SHM_SEL, 4, 0);
  assert.equal(mmio.read(VIRTIO_MMIO_SHM_LEN_LOW, 4), 0xffffffff);
  assert.equal(mmio.read(VIRTIO_MMIO_SHM_LEN_HIGH, 4), 0xffffffff);
});

test("feature words by selector; VERSION_1 in the high word; selectors beyond 1 read 0", () => {
  const { mmio } = blk();
  mmio.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 4, 1);
  assert.equal(mmio.read(VIRTIO_MMIO_DEVICE_FEATURES, 4) & 1, 1);
  mmio.write(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 4, 2);
  assert.equal(mmio.read(VIRTIO_MMIO_DEVICE_FEATURES, 4), 0);
});

test("FEATURES_OK is refused without VERSION_1 or with features the device did not offer", () => {
  const { mmio, drv } = blk();
  assert.equal(drv.negotiate(ALL & ~(1n << BigInt(VIRTIO_F_VERSION_1))), null, "legacy-only driver refused");
  for (const [sel, value] of [
    [1, 0x3], // VERSION_1 plus an unoffered bit 33
    [0, 0x1], // an unoffered bit 0 (VIRTIO_BLK_F_BARRIER)
  ]) {
    drv.w32(VIRTIO_MMIO_STATUS, 0);
    drv.w32(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    drv.w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    drv.w32(VIRTIO_MMIO_DRIVER_FEATURES, sel === 1 ? value : 1);
    drv.w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    drv.w32(VIRTIO_MMIO_DRIVER_FEATURES, sel === 0 ? value : 0);
    drv.w32(
      VIRTIO_MMIO_STATUS,
      VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK,
    );
    assert.equal(mmio.read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_FEATURES_OK, 0);
    // DRIVER_OK cannot be set without FEATURES_OK.
    drv.w32(VIRTIO_MMIO_STATUS, 0xf);
    assert.equal(mmio.read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_DRIVER_OK, 0);
  }
  const ok = drv.negotiate(ALL);
  assert.ok(ok !== null);
  assert.equal(mmio.negotiated(VIRTIO_F_VERSION_1), true);
  // Features are frozen once FEATURES_OK is set.
  drv.w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
  drv.w32(VIRTIO_MMIO_DRIVER_FEATURES, 0);
  assert.equal(mmio.negotiated(VIRTIO_F_VERSION_1), true);
});

test("queue registers: QueueNumMax per selected queue, QueueReady round trip, ignored while ready", () => {
  const { mmio, drv } = blk();
  drv.negotiate(ALL);
  mmio.write(VIRTIO_MMIO_QUEUE_SEL, 4, 1);
  assert.equal(mmio.read(VIRTIO_MMIO_QUEUE_NUM_MAX, 4), 0, "no queue 1");
  mmio.write(VIRTIO_MMIO_QUEUE_READY, 4, 1);
  assert.equal(mmio.read(VIRTIO_MMIO_QUEUE_READY, 4), 0);
  const q = drv.setupQueue(0, 16);
  assert.equal(mmio.read(VIRTIO_MMIO_QUEUE_READY, 4), 1);
  mmio.write(VIRTIO_MMIO_QUEUE_NUM, 4, 4);
  mmio.write(VIRTIO_MMIO_QUEUE_DESC_LOW, 4, 0);
  assert.equal(mmio.queue(0).size, 16, "QueueNum ignored while ready");
  assert.equal(mmio.queue(0).descLo, q.desc);
  // Linux's del_vq: QueueReady ← 0 and reads it back as 0.
  mmio.write(VIRTIO_MMIO_QUEUE_READY, 4, 0);
  assert.equal(mmio.read(VIRTIO_MMIO_QUEUE_READY, 4), 0);
});

test("a bad queue placement sets DEVICE_NEEDS_RESET; reset clears everything and lowers the IRQ", () => {
  const log: boolean[] = [];
  const { mmio, drv, irq } = blk(log);
  drv.negotiate(ALL);
  drv.driverOk();
  mmio.write(VIRTIO_MMIO_QUEUE_SEL, 4, 0);
  mmio.write(VIRTIO_MMIO_QUEUE_NUM, 4, 3);
  mmio.write(VIRTIO_MMIO_QUEUE_READY, 4, 1);
  assert.equal(mmio.read(VIRTIO_MMIO_QUEUE_READY, 4), 0);
  assert.equal(mmio.read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
  assert.equal(mmio.read(VIRTIO_MMIO_INTERRUPT_STATUS, 4), VIRTIO_MMIO_INT_CONFIG);
  assert.equal(irq.high, true);
  // The driver cannot clear DEVICE_NEEDS_RESET except by reset.
  mmio.write(VIRTIO_MMIO_STATUS, 4, 0x0f);
  assert.equal(mmio.read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_NEEDS_RESET, VIRTIO_CONFIG_S_NEEDS_RESET);
  mmio.write(VIRTIO_MMIO_STATUS, 4, 0);
  assert.equal(mmio.read(VIRTIO_MMIO_STATUS, 4), 0);
  assert.equal(mmio.read(VIRTIO_MMIO_INTERRUPT_STATUS, 4), 0);
  assert.equal(irq.high, false);
  assert.deepEqual(log, [true, false]);
});

test("configChanged bumps ConfigGeneration and raises a config interrupt once DRIVER_OK", () => {
  const { mmio, drv } = blk();
  const g = mmio.read(VIRTIO_MMIO_CONFIG_GENERATION, 4);
  mmio.configChanged();
  assert.equal(mmio.read(VIRTIO_MMIO_CONFIG_GENERATION, 4), g + 1);
  assert.equal(mmio.read(VIRTIO_MMIO_INTERRUPT_STATUS, 4), 0, "no notification before DRIVER_OK");
  drv.negotiate(ALL);
  drv.driverOk();
  mmio.configChanged();
  assert.equal(drv.interrupt(), VIRTIO_MMIO_INT_CONFIG);
});

test("buffers made available before DRIVER_OK are consumed when it is set, not before", () => {
  const ram = new GuestRam(BASE, 256 * 1024);
  const mmio = new VirtioMmio(
    "rng",
    new VirtioRng({ fill: (d) => d.fill(7) }),
    ram,
    new CallbackIrqLine(() => {}),
  );
  const drv = new VirtioTestDriver(mmio, ram);
  drv.negotiate(ALL);
  const q = drv.setupQueue(0);
  drv.add(q, [{ writable: 4 }]);
  drv.kick(q);
  assert.equal(drv.takeUsed(q).length, 0);
  drv.driverOk();
  assert.equal(drv.takeUsed(q)[0]!.len, 4);
});

// ---- hostile guest: seeded random register writes and descriptor tables ----

/** mulberry32: a small seeded generator, so a failure names a reproducible seed. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const RAM_SIZE = 512 * 1024;
/** Rings and the buffers the fuzzer points at live in [BASE, BASE+ARENA); the rest of RAM is a canary the
 *  device has no legitimate reason to touch. */
const ARENA = 192 * 1024;
const CANARY = 0xa5;

function fuzz(seed: number, make: () => VirtioDevice, steps: number): void {
  const r = rng(seed);
  const int = (n: number) => Math.floor(r() * n);
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const ram = new GuestRam(BASE, RAM_SIZE);
  ram.u8.fill(CANARY, ARENA);
  const mmio = new VirtioMmio(`fuzz-${seed}`, make(), ram, new CallbackIrqLine(() => {}));
  const drv = new VirtioTestDriver(mmio, ram, BASE, BASE + ARENA);
  const nq = mmio.device.queueMaxSizes.length;
  const v = ram.view;
  // Buffers a hostile guest might describe: inside the arena (any length that stays inside it), or not
  // in RAM at all (below it, straddling its end, beyond it, above 4 GiB, huge) which the device must refuse.
  const buffer = (): [lo: number, hi: number, len: number] => {
    if (r() < 0.5) {
      const lo = BASE + int(ARENA - 256);
      const room = BASE + ARENA - lo;
      return [lo, 0, pick([int(Math.min(64, room)), int(room), 0xffffffff, 0x80000000])];
    }
    return pick<() => [number, number, number]>([
      () => [BASE + RAM_SIZE - 16, 0, 17 + int(64)],
      () => [int(BASE), 0, int(4096)],
      () => [BASE + RAM_SIZE + int(1 << 20), 0, int(4096)],
      () => [BASE + int(64), 1 + int(4), int(64)],
      () => [0xfffffff0, 0xffffffff, 0x20],
      () => [BASE + 4096, 0, 0xffffffff],
    ])();
  };
  const setUp = () => {
    if (drv.negotiate(ALL) === null) return;
    drv.queues.length = 0;
    drv.resetHeap(BASE + int(4) * 16);
    for (let i = 0; i < nq; i++) drv.setupQueue(i, pick([1, 2, 4, 8]));
    drv.driverOk();
  };
  const registerOffsets = [
    0x10, 0x14, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64, 0x70, 0xac, 0xc0, 0xfc, 0x100, 0x104, 0x10c,
  ];
  for (let step = 0; step < steps; step++) {
    const op = int(12);
    const q = drv.queues.length > 0 ? pick(drv.queues) : undefined;
    if (op === 0) setUp();
    else if (op === 1) {
      // A random register write (ring addresses only inside the arena or outside RAM).
      const off = r() < 0.9 ? pick(registerOffsets) : int(0x1000);
      const width = pick<AccessWidth>([4, 4, 4, 2, 1]);
      let value = pick([0, 1, 2, 3, 0xff, 0xffffffff, int(0x1_0000_0000), int(8)]);
      // Queue sizes from a register write stay ≤ 8 (the fuzzer's largest), so any in-arena ring fits.
      if (off >= 0x80 && off < 0xb0) value = buffer()[0] & ~15;
      mmio.write(off, width, value);
      mmio.read(int(0x1000), width);
    } else if (op === 2 && q) {
      // Random descriptor contents in the queue's own table.
      const i = int(q.size);
      const [lo, hi, len] = buffer();
      const d = q.desc - BASE + 16 * i;
      v.setUint32(d, lo, true);
      v.setUint32(d + 4, hi, true);
      v.setUint32(d + 8, len, true);
      v.setUint16(d + 12, int(8), true);
      v.setUint16(d + 14, pick([int(q.size), int(q.size + 4), i, 0xffff]), true);
    } else if (op === 3 && q) {
      // An indirect table of random descriptors, possibly pointing at itself.
      const n = 1 + int(6);
      const table = BASE + 0x100 * (256 + int(256));
      for (let k = 0; k < n; k++) {
        const [lo, hi, len] = r() < 0.2 ? [table, 0, 16 * n] : buffer();
        const d = table - BASE + 16 * k;
        v.setUint32(d, lo, true);
        v.setUint32(d + 4, hi, true);
        v.setUint32(d + 8, len, true);
        v.setUint16(d + 12, int(8), true);
        v.setUint16(d + 14, int(n + 2), true);
      }
      const i = int(q.size);
      const d = q.desc - BASE + 16 * i;
      v.setUint32(d, table, true);
      v.setUint32(d + 4, 0, true);
      v.setUint32(d + 8, pick([16 * n, 16 * n + 8, 0, 16 * 300]), true);
      v.setUint16(d + 12, VIRTQ_DESC_F_INDIRECT | (r() < 0.2 ? VIRTQ_DESC_F_NEXT : 0), true);
    } else if (op === 4 && q) {
      // A well-formed chain, so the devices' request paths run too.
      const data = new Uint8Array(16 + int(2) * 512);
      new DataView(data.buffer).setUint32(0, pick([0, 1, 4, 8, 99]), true);
      new DataView(data.buffer).setUint32(8, int(20), true);
      try {
        drv.add(q, [{ data }, { writable: pick([1, 513, 8, 64]) }], { indirect: r() < 0.5 });
      } catch {
        // The test driver ran out of descriptors or arena; the device is not involved.
        drv.resetHeap(BASE + 0x8000);
      }
    } else if (op === 5 && q) {
      // Available index jumps, including by more than the queue size.
      v.setUint16(
        q.avail - BASE + 2,
        pick([q.availIdx + 1, q.availIdx + q.size, q.availIdx + q.size + 1, int(65536)]),
        true,
      );
      v.setUint16(q.avail - BASE + 4 + 2 * int(q.size), pick([0, int(q.size), 0xffff]), true);
    } else if (op === 6 && q) {
      v.setUint16(q.avail - BASE, int(4), true);
    } else if (op <= 8 && q) {
      // A hostile chain the device is sure to walk: a plausible request header, then buffers of every kind
      // (indices may repeat, making cycles), offered and notified.
      const hdr = BASE + 0x20000 + 64 * int(16);
      const hv = new DataView(ram.u8.buffer, hdr - BASE, 16);
      hv.setUint32(0, pick([0, 0, 8, 1, 4]), true);
      hv.setUint32(8, int(20), true);
      hv.setUint32(12, 0, true);
      const n = 1 + int(4);
      const ids = Array.from({ length: n }, () => int(q.size));
      ids.forEach((id, k) => {
        // The last one sometimes links on (back into the chain: a loop); a readable one sometimes follows
        // a writable one.
        const last = k === n - 1 && r() < 0.7;
        const [lo, hi, len] = k === 0 ? [hdr, 0, pick([16, 8, 4096])] : buffer();
        const write = k === 0 ? r() < 0.2 : r() < 0.9;
        const flags = (write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
        const d = q.desc - BASE + 16 * id;
        v.setUint32(d, lo, true);
        v.setUint32(d + 4, hi, true);
        v.setUint32(d + 8, len, true);
        v.setUint16(d + 12, r() < 0.05 ? VIRTQ_DESC_F_INDIRECT : flags, true);
        v.setUint16(d + 14, k === n - 1 ? int(q.size) : ids[k + 1]!, true);
      });
      drv.offer(q, ids[0]!);
      drv.kick(q);
    } else if (q) {
      drv.kick(q);
      drv.takeUsed(q);
      drv.interrupt();
    }
  }
  for (let i = ARENA; i < RAM_SIZE; i++)
    if (ram.u8[i] !== CANARY)
      assert.fail(`seed ${seed}: RAM outside the arena changed at offset 0x${i.toString(16)}`);
}

const DEVICES: Array<[string, () => VirtioDevice]> = [
  ["virtio-blk (synchronous disk)", () => new VirtioBlk(new MemoryBlockBackend(16 * 512))],
  [
    "virtio-blk (asynchronous disk)",
    () => new VirtioBlk(new MemoryBlockBackend(16 * 512, { deferred: true })),
  ],
  [
    "virtio-console",
    () => new VirtioConsole({ write() {} }, { ports: [{ name: "p1", sink: { write() {} } }] }),
  ],
  ["virtio-rng", () => new VirtioRng({ fill: (d) => d.fill(1) })],
];

for (const [name, make] of DEVICES) {
  test(`hostile guest against ${name}: never throws, never loops, never writes outside what it was given`, {
    timeout: 60_000,
  }, async () => {
    for (let seed = 1; seed <= 40; seed++) {
      fuzz(seed, make, 600);
      await new Promise((res) => setTimeout(res, 0)); // let deferred completions land
    }
  });
}

test("fuzzer sanity: chains it builds really reach the devices (used entries appear)", () => {
  const ram = new GuestRam(BASE, RAM_SIZE);
  const mmio = new VirtioMmio(
    "x",
    new VirtioRng({ fill: (d) => d.fill(1) }),
    ram,
    new CallbackIrqLine(() => {}),
  );
  const drv = new VirtioTestDriver(mmio, ram);
  drv.negotiate(ALL);
  const q = drv.setupQueue(0, 4);
  drv.driverOk();
  drv.add(q, [{ writable: 8 }], { indirect: true });
  drv.kick(q);
  assert.equal(drv.takeUsed(q).length, 1);
  assert.ok(VIRTQ_DESC_F_NEXT && VIRTQ_DESC_F_WRITE);
});
