// A disk as the machine's BlockBackend port (src/machine/ports.ts) plus discard and write-zeroes: the top
// layer of a raw or qcow2 chain, with every request checked (open, aligned, in range) before it starts.

import type { BlockBackend, Completion } from "../../../machine/ports.ts";
import type { DiskLayer } from "./disk-layer.ts";
import { failureMessage } from "./qcow2-error.ts";

export interface DiskBackend extends BlockBackend {
  readonly path: string;
  /** Waits for nothing: call once the guest's requests have completed. Closes the whole chain. */
  close(): Promise<void>;
  discard(offset: number, length: number, done: Completion): void;
  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void;
}

export class LayerDiskBackend implements DiskBackend {
  private closed = false;

  constructor(private readonly top: DiskLayer) {}

  get path(): string {
    return this.top.path;
  }

  get sizeBytes(): number {
    return this.top.virtualSize;
  }

  get readOnly(): boolean {
    return this.top.readOnly;
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    this.run(offset, dst.length, false, done, () => this.top.read(offset, dst));
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    this.run(offset, src.length, true, done, () => this.top.write(offset, src));
  }

  flush(done: Completion): void {
    this.run(0, 0, false, done, () => this.top.flush());
  }

  discard(offset: number, length: number, done: Completion): void {
    this.run(offset, length, true, done, () => this.top.discard(offset, length));
  }

  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void {
    this.run(offset, length, true, done, () => this.top.writeZeroes(offset, length, unmap));
  }

  private run(
    offset: number,
    length: number,
    writes: boolean,
    done: Completion,
    op: () => Promise<void>,
  ): void {
    const problem = this.check(offset, length, writes);
    if (problem !== null) {
      done(problem);
      return;
    }
    op().then(
      () => done(null),
      (err: unknown) => done(failureMessage(err, this.path)),
    );
  }

  private check(offset: number, length: number, writes: boolean): string | null {
    if (this.closed) return `disk image ${this.path} is closed`;
    if (writes && this.readOnly) return `disk image ${this.path} is read-only`;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 512 !== 0 || length % 512 !== 0)
      return `unaligned access of ${length} bytes at ${offset} to disk image ${this.path}`;
    if (offset + length > this.sizeBytes)
      return `access of ${length} bytes at ${offset} is beyond the end of disk image ${this.path}`;
    return null;
  }

  close(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.closed = true;
    return this.top.close();
  }
}
