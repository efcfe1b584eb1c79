import assert from "node:assert/strict";
import { test } from "node:test";
import { parseLinuxImage } from "./linux-image.ts";

/** A header as Linux's arch/riscv/kernel/head.S writes it. */
function header(): Uint8Array {
  const h = new Uint8Array(4096);
  const v = new DataView(h.buffer);
  v.setUint32(8, 0x200000, true); // text_offset
  v.setUint32(16, 0x1234000, true); // image_size
  v.setUint32(32, 0x2, true); // version 0.2
  h.set([0x52, 0x49, 0x53, 0x43, 0x56, 0, 0, 0], 48);
  h.set([0x52, 0x53, 0x43, 0x05], 56);
  return h;
}

test("a RISC-V Image header is recognized and its sizes read", () => {
  assert.deepEqual(parseLinuxImage(header()), { textOffset: 0x200000, imageSize: 0x1234000, version: 2 });
});

test("wrong magic or a short file is not an Image", () => {
  const h = header();
  h[56 + 3] = 0x04;
  assert.equal(parseLinuxImage(h), null);
  assert.equal(parseLinuxImage(header().subarray(0, 60)), null);
});
