import assert from "node:assert/strict";
import { test } from "node:test";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import type { AccessWidth } from "../bus/mmio-device.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import {
  PLIC_CONTEXT_BASE,
  PLIC_CONTEXT_STRIDE,
  PLIC_ENABLE_BASE,
  PLIC_ENABLE_STRIDE,
  PLIC_NUM_SOURCES,
  PLIC_PENDING_BASE,
  Plic,
} from "./plic.ts";

function rig(contexts = 2) {
  const out = Array.from({ length: contexts }, () => new CallbackIrqLine(() => {}));
  const plic = new Plic(out);
  return { plic, out };
}

const priority = (plic: Plic, src: number, p: number) => plic.write(4 * src, 4, p);
const enable = (plic: Plic, ctx: number, src: number) => {
  const off = PLIC_ENABLE_BASE + PLIC_ENABLE_STRIDE * ctx + 4 * (src >>> 5);
  plic.write(off, 4, plic.read(off, 4) | (1 << (src & 31)));
};
const threshold = (plic: Plic, ctx: number, t: number) =>
  plic.write(PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * ctx, 4, t);
const claim = (plic: Plic, ctx: number) => plic.read(PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * ctx + 4, 4);
const complete = (plic: Plic, ctx: number, src: number) =>
  plic.write(PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * ctx + 4, 4, src);
const pendingBit = (plic: Plic, src: number) =>
  (plic.read(PLIC_PENDING_BASE + 4 * (src >>> 5), 4) >>> (src & 31)) & 1;

test("priority, enable and threshold registers keep only their implemented bits", () => {
  const { plic } = rig();
  priority(plic, 10, 0xffffffff);
  assert.equal(plic.read(40, 4), 7);
  priority(plic, 0, 5);
  assert.equal(plic.read(0, 4), 0, "source 0 has no priority");
  plic.write(PLIC_ENABLE_BASE, 4, 0xffffffff);
  assert.equal(plic.read(PLIC_ENABLE_BASE, 4), 0xfffffffe, "source 0 cannot be enabled");
  plic.write(PLIC_ENABLE_BASE + 12, 4, 0xffffffff);
  assert.equal(plic.read(PLIC_ENABLE_BASE + 12, 4), 0, "no sources above 95");
  threshold(plic, 1, 0x1f);
  assert.equal(plic.read(PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE, 4), 7);
  assert.equal(plic.read(PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * 2, 4), 0, "context 2 does not exist");
});

test("a level source pends, interrupts an enabled context, and claim/complete gate it", () => {
  const { plic, out } = rig();
  const line = plic.sourceLine(10);
  priority(plic, 10, 1);
  line.set(true);
  assert.equal(pendingBit(plic, 10), 1);
  assert.equal(out[0].high, false, "not enabled yet");
  enable(plic, 1, 10);
  assert.equal(out[1].high, true);
  assert.equal(out[0].high, false);
  assert.equal(claim(plic, 0), 0, "context 0 has it disabled");
  assert.equal(claim(plic, 1), 10);
  assert.equal(pendingBit(plic, 10), 0);
  assert.equal(out[1].high, false);
  assert.equal(claim(plic, 1), 0, "claimed once");
  // Gateway: the line stays high, but no new request until completion.
  line.set(true);
  assert.equal(pendingBit(plic, 10), 0);
  complete(plic, 1, 10);
  assert.equal(pendingBit(plic, 10), 1, "still high at completion: pends again");
  assert.equal(out[1].high, true);
  assert.equal(claim(plic, 1), 10);
  line.set(false);
  complete(plic, 1, 10);
  assert.equal(pendingBit(plic, 10), 0, "low at completion: nothing more");
  assert.equal(out[1].high, false);
});

test("a request stays pending when its line drops before the claim", () => {
  const { plic, out } = rig();
  priority(plic, 3, 2);
  enable(plic, 0, 3);
  plic.sourceLine(3).set(true);
  assert.equal(out[0].high, true);
  plic.sourceLine(3).set(false);
  assert.equal(out[0].high, true);
  assert.equal(claim(plic, 0), 3);
  complete(plic, 0, 3);
  assert.equal(pendingBit(plic, 3), 0, "low at completion: no new request");
  assert.equal(out[0].high, false);
});

test("claim picks the highest priority, then the lowest id; threshold and priority 0 mask", () => {
  const { plic, out } = rig(1);
  for (const [src, p] of [
    [5, 3],
    [40, 6],
    [70, 6],
    [90, 0],
  ]) {
    priority(plic, src, p);
    enable(plic, 0, src);
    plic.sourceLine(src).set(true);
  }
  threshold(plic, 0, 6);
  assert.equal(out[0].high, false, "nothing above threshold 6");
  assert.equal(claim(plic, 0), 0);
  threshold(plic, 0, 5);
  assert.equal(out[0].high, true);
  assert.equal(claim(plic, 0), 40);
  assert.equal(claim(plic, 0), 70);
  assert.equal(claim(plic, 0), 0, "source 5 (priority 3) is at or below threshold 5");
  threshold(plic, 0, 0);
  assert.equal(claim(plic, 0), 5);
  assert.equal(claim(plic, 0), 0, "priority 0 never interrupts");
  assert.equal(out[0].high, false);
});

test("completion of a source not enabled for the context, or not claimed, is ignored", () => {
  const { plic } = rig();
  priority(plic, 7, 1);
  enable(plic, 0, 7);
  plic.sourceLine(7).set(true);
  assert.equal(claim(plic, 0), 7);
  complete(plic, 1, 7); // context 1 does not enable source 7
  assert.equal(pendingBit(plic, 7), 0, "still claimed: the wrong context's completion was ignored");
  complete(plic, 0, 7);
  assert.equal(pendingBit(plic, 7), 1);
  complete(plic, 0, 7); // not claimed now
  assert.equal(pendingBit(plic, 7), 1);
  complete(plic, 0, 0xffff);
  complete(plic, 0, 0);
});

