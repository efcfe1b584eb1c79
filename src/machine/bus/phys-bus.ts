// The physical address space of the board: guest RAM plus memory-mapped device windows (RISC-V privileged
// spec §3.6 "Physical Memory Attributes": an access to an address nothing answers is an access fault).

import { MachineError } from "../base/machine-error.ts";
import type { GuestRam } from "./guest-ram.ts";
import type { AccessWidth, MmioDevice, MmioRegion } from "./mmio-device.ts";

export class PhysBus {
  /** Result of the last successful `load`: the zero-extended value as two 32-bit halves. */
  lo = 0;
  hi = 0;
  /** True when the last `read`/`write` hit an address no RAM or device answers. */
  lastFault = false;

  private readonly regions: MmioRegion[] = [];
  // Parallel arrays of the regions' bounds, searched linearly: a board has about a dozen windows.
  private bases: number[] = [];
  private ends: number[] = [];
  private devices: MmioDevice[] = [];
  private readonly ramBase: number;
  private readonly ramEnd: number;
  /** Splits a doubleword read whole into its halves (and joins them for a store). */
  private readonly pair64 = new Float64Array(1);
  private readonly pair32 = new Int32Array(this.pair64.buffer);

  constructor(readonly ram: GuestRam) {
    this.ramBase = ram.base;
    this.ramEnd = ram.base + ram.size;
  }

  /** Place `device` at [base, base + size). Throws when the window overlaps RAM or another device. */
  map(base: number, size: number, device: MmioDevice): void {
    const end = base + size;
    if (!Number.isSafeInteger(base) || !Number.isSafeInteger(size) || base < 0 || size <= 0)
      throw new MachineError("bad-mmio-window", `device ${device.id} has an invalid window`);
    const clash = (b: number, e: number) => base < e && b < end;
    if (clash(this.ramBase, this.ramEnd))
      throw new MachineError("mmio-overlap", `device ${device.id} overlaps guest RAM`);
    for (const r of this.regions)
      if (clash(r.base, r.base + r.size))
        throw new MachineError("mmio-overlap", `device ${device.id} overlaps device ${r.device.id}`);
    this.regions.push({ base, size, device });
    this.regions.sort((a, b) => a.base - b.base);
    this.bases = this.regions.map((r) => r.base);
    this.ends = this.regions.map((r) => r.base + r.size);
    this.devices = this.regions.map((r) => r.device);
  }

  /** The mapped device windows, lowest address first. */
  get windows(): readonly MmioRegion[] {
    return this.regions;
  }

  /** Offset into guest RAM of [pa, pa + len), or -1 when any byte of it is not RAM. */
  ramOffset(pa: number, len: number): number {
    if (pa < this.ramBase || pa + len > this.ramEnd) return -1;
    return pa - this.ramBase;
  }

  /** Index of the device window holding [pa, pa + len), or -1. */
  private find(pa: number, len: number): number {
    const bases = this.bases;
    const ends = this.ends;
    for (let i = 0; i < bases.length; i++) {
      if (pa >= bases[i] && pa + len <= ends[i]) return i;
    }
    return -1;
  }

  /**
   * Load `width` bytes (1, 2, 4 or 8; any alignment in RAM) at physical address `pa` into `lo`/`hi`,
   * zero-extended. Returns false, changing nothing, when no RAM or device answers (an access fault).
   */
  load(pa: number, width: number): boolean {
    const off = this.ramOffset(pa, width);
    if (off >= 0) {
      const view = this.ram.view;
      if (width === 1) {
        this.lo = this.ram.u8[off];
        this.hi = 0;
      } else if (width === 2) {
        this.lo = view.getUint16(off, true);
        this.hi = 0;
      } else if (width === 4) {
        this.lo = view.getInt32(off, true);
        this.hi = 0;
      } else if ((off & 7) === 0) {
        // Aligned: one 8-byte access, which a hart on another thread sees whole or not at all (RVWMO).
        this.pair64[0] = this.ram.f64[off >> 3]!;
        this.lo = this.pair32[0]!;
        this.hi = this.pair32[1]!;
      } else {
        this.lo = view.getInt32(off, true);
        this.hi = view.getInt32(off + 4, true);
      }
      return true;
    }
    const i = this.find(pa, width);
    if (i < 0) return false;
    const dev = this.devices[i];
    const o = pa - this.bases[i];
    if (width === 8) {
      // The MMIO contract: an 8-byte access is two 4-byte accesses, low half first.
      this.lo = dev.read(o, 4) | 0;
      this.hi = dev.read(o + 4, 4) | 0;
    } else {
      this.lo = dev.read(o, width as AccessWidth) | 0;
      this.hi = 0;
    }
    return true;
  }

  /** Store `width` bytes of lo/hi at `pa`. Returns false, changing nothing, when nothing answers. */
  store(pa: number, width: number, lo: number, hi: number): boolean {
    const off = this.ramOffset(pa, width);
    if (off >= 0) {
      const view = this.ram.view;
      if (width === 1) this.ram.u8[off] = lo;
      else if (width === 2) view.setUint16(off, lo, true);
      else if (width === 4) view.setInt32(off, lo, true);
      else if ((off & 7) === 0) {
        this.pair32[0] = lo;
        this.pair32[1] = hi;
        this.ram.f64[off >> 3] = this.pair64[0]!;
      } else {
        view.setInt32(off, lo, true);
        view.setInt32(off + 4, hi, true);
      }
      return true;
    }
    const i = this.find(pa, width);
    if (i < 0) return false;
    const dev = this.devices[i];
    const o = pa - this.bases[i];
    if (width === 8) {
      dev.write(o, 4, lo >>> 0);
      dev.write(o + 4, 4, hi >>> 0);
    } else {
      const mask = width === 4 ? 0xffffffff : width === 2 ? 0xffff : 0xff;
      dev.write(o, width as AccessWidth, (lo & mask) >>> 0);
    }
    return true;
  }

  /** Read `width` bytes at `pa`, zero-extended; 0 (and `lastFault` set) when nothing answers. */
  read(pa: number, width: AccessWidth): number {
    this.lastFault = !this.load(pa, width);
    return this.lastFault ? 0 : this.lo >>> 0;
  }

  /** Write `width` bytes at `pa`; ignored (and `lastFault` set) when nothing answers. */
  write(pa: number, width: AccessWidth, value: number): void {
    this.lastFault = !this.store(pa, width, value, 0);
  }
}
