import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import {
  DescriptorChain,
  VIRTQ_AVAIL_F_NO_INTERRUPT,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  Virtqueue,
} from "./virtqueue.ts";

const BASE = 0x8000_0000;
const DESC = BASE + 0x1000;
const AVAIL = BASE + 0x2000;
const USED = BASE + 0x3000;
const N = 8;

function setup(size = N) {
  const ram = new GuestRam(BASE, 64 * 1024);
  const errors: string[] = [];
  const q = new Virtqueue(ram, N, (r) => errors.push(r));
  q.size = size;
  q.descLo = DESC;
  q.driverLo = AVAIL;
  q.deviceLo = USED;
  const v = ram.view;
  const desc = (table: number, i: number, addr: number, len: number, flags: number, next = 0, addrHi = 0) => {
    const d = table - BASE + 16 * i;
    v.setUint32(d, addr, true);
    v.setUint32(d + 4, addrHi, true);
    v.setUint32(d + 8, len, true);
    v.setUint16(d + 12, flags, true);
    v.setUint16(d + 14, next, true);
  };
  let availIdx = 0;
  const offer = (head: number) => {
    v.setUint16(AVAIL - BASE + 4 + 2 * (availIdx % size), head, true);
    availIdx = (availIdx + 1) & 0xffff;
    v.setUint16(AVAIL - BASE + 2, availIdx, true);
  };
  const chain = new DescriptorChain(ram, N);
  return { ram, q, errors, desc, offer, chain, v };
}

test("enable refuses sizes that are not powers of two ≤ QueueNumMax, misaligned or out-of-RAM rings", () => {
  for (const [field, value] of [
    ["size", 0],
    ["size", 3],
    ["size", 16],
    ["descLo", DESC + 8],
    ["driverLo", AVAIL + 1],
    ["deviceLo", USED + 2],
    ["deviceLo", BASE + 64 * 1024 - 8],
    ["descHi", 1],
    ["driverLo", 0x1000],
  ] as const) {
    const { q } = setup();
    (q as unknown as Record<string, number>)[field] = value;
    assert.equal(q.enable(), false, `${field}=${value}`);
    assert.equal(q.ready, false);
  }
  const { q } = setup();
  assert.equal(q.enable(), true);
});

test("a chain of readable then writable buffers, and one through an indirect table", () => {
  const { q, desc, offer, chain, errors } = setup();
  q.enable();
  desc(DESC, 5, BASE + 0x4000, 100, VIRTQ_DESC_F_NEXT, 2);
  desc(DESC, 2, BASE + 0x5000, 200, VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE, 7);
  desc(DESC, 7, BASE + 0x6000, 1, VIRTQ_DESC_F_WRITE);
  offer(5);
  const IND = BASE + 0x7000;
  desc(IND, 0, BASE + 0x8000, 16, VIRTQ_DESC_F_NEXT, 1);
  desc(IND, 1, BASE + 0x9000, 32, VIRTQ_DESC_F_WRITE);
  desc(DESC, 0, IND, 32, VIRTQ_DESC_F_INDIRECT);
  offer(0);
  assert.ok(q.hasAvailable());
  assert.equal(q.pop(chain), true);
  assert.equal(chain.head, 5);
  assert.deepEqual([chain.readCount, chain.readTotal, chain.writeCount, chain.writeTotal], [1, 100, 2, 201]);
  assert.equal(chain.readOff[0], 0x4000);
  assert.deepEqual([chain.writeOff[0], chain.writeOff[1]], [0x5000, 0x6000]);
  assert.equal(q.pop(chain), true);
  assert.equal(chain.head, 0);
  assert.deepEqual([chain.readTotal, chain.writeTotal], [16, 32]);
  assert.equal(q.pop(chain), false, "ring empty");
  assert.deepEqual(errors, []);
});

