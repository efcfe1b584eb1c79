// DebugTriggers: QEMU 7.2's write filtering (the full comparison with QEMU is
// tests/compliance/debug-triggers.S), its saved state, and the hart's state versions 1 and 2.

import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../bus/guest-ram.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import {
  CSR_TDATA1,
  CSR_TDATA2,
  CSR_TDATA3,
  CSR_TINFO,
  CSR_TSELECT,
  DebugTriggers,
  type DebugTriggersState,
} from "./debug-triggers.ts";
import { Rv64Hart } from "./hart.ts";

const TYPE2_HI = 0x20000000;
const TYPE6_HI = 0x60000000;

function read(t: DebugTriggers, csr: number): [number, number] {
  t.read(csr);
  return [t.lo >>> 0, t.hi >>> 0];
}

test("reset: trigger 0 selected, both type 2 with nothing enabled; tinfo names types 2 and 6", () => {
  const t = new DebugTriggers();
  assert.deepEqual(read(t, CSR_TSELECT), [0, 0]);
  assert.deepEqual(read(t, CSR_TDATA1), [0, TYPE2_HI]);
  assert.deepEqual(read(t, CSR_TDATA2), [0, 0]);
  assert.deepEqual(read(t, CSR_TDATA3), [0, 0]);
  assert.deepEqual(read(t, CSR_TINFO), [0x44, 0]);
  assert.equal(DebugTriggers.handles(0x79f), false);
  assert.equal(DebugTriggers.handles(CSR_TSELECT), true);
  assert.equal(DebugTriggers.handles(CSR_TINFO), true);
  assert.equal(DebugTriggers.handles(0x7a5), false, "tcontrol is not in QEMU 7.2");
});

test("writes keep what QEMU keeps", () => {
  const t = new DebugTriggers();
  t.write(CSR_TSELECT, 2, 0);
  t.write(CSR_TSELECT, 1, 1);
  t.write(CSR_TSELECT, -1, -1);
  assert.deepEqual(read(t, CSR_TSELECT), [0, 0], "no such trigger: tselect keeps its value");
  // type 2: dmode (hi bit 27), match/chain/action/timing/select/hit dropped; sizehi:sizelo 5 kept
  t.write(
    CSR_TDATA1,
    0x5f | (1 << 16) | (1 << 21) | (0xf << 7) | (1 << 11) | (0xf << 12) | (7 << 18),
    TYPE2_HI | (1 << 27),
  );
  assert.deepEqual(read(t, CSR_TDATA1), [0x5f | (1 << 16) | (1 << 21), TYPE2_HI]);
  // size 4 (sizehi 1, sizelo 0) is not supported: "any"
  t.write(CSR_TDATA1, 0x40 | (1 << 21), TYPE2_HI);
  assert.deepEqual(read(t, CSR_TDATA1), [0x40, TYPE2_HI]);
  // type 6: vu, vs kept, size 9 dropped
  t.write(CSR_TDATA1, (3 << 23) | 0x5f | (9 << 16) | (7 << 20), TYPE6_HI);
  assert.deepEqual(read(t, CSR_TDATA1), [((3 << 23) | 0x5f) >>> 0, TYPE6_HI]);
  // other types: ignored
  for (const type of [0, 1, 3, 4, 5, 7, 8, 15]) t.write(CSR_TDATA1, 0x40, type << 28);
  assert.deepEqual(read(t, CSR_TDATA1), [((3 << 23) | 0x5f) >>> 0, TYPE6_HI]);
  t.write(CSR_TDATA2, 0x9abcdef0 | 0, 0x12345678);
  t.write(CSR_TDATA3, -1, -1);
  t.write(CSR_TINFO, -1, -1);
  assert.deepEqual(read(t, CSR_TDATA2), [0x9abcdef0, 0x12345678]);
  assert.deepEqual(read(t, CSR_TDATA3), [0, 0]);
  assert.deepEqual(read(t, CSR_TINFO), [0x44, 0]);
  t.write(CSR_TSELECT, 1, 0);
  assert.deepEqual(read(t, CSR_TDATA1), [0, TYPE2_HI], "trigger 1 has its own tdata1");
  assert.deepEqual(read(t, CSR_TDATA2), [0, 0]);
});

