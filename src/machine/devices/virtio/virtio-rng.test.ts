import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import { assertRoundTrip } from "../../state/round-trip.ts";
import { VirtioMmio } from "./virtio-mmio.ts";
import { VIRTIO_RNG_MAX_BYTES, VirtioRng } from "./virtio-rng.ts";
import { VIRTIO_ID_ENTROPY, VIRTIO_MMIO_DEVICE_ID, VIRTIO_MMIO_INT_VRING } from "./virtio-spec.ts";
import { VirtioTestDriver } from "./virtio-test-driver.ts";

function setup() {
  const ram = new GuestRam(0x8000_0000, 1 << 20);
  const irq = new CallbackIrqLine(() => {});
  let counter = 0;
  const calls: number[] = [];
  const rng = new VirtioRng({
    fill(dst) {
      calls.push(dst.length);
      for (let i = 0; i < dst.length; i++) dst[i] = (++counter & 0xff) | 1;
    },
  });
  const mmio = new VirtioMmio("virtio_mmio@10008000", rng, ram, irq);
  const drv = new VirtioTestDriver(mmio, ram);
  assert.ok(drv.negotiate((1n << 64n) - 1n) !== null);
  const q = drv.setupQueue(0);
  drv.driverOk();
  return { ram, irq, mmio, drv, q, calls };
}

test("rng fills every offered buffer and reports the length it wrote", () => {
  const { drv, q, irq, mmio } = setup();
  assert.equal(mmio.read(VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_ENTROPY);
  const a = drv.add(q, [{ writable: 64 }]);
  const b = drv.add(q, [{ writable: 10 }, { writable: 22 }]);
  drv.kick(q);
  assert.equal(irq.high, true);
  assert.equal(drv.interrupt(), VIRTIO_MMIO_INT_VRING);
  const used = drv.takeUsed(q);
  assert.deepEqual(
    used.map((u) => [u.id, u.len]),
    [
      [a, 64],
      [b, 32],
    ],
  );
  for (const u of used)
    for (const buf of u.buffers)
      assert.ok(
        drv.get(buf.addr, buf.len).every((x) => x !== 0),
        "every byte filled",
      );
});

test("a huge buffer gets at most VIRTIO_RNG_MAX_BYTES, in calls the host source accepts", () => {
  const { drv, q, calls } = setup();
  drv.add(q, [{ writable: 200_000 }]);
  drv.kick(q);
  const [u] = drv.takeUsed(q);
  assert.equal(u!.len, VIRTIO_RNG_MAX_BYTES);
  assert.ok(calls.every((n) => n <= 65536));
  const buf = u!.buffers[0]!;
  assert.ok(
    drv.get(buf.addr + VIRTIO_RNG_MAX_BYTES, 1000).every((x) => x === 0),
    "bytes past the cap untouched",
  );
});

test("rng state round-trips and rejects unknown versions", () => {
  assertRoundTrip(
    assert,
    () => setup().mmio,
    (mmio) => mmio.write(0x24, 4, 1), // DriverFeaturesSel
  );
  const { mmio } = setup();
  const s = mmio.saveState();
  mmio.loadState(structuredClone(s));
  assert.deepEqual(mmio.saveState(), s);
  assert.throws(() => mmio.loadState({ ...s, device: { version: 9 } }), { code: "bad-state" });
});
