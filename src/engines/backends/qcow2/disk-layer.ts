// One file of a disk's backing chain as the qcow2 code sees it: a raw file or a qcow2 image (whose reads
// of clusters it does not hold fall through to its own backing layer), with promise-based I/O.

import type { DiskFormat } from "./qcow2-header.ts";

export interface DiskLayer {
  readonly path: string;
  readonly format: DiskFormat;
  readonly virtualSize: number;
  readonly readOnly: boolean;
  /** Fills `dst` from guest offset `offset`; whatever lies past `virtualSize` reads as zeros. */
  read(offset: number, dst: Uint8Array): Promise<void>;
  write(offset: number, src: Uint8Array): Promise<void>;
  /** Makes every completed write durable. */
  flush(): Promise<void>;
  /** The range's contents become unspecified (reads still succeed); space may be given back. */
  discard(offset: number, length: number): Promise<void>;
  /** The range reads as zeros afterwards; with `unmap`, its space may be given back. */
  writeZeroes(offset: number, length: number, unmap: boolean): Promise<void>;
  /**
   * False when the range certainly reads as zeros (nothing in this file or below it holds data for it):
   * lets a copy skip it without reading it. True may be a guess (a raw file always says true).
   */
  mayHoldData(offset: number, length: number): Promise<boolean>;
  /** Closes this file and every layer below it. */
  close(): Promise<void>;
}
