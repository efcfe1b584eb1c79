import assert from "node:assert/strict";
import { test } from "node:test";
import type { AccessWidth } from "../bus/mmio-device.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import { type PowerKind, SifiveTest } from "./sifive-test.ts";

function rig() {
  const events: Array<[PowerKind, number]> = [];
  const dev = new SifiveTest((kind, code) => events.push([kind, code]));
  return { dev, events };
}

test("0x5555 powers off with code 0, 0x7777 resets, (code << 16) | 0x3333 fails with the code (0 → 1)", () => {
  const { dev, events } = rig();
  dev.write(0, 4, 0x5555);
  dev.write(0, 4, 0x7777);
  dev.write(0, 4, (42 << 16) | 0x3333);
  dev.write(0, 4, 0xffff3333);
  dev.write(0, 4, 0x3333);
  dev.write(0, 2, 0x3333);
  assert.deepEqual(events, [
    ["poweroff", 0],
    ["reset", 0],
    ["poweroff", 42],
    ["poweroff", 0xffff],
    ["poweroff", 1],
    ["poweroff", 1],
  ]);
});

test("a 16-bit write is a command too (QEMU accepts it); other values, offsets and bytes are ignored", () => {
  const { dev, events } = rig();
  dev.write(0, 2, 0x5555);
  dev.write(0, 4, 0x1234);
  dev.write(0, 4, 0x5556);
  dev.write(4, 4, 0x5555);
  dev.write(0, 1, 0x55);
  assert.deepEqual(events, [["poweroff", 0]]);
  assert.equal(dev.read(0, 4), 0);
});

test("save/restore: the finisher has no state, but refuses a foreign version", () => {
  assertRoundTrip(assert, () => rig().dev);
  assert.throws(() => rig().dev.loadState({ version: 2 }), StateError);
});

test("hostile guest: random accesses never throw; only the three commands at offset 0 act", () => {
  const { dev, events } = rig();
  let seed = 0x3333;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const widths: AccessWidth[] = [1, 2, 4];
  let expected = 0;
  for (let i = 0; i < 20_000; i++) {
    const offset = rand() < 0.5 ? 0 : Math.floor(rand() * 0x1100) - 8;
    const width = widths[Math.floor(rand() * 3)];
    const cmd = [0x3333, 0x5555, 0x7777, Math.floor(rand() * 0x10000)][Math.floor(rand() * 4)];
    const value = (Math.floor(rand() * 0x10000) * 0x10000 + cmd) % 2 ** (8 * width);
    if (offset === 0 && width !== 1 && [0x3333, 0x5555, 0x7777].includes(value & 0xffff)) expected++;
    dev.write(offset, width, value);
    assert.equal(dev.read(offset, width), 0);
  }
  assert.equal(events.length, expected);
  assert.ok(expected > 100);
  for (const [kind, code] of events)
    assert.ok((kind === "poweroff" || kind === "reset") && code >= 0 && code <= 0xffff);
});
