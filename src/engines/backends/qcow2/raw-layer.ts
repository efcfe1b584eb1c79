// A raw disk image as a layer of a chain (or a whole disk): guest offset = file offset; the file may be
// shorter than the disk it backs, and what lies past its end reads as zeros.

import type { DiskFile } from "./disk-file.ts";
import type { DiskLayer } from "./disk-layer.ts";

/** Zeros written per write by writeZeroes: bounded memory for any range. */
const ZERO_CHUNK = 1024 * 1024;

export class RawLayer implements DiskLayer {
  readonly format = "raw";

  constructor(
    private readonly file: DiskFile,
    readonly virtualSize: number,
  ) {}

  get path(): string {
    return this.file.path;
  }

  get readOnly(): boolean {
    return this.file.readOnly;
  }

  read(offset: number, dst: Uint8Array): Promise<void> {
    return this.file.read(offset, dst);
  }

  write(offset: number, src: Uint8Array): Promise<void> {
    return this.file.write(offset, src);
  }

  flush(): Promise<void> {
    return this.file.sync();
  }

  mayHoldData(offset: number): Promise<boolean> {
    return Promise.resolve(offset < this.file.size);
  }

  /** Nothing to give back without hole punching; the contents staying is one allowed outcome. */
  discard(): Promise<void> {
    return Promise.resolve();
  }

  async writeZeroes(offset: number, length: number): Promise<void> {
    const zeros = new Uint8Array(Math.min(length, ZERO_CHUNK));
    for (let at = 0; at < length; at += zeros.length)
      await this.file.write(offset + at, zeros.subarray(0, Math.min(zeros.length, length - at)));
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
