// PhysBus: RAM and MMIO routing, 8-byte splitting, faults for unmapped addresses, overlap checks.

import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "./guest-ram.ts";
import type { AccessWidth, MmioDevice } from "./mmio-device.ts";
import { PhysBus } from "./phys-bus.ts";

class RecordingDevice implements MmioDevice {
  readonly log: string[] = [];
  constructor(readonly id: string) {}
  read(offset: number, width: AccessWidth): number {
    this.log.push(`r${width}@${offset}`);
    return (0xa0 + offset) >>> 0;
  }
  write(offset: number, width: AccessWidth, value: number): void {
    this.log.push(`w${width}@${offset}=${value.toString(16)}`);
  }
}

test("RAM loads and stores at any alignment, little-endian", () => {
  const bus = new PhysBus(new GuestRam(0x80000000, 8192));
  assert.ok(bus.store(0x80000001, 8, 0x44332211, 0x88776655));
  assert.ok(bus.load(0x80000001, 4));
  assert.equal(bus.lo >>> 0, 0x44332211);
  assert.ok(bus.load(0x80000003, 2));
  assert.equal(bus.lo, 0x4433);
  assert.ok(bus.load(0x80000001, 8));
  assert.equal(bus.hi >>> 0, 0x88776655);
  assert.equal(bus.ramOffset(0x80001ffc, 8), -1, "straddles the end of RAM");
});

test("MMIO routes to the device with window offsets; 8-byte accesses split low half first", () => {
  const bus = new PhysBus(new GuestRam(0x80000000, 4096));
  const dev = new RecordingDevice("dev");
  bus.map(0x10000000, 0x100, dev);
  assert.ok(bus.store(0x10000010, 8, 0x11, 0x22));
  assert.ok(bus.load(0x10000008, 8));
  assert.equal(bus.lo, 0xa8);
  assert.equal(bus.hi, 0xac);
  assert.ok(bus.store(0x10000001, 1, 0x1ff, 0));
  assert.deepEqual(dev.log, ["w4@16=11", "w4@20=22", "r4@8", "r4@12", "w1@1=ff"]);
  assert.equal(bus.read(0x10000004, 4), 0xa4);
  assert.equal(bus.lastFault, false);
});

test("unmapped addresses fault and change nothing", () => {
  const bus = new PhysBus(new GuestRam(0x80000000, 4096));
  bus.map(0x10000000, 0x100, new RecordingDevice("dev"));
  bus.lo = 7;
  assert.equal(bus.load(0x20000000, 4), false);
  assert.equal(bus.lo, 7);
  assert.equal(bus.store(0x100000fe, 4, 0, 0), false, "crosses the end of the window");
  assert.equal(bus.read(0x0, 4), 0);
  assert.equal(bus.lastFault, true);
});

test("map refuses overlaps with RAM and other devices", () => {
  const bus = new PhysBus(new GuestRam(0x80000000, 4096));
  bus.map(0x1000, 0x1000, new RecordingDevice("a"));
  assert.throws(() => bus.map(0x1800, 0x1000, new RecordingDevice("b")), /overlaps device a/);
  assert.throws(() => bus.map(0x7ffff000, 0x2000, new RecordingDevice("c")), /overlaps guest RAM/);
  bus.map(0x2000, 0x1000, new RecordingDevice("d"));
  assert.deepEqual(
    bus.windows.map((w) => w.device.id),
    ["a", "d"],
  );
});
