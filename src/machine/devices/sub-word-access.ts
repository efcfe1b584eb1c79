// Byte and halfword access to devices whose registers are 32 bits wide (CLINT, PLIC, goldfish RTC, test
// finisher): the narrow access reads or replaces its lanes of the aligned 32-bit word, little-endian.

import type { AccessWidth } from "../bus/mmio-device.ts";

/** True when [offset, offset + width) lies inside one aligned 32-bit word. */
export function fitsInWord(offset: number, width: AccessWidth): boolean {
  return (offset & 3) + width <= 4;
}

/** The `width` bytes at `offset` taken out of the aligned word holding them, zero-extended. */
export function extractLanes(word: number, offset: number, width: AccessWidth): number {
  if (width === 4) return word >>> 0;
  const shift = (offset & 3) * 8;
  return (word >>> shift) & (width === 1 ? 0xff : 0xffff);
}

/** `word` with the `width` bytes at `offset` replaced by `value`: a narrow write as read-modify-write. */
export function insertLanes(word: number, offset: number, width: AccessWidth, value: number): number {
  if (width === 4) return value >>> 0;
  const shift = (offset & 3) * 8;
  const mask = (width === 1 ? 0xff : 0xffff) << shift;
  return ((word & ~mask) | ((value << shift) & mask)) >>> 0;
}
