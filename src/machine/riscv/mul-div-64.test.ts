// mul-div-64 against BigInt on seeded random and edge operands.

import assert from "node:assert/strict";
import { test } from "node:test";
import {
  div64,
  divisionsKept,
  divu64,
  mul64,
  mulh64,
  mulhsu64,
  mulhu64,
  mulu32,
  remainder,
  wide,
} from "./mul-div-64.ts";

const lo = (v: bigint) => Number(BigInt.asIntN(32, v));
const hi = (v: bigint) => Number(BigInt.asIntN(32, v >> 32n));
const got = (a: Int32Array) => BigInt.asUintN(64, (BigInt(a[1]) << 32n) | BigInt(a[0] >>> 0));
const u = (v: bigint) => BigInt.asUintN(64, v);
const s = (v: bigint) => BigInt.asIntN(64, v);

function* operands(): Generator<[bigint, bigint]> {
  const edges = [
    0n,
    1n,
    3n,
    u(-1n),
    1n << 63n,
    (1n << 63n) - 1n,
    0xffffffffn,
    1n << 32n,
    1n << 52n,
    (1n << 53n) + 1n,
  ];
  for (const a of edges) for (const b of edges) yield [a, b];
  let x = 0x9e3779b97f4a7c15n;
  for (let i = 0; i < 3000; i++) {
    // xorshift64: deterministic operands of every size
    x ^= u(x << 13n);
    x ^= x >> 7n;
    x ^= u(x << 17n);
    const a = x >> BigInt(i % 64);
    x ^= u(x << 13n);
    x ^= x >> 7n;
    x ^= u(x << 17n);
    yield [a, x >> BigInt((i * 7) % 64)];
  }
}

test("mulu32 gives the exact 64-bit product", () => {
  for (const [a, b] of operands()) {
    const a32 = a & 0xffffffffn;
    const b32 = b & 0xffffffffn;
    mulu32(Number(a32), Number(b32));
    assert.equal(got(wide), a32 * b32);
  }
});

test("mul/mulh/mulhsu/mulhu match BigInt", () => {
  for (const [a, b] of operands()) {
    mul64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), u(a * b), `mul ${a} ${b}`);
    mulhu64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), u((a * b) >> 64n), `mulhu ${a} ${b}`);
    mulh64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), u((s(a) * s(b)) >> 64n), `mulh ${a} ${b}`);
    mulhsu64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), u((s(a) * b) >> 64n), `mulhsu ${a} ${b}`);
  }
});

test("div/divu/rem/remu match the spec table, including by zero and overflow", () => {
  for (const [a, b] of operands()) {
    divu64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), b === 0n ? u(-1n) : a / b, `divu ${a} ${b}`);
    assert.equal(got(remainder), b === 0n ? a : a % b, `remu ${a} ${b}`);
    div64(lo(a), hi(a), lo(b), hi(b));
    const sa = s(a);
    const sb = s(b);
    const overflow = sa === -(1n << 63n) && sb === -1n;
    assert.equal(got(wide), u(sb === 0n ? -1n : overflow ? sa : sa / sb), `div ${sa} ${sb}`);
    assert.equal(got(remainder), u(sb === 0n ? sa : overflow ? 0n : sa % sb), `rem ${sa} ${sb}`);
  }
});

test("divu/remu at exact multiples and one either side, for divisors of every size", () => {
  let x = 0x2545f4914f6cdd1dn;
  const next = () => {
    x ^= u(x << 13n);
    x ^= x >> 7n;
    x ^= u(x << 17n);
    return x;
  };
  for (let i = 0; i < 4000; i++) {
    const b = (next() >> BigInt(i % 63)) | 1n;
    const q = next() % ((1n << 64n) / b);
    for (const a of [q * b, q * b + b - 1n, q * b - 1n, q * b + 1n]) {
      if (a < 0n || a >= 1n << 64n) continue;
      divu64(lo(a), hi(a), lo(b), hi(b));
      assert.equal(got(wide), a / b, `divu ${a} ${b}`);
      assert.equal(got(remainder), a % b, `remu ${a} ${b}`);
    }
  }
});

test("a division of the last one's operands (C's n / d, then n % d) is answered from it, and exactly", () => {
  const cases: [bigint, bigint][] = [
    [0xfedcba9876543210n, 0x12345n],
    [0xfedcba9876543210n, 0x123456789an],
    [0xfedcba9876543210n, 0x7000000000000001n],
    [(1n << 52n) + 3n, 7n],
  ];
  for (const [a, b] of cases) {
    const before = divisionsKept;
    divu64(lo(a), hi(a), lo(b), hi(b));
    mul64(3, 0, 5, 0); // another result through wide in between
    divu64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(divisionsKept, before + 1, `divu ${a} ${b}`);
    assert.equal(got(wide), a / b);
    assert.equal(got(remainder), a % b);
    // The same magnitudes through the signed division keep the signs apart.
    div64(lo(-a), hi(-a), lo(b), hi(b));
    assert.equal(got(wide), u(s(-a) / s(b)), `div ${-a} ${b}`);
    assert.equal(got(remainder), u(s(-a) % s(b)), `rem ${-a} ${b}`);
    divu64(lo(a), hi(a), lo(b), hi(b));
    assert.equal(got(wide), a / b);
  }
  // Other operands are divided anew.
  divu64(100, 0, 7, 0);
  assert.equal(got(wide), 14n);
  assert.equal(got(remainder), 2n);
});
