// A disk held in memory, for browsers and tests: a BlockBackend (machine/ports.ts) over a Uint8Array, with
// discard and write-zeroes (both zero the range).

import { MachineError } from "../../base/machine-error.ts";
import type { BlockBackend, Completion } from "../../ports.ts";

export class MemoryBlockBackend implements BlockBackend {
  readonly bytes: Uint8Array;
  readonly readOnly: boolean;
  /** When true, completions run on a later microtask instead of inside the call, as a host disk would. */
  deferred: boolean;

  /** @param contents the disk image (used in place, not copied) or its size in bytes, a multiple of 512 */
  constructor(contents: Uint8Array | number, options: { readOnly?: boolean; deferred?: boolean } = {}) {
    this.bytes = typeof contents === "number" ? new Uint8Array(contents) : contents;
    if (this.bytes.length % 512 !== 0)
      throw new MachineError(
        "bad-disk-size",
        `disk size ${this.bytes.length} is not a multiple of 512 bytes`,
      );
    this.readOnly = options.readOnly ?? false;
    this.deferred = options.deferred ?? false;
  }

  get sizeBytes(): number {
    return this.bytes.length;
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    const err = this.check(offset, dst.length);
    if (err === null) dst.set(this.bytes.subarray(offset, offset + dst.length));
    this.complete(done, err);
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    const err = this.readOnly ? "the disk is read-only" : this.check(offset, src.length);
    if (err === null) this.bytes.set(src, offset);
    this.complete(done, err);
  }

  flush(done: Completion): void {
    this.complete(done, null);
  }

  /** Memory has nothing to free: the range is zeroed, which the port allows (its contents are unspecified). */
  discard(offset: number, length: number, done: Completion): void {
    this.zero(offset, length, done);
  }

  writeZeroes(offset: number, length: number, _unmap: boolean, done: Completion): void {
    this.zero(offset, length, done);
  }

  private zero(offset: number, length: number, done: Completion): void {
    const err = this.readOnly ? "the disk is read-only" : this.check(offset, length);
    if (err === null) this.bytes.fill(0, offset, offset + length);
    this.complete(done, err);
  }

  private check(offset: number, len: number): string | null {
    if (offset < 0 || offset % 512 !== 0 || len % 512 !== 0 || offset + len > this.bytes.length)
      return `access of ${len} bytes at ${offset} is outside the ${this.bytes.length}-byte disk`;
    return null;
  }

  private complete(done: Completion, err: string | null): void {
    if (this.deferred) Promise.resolve().then(() => done(err));
    else done(err);
  }
}
