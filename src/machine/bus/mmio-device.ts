// The contract between the physical bus and a memory-mapped device.
//
// The bus calls `read`/`write` with an offset inside the device's window and an access width of 1, 2 or 4
// bytes; it splits 8-byte accesses into two 4-byte ones (low half first). Values are plain numbers: `read`
// returns the value zero-extended to `width` bytes (an unsigned number), `write` receives it likewise.
// A device must never throw for any offset/width/value a guest can produce: unknown registers read as 0 and
// ignore writes. The machine is hostile-guest safe only if every device keeps this promise.

export type AccessWidth = 1 | 2 | 4;

export interface MmioDevice {
  /** Stable id, also the key of the device's saved state, e.g. "uart@10000000". */
  readonly id: string;
  read(offset: number, width: AccessWidth): number;
  write(offset: number, width: AccessWidth, value: number): void;
}

/** A device's place in the physical address map. */
export interface MmioRegion {
  readonly base: number;
  readonly size: number;
  readonly device: MmioDevice;
}
