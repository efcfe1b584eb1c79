import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "./guest-ram.ts";

test("a RAM on a given buffer keeps its contents; a buffer of another size is refused", () => {
  const buffer = new ArrayBuffer(8192);
  new Uint8Array(buffer)[5000] = 7;
  const ram = new GuestRam(0x8000_0000, 8192, buffer);
  assert.equal(ram.buffer, buffer);
  assert.equal(ram.u8[5000], 7);
  assert.throws(() => new GuestRam(0x8000_0000, 8192, new ArrayBuffer(4096)), /is 4096 bytes, not the 8192/);
});

test("copy() is an independent, equal copy, whichever word of a page is the only non-zero one", () => {
  const ram = new GuestRam(0x8000_0000, 16 * 4096);
  ram.u8[0] = 1; // first byte of page 0
  ram.u8[2 * 4096 + 4095] = 0x80; // last byte of page 2
  ram.i32[(5 * 4096) / 4 + 511] = -1; // a middle word of page 5
  ram.u8.fill(0x3c, 9 * 4096, 11 * 4096); // two full pages
  const copy = ram.copy();
  assert.deepEqual(copy, ram.u8);
  copy[0] = 9;
  ram.u8[4096] = 3;
  assert.equal(ram.u8[0], 1, "the copy is not the RAM");
  assert.equal(copy[4096], 0);
});
