import assert from "node:assert/strict";
import { test } from "node:test";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import type { AccessWidth } from "../bus/mmio-device.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import {
  GOLDFISH_RTC_SIZE,
  GoldfishRtc,
  RTC_ALARM_HIGH,
  RTC_ALARM_LOW,
  RTC_ALARM_STATUS,
  RTC_CLEAR_ALARM,
  RTC_CLEAR_INTERRUPT,
  RTC_IRQ_ENABLED,
  RTC_TIME_HIGH,
  RTC_TIME_LOW,
} from "./goldfish-rtc.ts";

/** Host time: a monotonic clock and a wall clock that advance together. */
class World {
  mono = 500;
  wallAtZero = 1_700_000_000_123.5; // binary fractions keep the test's arithmetic exact
  nowMs(): number {
    return this.mono;
  }
  wall = (): number => this.wallAtZero + this.mono;
  advance(ms: number): void {
    this.mono += ms;
  }
}

function rig() {
  const world = new World();
  const irq = new CallbackIrqLine(() => {});
  const rtc = new GoldfishRtc(world, irq, world.wall);
  return { world, irq, rtc };
}

/** Guest time as a driver reads it: TIME_LOW (latching) then TIME_HIGH. */
function readTime(rtc: GoldfishRtc): bigint {
  const lo = rtc.read(RTC_TIME_LOW, 4);
  const hi = rtc.read(RTC_TIME_HIGH, 4);
  return (BigInt(hi) << 32n) | BigInt(lo);
}

function setTime(rtc: GoldfishRtc, ns: bigint): void {
  // Linux's goldfish_rtc_set_time: high half first, then low.
  rtc.write(RTC_TIME_HIGH, 4, Number(ns >> 32n));
  rtc.write(RTC_TIME_LOW, 4, Number(ns & 0xffffffffn));
}

function setAlarm(rtc: GoldfishRtc, ns: bigint): void {
  rtc.write(RTC_ALARM_HIGH, 4, Number(ns >> 32n));
  rtc.write(RTC_ALARM_LOW, 4, Number(ns & 0xffffffffn));
}

test("TIME_LOW/TIME_HIGH give host wall time in exact nanoseconds since the epoch", () => {
  const { rtc, world } = rig();
  assert.equal(readTime(rtc), 1_700_000_000_623_500_000n);
  world.advance(1000.25);
  assert.equal(readTime(rtc), 1_700_000_001_623_750_000n);
});

test("reading TIME_LOW latches TIME_HIGH", () => {
  const { rtc, world } = rig();
  const lo = rtc.read(RTC_TIME_LOW, 4);
  const hi = rtc.read(RTC_TIME_HIGH, 4);
  world.advance((10 * 2 ** 32) / 1e6); // ten carries into the high half
  assert.equal(rtc.read(RTC_TIME_HIGH, 4), hi, "still the latched half");
  assert.notEqual(rtc.read(RTC_TIME_LOW, 4), undefined);
  assert.equal(rtc.read(RTC_TIME_HIGH, 4), hi + 10);
  assert.ok(lo >= 0);
});

test("the guest sets the time; it then runs on from there", () => {
  const { rtc, world } = rig();
  setTime(rtc, 86_400_000_000_000n); // 1970-01-02
  assert.equal(readTime(rtc), 86_400_000_000_000n);
  world.advance(2.5);
  assert.equal(readTime(rtc), 86_400_002_500_000n);
  setTime(rtc, 0xfedc_ba98_7654_3210n);
  assert.equal(readTime(rtc), 0xfedc_ba98_7654_3210n);
});

test("alarm: armed by ALARM_LOW, fires at its time through update(), interrupt gated and cleared", () => {
  const { rtc, world, irq } = rig();
  setTime(rtc, 1_000_000_000n);
  rtc.write(RTC_IRQ_ENABLED, 4, 1);
  assert.equal(rtc.read(RTC_IRQ_ENABLED, 4), 1);
  setAlarm(rtc, 1_003_000_000n); // 3 ms ahead
  assert.equal(rtc.read(RTC_ALARM_STATUS, 4), 1);
  assert.equal(rtc.read(RTC_ALARM_LOW, 4), 1_003_000_000);
  assert.equal(rtc.nextDeadlineMs(), 503);
  world.advance(2.75);
  rtc.update();
  assert.equal(irq.high, false);
  world.advance(0.25);
  rtc.update();
  assert.equal(irq.high, true);
  assert.equal(rtc.read(RTC_ALARM_STATUS, 4), 0, "a fired alarm is no longer running");
  assert.equal(rtc.nextDeadlineMs(), Number.POSITIVE_INFINITY);
  rtc.write(RTC_IRQ_ENABLED, 4, 0);
  assert.equal(irq.high, false, "IRQ_ENABLED gates the line");
  rtc.write(RTC_IRQ_ENABLED, 4, 1);
  assert.equal(irq.high, true, "the interrupt stayed pending");
  rtc.write(RTC_CLEAR_INTERRUPT, 4, 1);
  assert.equal(irq.high, false);
});

