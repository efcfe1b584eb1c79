// Guest physical RAM: one ArrayBuffer with typed views, and the bounds check every DMA goes through.

import { MachineError } from "../base/machine-error.ts";

/** Told when a device (not a hart's store) wrote guest RAM, e.g. so a hart drops code compiled from it. */
export interface RamWriteListener {
  ramWritten(off: number, len: number): void;
  /**
   * Dirty-page tracking started or the dirty pages were taken: every hart must drop its write-TLB entries,
   * since a store through one is not seen (a page gets its entry again once marked dirty).
   */
  dirtyPagesReset?(): void;
}

/** 32-bit words in a 4 KiB page. */
const PAGE_WORDS = 1024;

export class GuestRam {
  /** A SharedArrayBuffer when harts on other threads share this RAM (smp/). */
  readonly buffer: ArrayBuffer | SharedArrayBuffer;
  /** Whether `buffer` is shared with other threads. */
  readonly shared: boolean;
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly i32: Int32Array;
  /** RAM as doublewords: an aligned 8-byte access in one host access (single-copy atomic across threads). */
  readonly f64: Float64Array;
  readonly view: DataView;
  private readonly listeners: RamWriteListener[] = [];
  /**
   * Dirty-page tracking (live migration's pre-copy): one byte per 4 KiB page, non-zero when the page was
   * written since the map was last taken; null when not tracking. Harts mark a page when they map it for
   * writing (a write-TLB fill, so a store through the TLB costs nothing more) and on every store outside the
   * TLB; device writes are marked by `noteWrite`.
   */
  dirtyPages: Uint8Array | null = null;
  /**
   * The map harts on other threads mark (over a SharedArrayBuffer), or null: tracking then uses it, and takes
   * pages from it so that a page a hart marks while it is being taken is kept for the next take.
   */
  private sharedDirtyMap: Uint8Array | null = null;

  /** @param base guest-physical address of byte 0 (0x8000_0000 on the virt board)
   *  @param size bytes; a multiple of 4 KiB
   *  @param buffer the memory to use, exactly `size` bytes, contents kept (e.g. a saved state's RAM that
   *         the host mapped from its file, so that pages are read only when the guest touches them);
   *         default a new zeroed ArrayBuffer */
  constructor(
    readonly base: number,
    readonly size: number,
    buffer?: ArrayBuffer | SharedArrayBuffer,
  ) {
    if (size <= 0 || size % 4096 !== 0)
      throw new MachineError("bad-ram-size", `RAM size ${size} is not a positive multiple of 4 KiB`);
    if (buffer && buffer.byteLength !== size)
      throw new MachineError(
        "bad-ram-size",
        `the RAM buffer given is ${buffer.byteLength} bytes, not the ${size} this RAM has`,
      );
    buffer ??= new ArrayBuffer(size);
    this.buffer = buffer;
    // A page that is not cross-origin isolated has no SharedArrayBuffer at all (the machine in a tab).
    this.shared = typeof SharedArrayBuffer !== "undefined" && buffer instanceof SharedArrayBuffer;
    this.u8 = new Uint8Array(buffer);
    this.u16 = new Uint16Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.f64 = new Float64Array(buffer);
    this.view = new DataView(buffer);
  }

  /**
   * Offset into `u8` of the guest-physical range [lo + hi·2^32, … + len), or -1 when any byte of it lies
   * outside RAM. `lo`/`hi` are the two 32-bit halves of a 64-bit address (either signedness).
   * Guest-controlled: every address a device takes from the guest (descriptors, DMA) goes through here.
   */
  offsetOf(lo: number, hi: number, len: number): number {
    if (hi !== 0 || len < 0) return -1;
    const off = (lo >>> 0) - this.base;
    if (off < 0 || off + len > this.size) return -1;
    return off;
  }