test("save/restore round trip", () => {
  assertRoundTrip(
    assert,
    () => new DebugTriggers(),
    (t) => {
      t.write(CSR_TSELECT, 1, 0);
      t.write(CSR_TDATA2, 0x1000, 0);
      t.write(CSR_TDATA1, 0x44, TYPE2_HI);
    },
  );
});

test("a saved state no write could produce is refused and nothing changes", () => {
  const t = new DebugTriggers();
  t.write(CSR_TDATA2, 7, 0);
  const good = t.saveState();
  const bad: Array<[Partial<DebugTriggersState>, RegExp]> = [
    [{ tselect: 2 }, /tselect 2 is not a trigger/],
    [{ tdata1: new Int32Array(2) }, /tdata1 is not an Int32Array of 4/],
    [{ tdata1: Int32Array.of(0, TYPE2_HI | (1 << 27), 0, TYPE2_HI) }, /tdata1 of trigger 0/],
    [{ tdata1: Int32Array.of(0, TYPE2_HI, 1 << 20, TYPE2_HI) }, /tdata1 of trigger 1/],
    [{ tdata1: Int32Array.of(0, 0x30000000, 0, TYPE2_HI) }, /tdata1 of trigger 0/],
  ];
  for (const [change, message] of bad) {
    assert.throws(
      () => t.loadState({ ...good, ...change }),
      (e) => e instanceof StateError && message.test(e.message),
    );
    assert.deepEqual(t.saveState(), good);
  }
});

/** A hart that ran `csrw tselect, 1; csrw tdata2, -1` (a1 = 1, then -1). */
function hartWithTriggers(): Rv64Hart {
  const base = 0x80000000;
  const ram = new GuestRam(base, 1 << 16);
  const program = [
    0x00100593, // addi a1, zero, 1
    0x7a059073, // csrw tselect, a1
    0xfff00593, // addi a1, zero, -1
    0x7a259073, // csrw tdata2, a1
  ];
  for (const [i, w] of program.entries()) ram.view.setUint32(4 * i, w, true);
  const hart = new Rv64Hart(0, new PhysBus(ram), { mtime: () => 0 }, { jit: false });
  hart.setPc(base, 0);
  assert.equal(hart.run(4), 4);
  return hart;
}

test("the hart saves its triggers (state version 2) and loads a version 1 state with them reset", () => {
  const hart = hartWithTriggers();
  const saved = hart.saveState();
  assert.equal(saved.version, 2);
  assert.equal(saved.triggers?.tselect, 1);
  assert.deepEqual(saved.triggers?.tdata2, Int32Array.of(0, 0, -1, -1));
  const other = hartWithTriggers();
  other.reset();
  other.loadState(saved);
  assert.deepEqual(other.saveState(), saved);
  // Version 1 (before triggers): the rest of the hart loads, its triggers are as after reset.
  const { triggers: _, ...v1Fields } = saved;
  other.loadState({ ...v1Fields, version: 1 });
  assert.deepEqual(other.saveState().triggers, new DebugTriggers().saveState());
  assert.deepEqual(other.saveState().x, saved.x);
  // A version 2 state with unusable triggers is refused whole.
  const before = other.saveState();
  assert.throws(
    () =>
      other.loadState({
        ...saved,
        x: saved.x.slice().fill(5, 2),
        triggers: { ...saved.triggers!, tselect: 9 },
      }),
    /hart0 is unusable: tselect 9/,
  );
  assert.deepEqual(other.saveState(), before);
  assert.throws(() => other.loadState({ ...saved, triggers: undefined }), /triggers are not an object/);
});
