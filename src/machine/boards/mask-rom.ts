// A read-only memory window (the virt board's VIRT_MROM at 0x1000, which holds the reset vector): reads return
// its bytes, writes are ignored as on real mask ROM.

import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";

export class MaskRom implements MmioDevice {
  private bytes: Uint8Array;

  constructor(
    readonly id: string,
    readonly size: number,
  ) {
    this.bytes = new Uint8Array(size);
  }

  /** Replaces the contents (the board rewrites the reset vector at each boot); the rest reads as zero. */
  program(contents: Uint8Array): void {
    this.bytes.fill(0);
    this.bytes.set(contents.subarray(0, this.size));
  }

  read(offset: number, width: AccessWidth): number {
    // Guest-controlled: offset comes from the bus inside our window, but a width may overrun its end.
    if (offset < 0 || offset + width > this.size) return 0;
    const b = this.bytes;
    if (width === 1) return b[offset]!;
    if (width === 2) return b[offset]! | (b[offset + 1]! << 8);
    return (b[offset]! | (b[offset + 1]! << 8) | (b[offset + 2]! << 16) | (b[offset + 3]! << 24)) >>> 0;
  }

  write(_offset: number, _width: AccessWidth, _value: number): void {}
}