  /**
   * A copy of RAM (a saved state's). Only non-zero pages are copied: a new ArrayBuffer is already zero, and
   * pages of it that are never written cost the host nothing, so saving a guest that uses little of its RAM
   * costs a read of RAM, not a second RAM (measured: 1 GiB holding 26 MiB of data copied with 8× less CPU
   * than a plain slice). This is the pause of a snapshot of a running guest.
   */
  copy(): Uint8Array {
    const src = this.i32;
    const out = new Int32Array(src.length);
    for (let page = 0; page < src.length; page += PAGE_WORDS) {
      const end = page + PAGE_WORDS;
      for (let i = page; i < end; i++)
        if (src[i] !== 0) {
          out.set(src.subarray(page, end), page);
          break;
        }
    }
    return new Uint8Array(out.buffer);
  }

  /**
   * Harts on other threads mark pages in `map` (one byte per page, over a SharedArrayBuffer, always): this
   * RAM's tracking uses it too.
   */
  shareDirtyMap(map: Uint8Array): void {
    if (map.length !== this.size >>> 12) throw new Error("the dirty-page map has one byte per page");
    this.sharedDirtyMap = map;
  }

  /** Starts dirty-page tracking with no page dirty (from here on every write is seen). */
  startDirtyTracking(): void {
    const shared = this.sharedDirtyMap;
    if (shared !== null) shared.fill(0);
    this.dirtyPages = shared ?? new Uint8Array(this.size >>> 12);
    this.dirtyPagesReset();
  }

  /** Stops dirty-page tracking (harts keep the write mappings they have). */
  stopDirtyTracking(): void {
    this.dirtyPages = null;
  }

  /**
   * The pages written since tracking started or since the last call, as sorted page numbers, and clears the
   * map: a write after this call is in the next one's answer. Throws when not tracking.
   */
  takeDirtyPages(): Uint32Array {
    const map = this.dirtyPages;
    if (map === null) throw new MachineError("not-tracking", "dirty-page tracking is not on");
    if (map === this.sharedDirtyMap) return this.takeSharedDirtyPages(map);
    let n = 0;
    for (let p = 0; p < map.length; p++) if (map[p] !== 0) n++;
    const pages = new Uint32Array(n);
    n = 0;
    for (let p = 0; p < map.length; p++) if (map[p] !== 0) pages[n++] = p;
    map.fill(0);
    this.dirtyPagesReset();
    return pages;
  }

  /**
   * takeDirtyPages with harts marking on other threads: each marked page is cleared with an atomic exchange
   * (a plain clear could wipe a mark made after the page was read, and lose a store for good), then every
   * hart drops its write TLB. A store between the two through an entry it had still lands in a page this
   * take reports (the entry's mark, made after the previous take's drop, was there to see), and its host
   * copies the reported pages after this returns.
   */
  private takeSharedDirtyPages(map: Uint8Array): Uint32Array {
    const pages: number[] = [];
    for (let p = 0; p < map.length; p++) if (map[p] !== 0 && Atomics.exchange(map, p, 0) !== 0) pages.push(p);
    this.dirtyPagesReset();
    return Uint32Array.from(pages);
  }

  /** Marks the pages of [off, off + len) dirty when tracking (a hart's store outside its write TLB). */
  markDirty(off: number, len: number): void {
    const map = this.dirtyPages;
    if (map === null || len <= 0) return;
    const last = (off + len - 1) >>> 12;
    for (let p = off >>> 12; p <= last; p++) map[p] = 1;
  }

  private dirtyPagesReset(): void {
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i++) ls[i]!.dirtyPagesReset?.();
  }

  addWriteListener(l: RamWriteListener): void {
    this.listeners.push(l);
  }

  /**
   * A device wrote [off, off + len) of `u8` behind the harts' backs (DMA): every writer other than a hart's
   * own store calls this after writing, so code compiled from those bytes is dropped. Costs one length check
   * when nothing listens.
   */
  noteWrite(off: number, len: number): void {
    if (this.dirtyPages !== null) this.markDirty(off, len);
    const ls = this.listeners;
    for (let i = 0; i < ls.length; i++) ls[i]!.ramWritten(off, len);
  }
}
