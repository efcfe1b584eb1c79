import assert from "node:assert/strict";
import { test } from "node:test";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import type { AccessWidth } from "../bus/mmio-device.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import { CLINT_MTIME, CLINT_MTIMECMP_BASE, CLINT_SIZE, Clint } from "./clint.ts";

class ManualClock {
  now = 0;
  nowMs(): number {
    return this.now;
  }
}

function rig(harts = 2, startMs = 0) {
  const clock = new ManualClock();
  clock.now = startMs;
  const msip = Array.from({ length: harts }, () => new CallbackIrqLine(() => {}));
  const mtip = Array.from({ length: harts }, () => new CallbackIrqLine(() => {}));
  const clint = new Clint(clock, msip, mtip);
  return { clock, msip, mtip, clint };
}

function writeCmp(clint: Clint, hart: number, value: number): void {
  clint.write(CLINT_MTIMECMP_BASE + 8 * hart, 4, value % 2 ** 32);
  clint.write(CLINT_MTIMECMP_BASE + 8 * hart + 4, 4, Math.floor(value / 2 ** 32));
}

function readMtime(clint: Clint): number {
  return clint.read(CLINT_MTIME, 4) + clint.read(CLINT_MTIME + 4, 4) * 2 ** 32;
}

test("msip: bit 0 drives the hart's MSIP line, the other bits read as zero", () => {
  const { clint, msip } = rig();
  clint.write(0x4, 4, 0xffffffff);
  assert.equal(clint.read(0x4, 4), 1);
  assert.equal(msip[1].high, true);
  assert.equal(msip[0].high, false);
  clint.write(0x4, 4, 2);
  assert.equal(clint.read(0x4, 4), 0);
  assert.equal(msip[1].high, false);
  // A hart that does not exist: ignored, reads 0.
  clint.write(0x8, 4, 1);
  assert.equal(clint.read(0x8, 4), 0);
});

test("mtime runs at 10 MHz of the Clock and is readable as two halves", () => {
  const { clint, clock } = rig(1, 1234);
  assert.equal(clint.mtime(), 0);
  clock.now += 1.5;
  assert.equal(clint.mtime(), 15_000);
  assert.equal(readMtime(clint), 15_000);
  clock.now += 500_000; // 500 s: 5e9 ticks, past 2^32
  assert.equal(readMtime(clint), 5_000_015_000);
  assert.equal(clint.read(CLINT_MTIME + 4, 4), 1);
});

test("MTIP follows mtime >= mtimecmp, on access and on update()", () => {
  const { clint, clock, mtip } = rig();
  assert.equal(mtip[0].high, true, "reset mtimecmp is 0, as QEMU's: MTIP pending until firmware moves it");
  writeCmp(clint, 0, 10_000); // 1 ms
  assert.equal(mtip[0].high, false);
  assert.equal(clint.read(CLINT_MTIMECMP_BASE, 4), 10_000);
  clock.now = 0.9999;
  clint.update();
  assert.equal(mtip[0].high, false);
  clock.now = 1;
  clint.update();
  assert.equal(mtip[0].high, true);
  assert.equal(mtip[1].high, true, "hart 1's mtimecmp is still 0");
  clint.write(CLINT_MTIMECMP_BASE + 12, 4, 0xffffffff);
  assert.equal(mtip[1].high, false);
  // Moving mtimecmp ahead clears it, as Linux does in its timer handler.
  writeCmp(clint, 0, 20_000);
  assert.equal(mtip[0].high, false);
  // Any access re-evaluates.
  clock.now = 2;
  clint.read(0, 4);
  assert.equal(mtip[0].high, true);
});

test("nextDeadlineMs gives the host time of the earliest future mtimecmp", () => {
  const { clint, clock } = rig(2, 100);
  assert.equal(clint.nextDeadlineMs(), Number.POSITIVE_INFINITY);
  writeCmp(clint, 0, 50_000); // 5 ms of guest time
  writeCmp(clint, 1, 20_000); // 2 ms
  assert.equal(clint.nextDeadlineMs(), 102);
  clock.now = 102;
  assert.equal(clint.nextDeadlineMs(), 105, "a reached deadline is no longer in the future");
  clock.now = 106;
  assert.equal(clint.nextDeadlineMs(), Number.POSITIVE_INFINITY);
});

test("writing mtime moves guest time and keeps it running from there", () => {
  const { clint, clock, mtip } = rig(1, 50);
  clock.now = 51; // mtime 10_000
  clint.write(CLINT_MTIME + 4, 4, 2);
  assert.equal(readMtime(clint), 2 * 2 ** 32 + 10_000);
  clint.write(CLINT_MTIME, 4, 7);
  assert.equal(readMtime(clint), 2 * 2 ** 32 + 7);
  clock.now = 52;
  assert.equal(clint.mtime(), 2 * 2 ** 32 + 10_007);
  writeCmp(clint, 0, 2 * 2 ** 32 + 20_007);
  assert.equal(mtip[0].high, false);
  assert.equal(clint.nextDeadlineMs(), 53);
  clint.write(CLINT_MTIME + 4, 4, 3);
  assert.equal(mtip[0].high, true, "jumping mtime past mtimecmp raises MTIP at once");
});