test("copyFrom and copyTo walk segments by logical position and stop at the end", () => {
  const { ram, q, desc, offer, chain } = setup();
  q.enable();
  desc(DESC, 0, BASE + 0x4000, 3, VIRTQ_DESC_F_NEXT, 1);
  desc(DESC, 1, BASE + 0x4100, 4, VIRTQ_DESC_F_NEXT, 2);
  desc(DESC, 2, BASE + 0x5000, 2, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 3);
  desc(DESC, 3, BASE + 0x5100, 5, VIRTQ_DESC_F_WRITE);
  offer(0);
  ram.u8.set([1, 2, 3], 0x4000);
  ram.u8.set([4, 5, 6, 7], 0x4100);
  q.pop(chain);
  const dst = new Uint8Array(10);
  assert.equal(chain.copyFrom(2, dst, 0, 10), 5);
  assert.deepEqual([...dst.subarray(0, 5)], [3, 4, 5, 6, 7]);
  assert.equal(chain.copyTo(1, new Uint8Array([9, 9, 9, 9, 9, 9, 9, 9]), 0, 8), 6);
  assert.deepEqual([...ram.u8.subarray(0x5000, 0x5002)], [0, 9]);
  assert.deepEqual([...ram.u8.subarray(0x5100, 0x5106)], [9, 9, 9, 9, 9, 0]);
});

test("device writes into guest RAM (copyTo, push) are reported to GuestRam's write listeners", () => {
  const { ram, q, desc, offer, chain } = setup();
  const seen: Array<[number, number]> = [];
  ram.addWriteListener({ ramWritten: (off, len) => seen.push([off, len]) });
  q.enable();
  desc(DESC, 0, BASE + 0x4000, 3, VIRTQ_DESC_F_NEXT, 1);
  desc(DESC, 1, BASE + 0x5000, 2, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 2);
  desc(DESC, 2, BASE + 0x5100, 5, VIRTQ_DESC_F_WRITE);
  offer(0);
  q.pop(chain);
  chain.copyFrom(0, new Uint8Array(3), 0, 3);
  assert.deepEqual(seen, [], "reads are not reported");
  chain.copyTo(1, new Uint8Array(4), 0, 4);
  assert.deepEqual(seen, [
    [0x5001, 1],
    [0x5100, 3],
  ]);
  seen.length = 0;
  q.push(0, 4);
  // The used element (id, len) and then idx.
  assert.deepEqual(seen, [
    [USED - BASE + 4, 8],
    [USED - BASE + 2, 2],
  ]);
});

test("push writes the used element, then idx; wraps past 65535; NO_INTERRUPT is honoured", () => {
  const { q, v, desc, offer, chain } = setup(2);
  q.enable();
  desc(DESC, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_WRITE);
  for (let i = 0; i < 70000; i++) {
    offer(0);
    assert.equal(q.pop(chain), true);
    q.push(0, i & 0xff);
  }
  assert.equal(v.getUint16(USED - BASE + 2, true), 70000 & 0xffff);
  assert.equal(v.getUint32(USED - BASE + 4 + 8 * ((70000 - 1) % 2) + 4, true), (70000 - 1) & 0xff);
  assert.equal(q.wantsInterrupt(), true);
  v.setUint16(AVAIL - BASE, VIRTQ_AVAIL_F_NO_INTERRUPT, true);
  assert.equal(q.wantsInterrupt(), false);
});

