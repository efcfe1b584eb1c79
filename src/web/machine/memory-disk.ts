// A disk held in the tab's memory (the image's or a VM's disk, fetched whole): the machine's BlockBackend
// over one ArrayBuffer, completing at once, and remembering which 4 KiB pages the guest wrote so that only
// those go back to the server.

import type { BlockBackend, Completion } from "../../machine/index.ts";

export const DISK_PAGE = 4096;

export class MemoryDisk implements BlockBackend {
  readonly readOnly = false;
  private readonly bytes: Uint8Array;
  /** One bit per 4 KiB page: written since the disk was fetched. */
  private readonly dirty: Uint8Array;

  constructor(buffer: ArrayBuffer) {
    this.bytes = new Uint8Array(buffer);
    this.dirty = new Uint8Array(Math.ceil(buffer.byteLength / DISK_PAGE / 8));
  }

  get sizeBytes(): number {
    return this.bytes.length;
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    if (offset + dst.length > this.bytes.length) {
      done("read past the end of the disk");
      return;
    }
    dst.set(this.bytes.subarray(offset, offset + dst.length));
    done(null);
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    if (offset + src.length > this.bytes.length) {
      done("write past the end of the disk");
      return;
    }
    this.bytes.set(src, offset);
    this.markDirty(offset, src.length);
    done(null);
  }

  flush(done: Completion): void {
    done(null);
  }

  // Discard and write-zeroes are offered as a VM's disk (qcow2) offers them: a state's driver may have
  // accepted them, and a machine without them would refuse that state. Both leave the range reading zeros.
  discard(offset: number, length: number, done: Completion): void {
    this.zero(offset, length, done);
  }

  writeZeroes(offset: number, length: number, _unmap: boolean, done: Completion): void {
    this.zero(offset, length, done);
  }

  private zero(offset: number, length: number, done: Completion): void {
    if (offset + length > this.bytes.length) {
      done("zeroing past the end of the disk");
      return;
    }
    this.bytes.fill(0, offset, offset + length);
    this.markDirty(offset, length);
    done(null);
  }

  /** The whole disk as one run (a copy). */
  whole(): Array<{ readonly offset: number; readonly bytes: Uint8Array }> {
    return [{ offset: 0, bytes: this.bytes.slice() }];
  }

  /** The written pages, as [first byte, bytes) runs in increasing order. */
  dirtyRuns(): Array<{ readonly offset: number; readonly bytes: Uint8Array }> {
    const runs: Array<{ offset: number; bytes: Uint8Array }> = [];
    const pages = Math.ceil(this.bytes.length / DISK_PAGE);
    let start = -1;
    for (let p = 0; p <= pages; p++) {
      const isDirty = p < pages && (this.dirty[p >> 3]! & (1 << (p & 7))) !== 0;
      if (isDirty && start < 0) start = p;
      else if (!isDirty && start >= 0) {
        const from = start * DISK_PAGE;
        const to = Math.min(p * DISK_PAGE, this.bytes.length);
        runs.push({ offset: from, bytes: this.bytes.slice(from, to) });
        start = -1;
      }
    }
    return runs;
  }

  private markDirty(offset: number, length: number): void {
    const last = Math.floor((offset + length - 1) / DISK_PAGE);
    for (let p = Math.floor(offset / DISK_PAGE); p <= last; p++) this.dirty[p >> 3]! |= 1 << (p & 7);
  }
}