test("an alarm in the past fires at once; CLEAR_ALARM cancels a running one", () => {
  const { rtc, world, irq } = rig();
  rtc.write(RTC_IRQ_ENABLED, 4, 1);
  setAlarm(rtc, 5n);
  assert.equal(irq.high, true);
  assert.equal(rtc.read(RTC_ALARM_STATUS, 4), 0);
  rtc.write(RTC_CLEAR_INTERRUPT, 4, 0);
  setAlarm(rtc, readTime(rtc) + 1_000_000n);
  rtc.write(RTC_CLEAR_ALARM, 4, 0);
  assert.equal(rtc.read(RTC_ALARM_STATUS, 4), 0);
  world.advance(5);
  rtc.update();
  assert.equal(irq.high, false);
});

test("save/restore round trip", () => {
  assertRoundTrip(
    assert,
    () => rig().rtc,
    (r) => {
      setTime(r, 123_456_789_000n);
      r.write(RTC_IRQ_ENABLED, 4, 1);
      setAlarm(r, 999_999_999_999n);
      r.read(RTC_TIME_LOW, 4);
    },
  );
});

test("a restored RTC keeps the guest's time offset and its running alarm", () => {
  const a = rig();
  setTime(a.rtc, 10_000_000_000n);
  a.rtc.write(RTC_IRQ_ENABLED, 4, 1);
  setAlarm(a.rtc, 10_002_000_000n);
  const b = rig();
  b.rtc.loadState(a.rtc.saveState());
  assert.equal(readTime(b.rtc), 10_000_000_000n);
  b.world.advance(2);
  b.rtc.update();
  assert.equal(b.irq.high, true);
});

test("loadState refuses bad fields and changes nothing", () => {
  const { rtc } = rig();
  setTime(rtc, 77n);
  const good = rtc.saveState();
  const bad = [
    { ...good, offsetLo: -1 },
    { ...good, alarmHi: 2 ** 32 },
    { ...good, timeHigh: 1.5 },
    { ...good, irqPending: 1 as unknown as boolean },
  ];
  for (const s of bad) assert.throws(() => rtc.loadState(s), StateError);
  assert.deepEqual(rtc.saveState(), good);
});

test("hostile guest: random accesses never throw; IRQ = pending && enabled; time stays 64-bit", () => {
  const { rtc, world, irq } = rig();
  let seed = 0x60d;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const widths: AccessWidth[] = [1, 2, 4];
  for (let i = 0; i < 20_000; i++) {
    world.advance(rand() * 0.1);
    if (rand() < 0.05) rtc.update();
    const offset =
      rand() < 0.8 ? Math.floor(rand() * 0x24) : Math.floor(rand() * GOLDFISH_RTC_SIZE * 1.1) - 8;
    const width = rand() < 0.7 ? 4 : widths[Math.floor(rand() * 3)];
    const value = Math.floor(rand() * 2 ** (8 * width));
    if (rand() < 0.5) rtc.write(offset, width, value);
    else {
      const v = rtc.read(offset, width);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** (8 * width), `read ${offset}/${width}: ${v}`);
    }
    const s = rtc.saveState();
    assert.equal(irq.high, s.irqPending && s.irqEnabled);
    const d = rtc.nextDeadlineMs();
    assert.ok(s.alarmRunning ? d >= world.mono : d === Number.POSITIVE_INFINITY);
    const t = readTime(rtc);
    assert.ok(t >= 0n && t < 1n << 64n);
  }
});

test("reset: alarm and interrupt off, time back to the host's", () => {
  const { rtc, irq } = rig();
  setTime(rtc, 42_000_000_000n);
  rtc.write(RTC_IRQ_ENABLED, 4, 1);
  setAlarm(rtc, 1n);
  assert.equal(irq.high, true);
  setAlarm(rtc, 50_000_000_000n);
  rtc.reset();
  assert.equal(irq.high, false);
  assert.equal(rtc.read(RTC_ALARM_STATUS, 4), 0);
  assert.equal(rtc.read(RTC_IRQ_ENABLED, 4), 0);
  assert.equal(readTime(rtc), 1_700_000_000_623_500_000n);
});