test("sourceLine refuses ids that are not sources", () => {
  const { plic } = rig();
  assert.throws(() => plic.sourceLine(0));
  assert.throws(() => plic.sourceLine(96));
  assert.equal(plic.sourceLine(95), plic.sourceLine(95), "the same line object each time");
});

test("save/restore round trip, with claimed and pending sources", () => {
  assertRoundTrip(
    assert,
    () => rig(4).plic,
    (p) => {
      priority(p, 33, 4);
      priority(p, 2, 1);
      enable(p, 3, 33);
      enable(p, 3, 2);
      threshold(p, 2, 3);
      p.sourceLine(33).set(true);
      p.sourceLine(2).set(true);
      claim(p, 3);
    },
  );
});

test("a restored PLIC drives its context lines and completes what was claimed before saving", () => {
  const a = rig();
  priority(a.plic, 9, 1);
  enable(a.plic, 1, 9);
  a.plic.sourceLine(9).set(true);
  assert.equal(claim(a.plic, 1), 9);
  a.plic.sourceLine(20).set(true);
  priority(a.plic, 20, 2);
  enable(a.plic, 1, 20);
  const b = rig();
  b.plic.loadState(a.plic.saveState());
  assert.equal(b.out[1].high, true);
  assert.equal(claim(b.plic, 1), 20);
  complete(b.plic, 1, 9);
  assert.equal(claim(b.plic, 1), 9, "line 9 was high when saved: completion re-pends it");
});

test("loadState refuses inconsistent states and changes nothing", () => {
  const { plic } = rig();
  priority(plic, 1, 3);
  const good = plic.saveState();
  const bad = [
    { ...good, priority: new Uint8Array(96).fill(8) },
    { ...good, pending: Uint32Array.of(1, 0, 0) },
    { ...good, pending: Uint32Array.of(2, 0, 0), claimed: Uint32Array.of(2, 0, 0) },
    { ...good, level: Uint32Array.of(4, 0, 0) },
    { ...good, enable: new Uint32Array(3) },
    { ...good, threshold: Uint8Array.of(0, 9) },
  ];
  for (const s of bad) assert.throws(() => plic.loadState(s), StateError);
  assert.deepEqual(plic.saveState(), good);
});

test("hostile guest: random accesses never throw, never claim a non-source, keep outputs consistent", () => {
  const contexts = 4;
  const { plic, out } = rig(contexts);
  let seed = 0x9e3779b9;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const widths: AccessWidth[] = [1, 2, 4];
  const regions = [0, PLIC_PENDING_BASE, PLIC_ENABLE_BASE, PLIC_CONTEXT_BASE, PLIC_CONTEXT_BASE + 0x1000];
  let claims = 0;
  for (let i = 0; i < 30_000; i++) {
    const r = rand();
    if (r < 0.15) {
      plic.sourceLine(1 + Math.floor(rand() * 95)).set(rand() < 0.6);
      continue;
    }
    const offset =
      rand() < 0.2
        ? PLIC_CONTEXT_BASE + PLIC_CONTEXT_STRIDE * Math.floor(rand() * (contexts + 1)) + 4
        : rand() < 0.7
          ? regions[Math.floor(rand() * regions.length)] + Math.floor(rand() * 0x200)
          : Math.floor(rand() * plic.size * 1.2) - 64;
    const width = rand() < 0.8 ? 4 : widths[Math.floor(rand() * 3)];
    const value = rand() < 0.5 ? Math.floor(rand() * 100) : Math.floor(rand() * 2 ** 32);
    const isClaim =
      width === 4 && offset >= PLIC_CONTEXT_BASE && (offset - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE === 4;
    if (rand() < 0.5) plic.write(offset, width, value);
    else {
      const v = plic.read(offset, width);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** (8 * width));
      if (isClaim) {
        assert.ok(v >= 0 && v < PLIC_NUM_SOURCES, `claimed ${v}`);
        if (v !== 0) claims++;
      }
    }
    const s = plic.saveState();
    for (let w = 0; w < 3; w++) {
      assert.equal(s.pending[w] & s.claimed[w], 0);
      assert.equal(s.level[w] & ~(s.pending[w] | s.claimed[w]), 0, "a high line is pending or claimed");
    }
    assert.equal(s.pending[0] & 1, 0);
    for (let c = 0; c < contexts; c++) {
      let deliverable = false;
      for (let src = 1; src < PLIC_NUM_SOURCES; src++) {
        const bit = 1 << (src & 31);
        const w = src >>> 5;
        if (
          s.pending[w] & bit &&
          !(s.claimed[w] & bit) &&
          s.enable[c * 3 + w] & bit &&
          s.priority[src] > s.threshold[c]
        )
          deliverable = true;
      }
      assert.equal(out[c].high, deliverable, `context ${c} output`);
    }
  }
  assert.ok(claims > 10, `the random guest should claim something (${claims})`);
});

test("reset: configuration cleared, a line still high is pending again", () => {
  const { plic, out } = rig();
  priority(plic, 4, 5);
  enable(plic, 0, 4);
  plic.sourceLine(4).set(true);
  assert.equal(claim(plic, 0), 4);
  plic.reset();
  assert.equal(plic.read(16, 4), 0);
  assert.equal(plic.read(PLIC_ENABLE_BASE, 4), 0);
  assert.equal(pendingBit(plic, 4), 1, "no longer claimed; its line is high");
  assert.equal(out[0].high, false, "priority 0 after reset");
});