/** Each case builds a broken chain at head 0; the queue must report it once and stop, without looping. */
const BROKEN: Array<[string, (s: ReturnType<typeof setup>) => void, RegExp]> = [
  ["a cycle through NEXT", (s) => s.desc(DESC, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 0), /loop/],
  [
    "a longer cycle",
    (s) => {
      s.desc(DESC, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 1);
      s.desc(DESC, 1, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 0);
    },
    /loop/,
  ],
  [
    "next outside the table",
    (s) => s.desc(DESC, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 8),
    /outside a table/,
  ],
  ["an address above 4 GiB", (s) => s.desc(DESC, 0, BASE + 0x4000, 8, 0, 0, 1), /outside RAM/],
  ["an address below RAM", (s) => s.desc(DESC, 0, 0x1000, 8, 0), /outside RAM/],
  ["a buffer running past the end of RAM", (s) => s.desc(DESC, 0, BASE + 0xfff0, 0x20, 0), /outside RAM/],
  ["a huge length", (s) => s.desc(DESC, 0, BASE, 0xffffffff, VIRTQ_DESC_F_WRITE), /outside RAM/],
  [
    "readable after writable",
    (s) => {
      s.desc(DESC, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT, 1);
      s.desc(DESC, 1, BASE + 0x4000, 8, 0);
    },
    /readable buffer after/,
  ],
  [
    "an indirect table inside an indirect table",
    (s) => {
      s.desc(BASE + 0x7000, 0, BASE + 0x7000, 16, VIRTQ_DESC_F_INDIRECT);
      s.desc(DESC, 0, BASE + 0x7000, 16, VIRTQ_DESC_F_INDIRECT);
    },
    /inside an indirect/,
  ],
  [
    "a loop inside an indirect table",
    (s) => {
      s.desc(BASE + 0x7000, 0, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 1);
      s.desc(BASE + 0x7000, 1, BASE + 0x4000, 8, VIRTQ_DESC_F_NEXT, 0);
      s.desc(DESC, 0, BASE + 0x7000, 32, VIRTQ_DESC_F_INDIRECT);
    },
    /loop/,
  ],
  [
    "INDIRECT with NEXT",
    (s) => s.desc(DESC, 0, BASE + 0x7000, 16, VIRTQ_DESC_F_INDIRECT | VIRTQ_DESC_F_NEXT, 1),
    /NEXT/,
  ],
  [
    "an empty indirect table",
    (s) => s.desc(DESC, 0, BASE + 0x7000, 0, VIRTQ_DESC_F_INDIRECT),
    /indirect table length/,
  ],
  [
    "a ragged indirect table",
    (s) => s.desc(DESC, 0, BASE + 0x7000, 24, VIRTQ_DESC_F_INDIRECT),
    /indirect table length/,
  ],
  [
    "an indirect table larger than allowed",
    (s) => s.desc(DESC, 0, BASE + 0x7000, 16 * 9, VIRTQ_DESC_F_INDIRECT),
    /indirect table length/,
  ],
  [
    "an indirect table outside RAM",
    (s) => s.desc(DESC, 0, 0xfffffff0, 16, VIRTQ_DESC_F_INDIRECT),
    /outside RAM/,
  ],
];

for (const [name, build, reason] of BROKEN) {
  test(`a chain with ${name} is reported and stops the queue`, () => {
    const s = setup();
    s.q.enable();
    build(s);
    s.offer(0);
    s.offer(0);
    const before = s.ram.u8.slice();
    assert.equal(s.q.pop(s.chain), false);
    assert.equal(s.errors.length, 1);
    assert.match(s.errors[0]!, reason);
    assert.equal(s.q.ready, false, "a broken queue stops");
    assert.equal(s.q.pop(s.chain), false);
    s.q.push(0, 1);
    assert.equal(s.errors.length, 1, "reported once");
    assert.deepEqual(s.ram.u8, before, "nothing written");
  });
}

test("an available index that jumps by more than the queue size is a device error, not work", () => {
  const s = setup();
  s.q.enable();
  s.v.setUint16(AVAIL - BASE + 2, N + 1, true);
  assert.equal(s.q.pop(s.chain), false);
  assert.match(s.errors[0]!, /more than the queue size/);
  const t = setup();
  t.q.enable();
  t.desc(DESC, 0, BASE + 0x4000, 8, 0);
  t.v.setUint16(AVAIL - BASE + 2, N, true); // exactly a full ring is legal
  let n = 0;
  while (t.q.pop(t.chain)) n++;
  assert.equal(n, N);
  assert.deepEqual(t.errors, []);
});

test("state: saved registers and indices load into another queue; bad states are refused", () => {
  const s = setup();
  s.q.enable();
  s.desc(DESC, 0, BASE + 0x4000, 8, 0);
  s.offer(0);
  s.q.pop(s.chain);
  s.q.push(0, 0);
  const st = s.q.saveState();
  const t = setup();
  t.q.validateState(st, "q");
  t.q.applyState(st);
  assert.deepEqual(t.q.saveState(), st);
  assert.equal(t.q.ready, true);
  assert.throws(() => t.q.validateState({ ...st, size: 3 }, "q"), /saved state of q is unusable/);
  assert.throws(() => t.q.validateState({ ...st, usedIdx: 70000 }, "q"), /unusable/);
  assert.throws(() => t.q.validateState({ ...st, deviceLo: 0x10 }, "q"), /unusable/);
});
