import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import { MemoryBlockBackend } from "./memory-block-backend.ts";
import { VirtioBlk } from "./virtio-blk.ts";
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

test("a queue size the guest wrote but never made ready survives a snapshot (it is refused only when readied)", () => {
  for (const size of [0, 3, 1000, 0xffffffff]) {
    const { mmio, drv } = blk();
    drv.negotiate(ALL);
    drv.w32(VIRTIO_MMIO_QUEUE_SEL, 0);
    drv.w32(VIRTIO_MMIO_QUEUE_NUM, size);
    const saved = mmio.saveState();
    const { mmio: other } = blk();
    other.loadState(saved);
    assert.deepEqual(other.saveState(), saved, `QueueNum ${size}`);
    // Readying it is still refused: the size is checked where it is used.
    drv.w32(VIRTIO_MMIO_QUEUE_READY, 1);
    assert.equal(drv.r32(VIRTIO_MMIO_QUEUE_READY), 0);
    assert.ok(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET);
  }
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

// The hostile-guest fuzzing of every virtio device behind this transport is in ../fuzz/virtio-fuzzers.ts.