test("byte and halfword accesses read and replace lanes of the 32-bit register", () => {
  const { clint } = rig(1);
  clint.write(CLINT_MTIMECMP_BASE, 4, 0x11223344);
  assert.equal(clint.read(CLINT_MTIMECMP_BASE + 1, 1), 0x33);
  assert.equal(clint.read(CLINT_MTIMECMP_BASE + 2, 2), 0x1122);
  clint.write(CLINT_MTIMECMP_BASE + 1, 1, 0xab);
  assert.equal(clint.read(CLINT_MTIMECMP_BASE, 4), 0x1122ab44);
  assert.equal(clint.read(CLINT_MTIMECMP_BASE + 3, 2), 0, "an access straddling two words reads 0");
});

test("save/restore round trip", () => {
  assertRoundTrip(
    assert,
    () => rig(2, 10).clint,
    (c) => {
      c.write(0x4, 4, 1);
      writeCmp(c, 0, 123_456_789);
      c.write(CLINT_MTIME, 4, 99);
    },
  );
});

test("loadState continues guest time from the saved mtime, whatever the host clock says", () => {
  const a = rig(1, 1000);
  a.clock.now = 1003; // mtime 30_000
  writeCmp(a.clint, 0, 40_000);
  const saved = a.clint.saveState();
  const b = rig(1, 777_777);
  b.clint.loadState(saved);
  assert.equal(b.clint.mtime(), 30_000);
  assert.equal(b.mtip[0].high, false);
  assert.equal(b.clint.nextDeadlineMs(), 777_778);
  b.clock.now = 777_778;
  b.clint.update();
  assert.equal(b.mtip[0].high, true);
});

test("loadState refuses a state for another hart count and changes nothing", () => {
  const a = rig(2).clint;
  const b = rig(1).clint;
  writeCmp(b, 0, 5);
  const before = b.saveState();
  assert.throws(() => b.loadState(a.saveState()), StateError);
  assert.throws(() => b.loadState({ ...before, msip: Uint8Array.of(2) }), StateError);
  assert.throws(() => b.loadState({ ...before, mtime: Number.NaN }), StateError);
  assert.deepEqual(b.saveState(), before);
});

test("hostile guest: random accesses never throw and keep MTIP = (mtime >= mtimecmp)", () => {
  const { clint, clock, mtip, msip } = rig(3);
  let seed = 0xc1 + 1;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const widths: AccessWidth[] = [1, 2, 4];
  const hot = [0, 4, 8, CLINT_MTIMECMP_BASE, CLINT_MTIMECMP_BASE + 4, CLINT_MTIMECMP_BASE + 8, CLINT_MTIME];
  for (let i = 0; i < 20_000; i++) {
    clock.now += rand() * 0.01;
    const offset =
      rand() < 0.5
        ? hot[Math.floor(rand() * hot.length)] + Math.floor(rand() * 8)
        : Math.floor(rand() * CLINT_SIZE * 1.1) - 16;
    const width = widths[Math.floor(rand() * 3)];
    const value = rand() < 0.3 ? Math.floor(rand() * 64) : Math.floor(rand() * 2 ** 32);
    if (rand() < 0.5) clint.write(offset, width, value);
    else {
      const v = clint.read(offset, width);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** (8 * width), `read ${offset}/${width} gave ${v}`);
    }
    const t = clint.mtime();
    for (let h = 0; h < 3; h++) {
      const cmp =
        clint.read(CLINT_MTIMECMP_BASE + 8 * h, 4) + clint.read(CLINT_MTIMECMP_BASE + 8 * h + 4, 4) * 2 ** 32;
      assert.equal(mtip[h].high, t >= cmp);
      assert.equal(msip[h].high, clint.read(4 * h, 4) === 1);
    }
  }
});

test("reset: mtime and mtimecmp back to 0, software interrupts cleared", () => {
  const { clint, clock, mtip, msip } = rig(1, 5);
  clock.now = 10;
  writeCmp(clint, 0, 2 ** 40);
  clint.write(0, 4, 1);
  assert.equal(mtip[0].high, false);
  clint.reset();
  assert.equal(clint.mtime(), 0);
  assert.equal(mtip[0].high, true, "mtimecmp 0 again");
  assert.equal(msip[0].high, false);
  assert.equal(clint.nextDeadlineMs(), Number.POSITIVE_INFINITY);
});
