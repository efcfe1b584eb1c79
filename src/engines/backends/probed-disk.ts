// A disk file whose format nobody declared (`tsvm run --disk FILE`), opened by what its first bytes say:
// qcow2 with its whole backing chain (openDisk), or raw. A raw file opens as a FileBlockBackend, which gives
// what the guest discards back to the host, and its guest may not write the qcow2 magic into sector 0:
// the next probe would read the file as a qcow2 whose header, and so whose backing file (any host file),
// the guest chose. QEMU restricts probed raw images the same way.

import type { BlockBackend, Completion } from "../../machine/ports.ts";
import { FileBlockBackend } from "./file-block-backend.ts";
import { openDisk, readDiskInfo } from "./qcow2/index.ts";

/** "QFI\xfb", the first four bytes of every qcow2 file. */
const QCOW2_MAGIC = [0x51, 0x46, 0x49, 0xfb];

export interface ProbedDisk extends BlockBackend {
  readonly format: "raw" | "qcow2";
  close(): Promise<void>;
  discard(offset: number, length: number, done: Completion): void;
  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void;
}

/** Opens `path` as its contents say; a bad qcow2 (or chain) is a Qcow2Error naming the file and problem. */
export async function openProbedDisk(path: string): Promise<ProbedDisk> {
  const info = await readDiskInfo(path);
  if (info.format === "qcow2") {
    const disk = await openDisk(path);
    return Object.assign(disk, { format: "qcow2" as const });
  }
  return new ProbedRawDisk(await FileBlockBackend.open(path));
}

class ProbedRawDisk implements ProbedDisk {
  readonly format = "raw";

  constructor(private readonly file: FileBlockBackend) {}

  get sizeBytes(): number {
    return this.file.sizeBytes;
  }

  get readOnly(): boolean {
    return this.file.readOnly;
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    this.file.read(offset, dst, done);
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    if (offset === 0 && QCOW2_MAGIC.every((b, i) => src[i] === b)) {
      done(`refused a write of the qcow2 magic to sector 0 of raw disk image ${this.file.path}`);
      return;
    }
    this.file.write(offset, src, done);
  }

  flush(done: Completion): void {
    this.file.flush(done);
  }

  discard(offset: number, length: number, done: Completion): void {
    this.file.discard(offset, length, done);
  }

  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void {
    this.file.writeZeroes(offset, length, unmap, done);
  }

  close(): Promise<void> {
    return this.file.close();
  }
}
