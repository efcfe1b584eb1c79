// Reads what an open disk file is: qcow2 (header parsed and validated) or raw, as its parent in a chain
// declares it or, where nothing declares it, by its first bytes (QEMU's probe: the qcow2 magic).

import type { DiskFile } from "./disk-file.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import {
  claimedClusterSize,
  type DiskFormat,
  hasQcow2Magic,
  parseQcow2Header,
  type Qcow2Header,
} from "./qcow2-header.ts";

export interface ProbedDisk {
  readonly format: DiskFormat;
  /** The validated header of a qcow2 file; null for raw. */
  readonly header: Qcow2Header | null;
  readonly virtualSize: number;
}

const FIRST_READ = 64 * 1024;

export async function probeDisk(file: DiskFile, declared: DiskFormat | null): Promise<ProbedDisk> {
  let head = new Uint8Array(Math.min(file.size, FIRST_READ));
  await file.read(0, head);
  const qcow2 = hasQcow2Magic(head);
  if (declared === "raw" || (declared === null && !qcow2))
    return { format: "raw", header: null, virtualSize: file.size };
  if (!qcow2)
    throw new Qcow2Error("bad-disk-image", `disk image ${file.path}: not a qcow2 file (no QFI magic)`);
  const clusterSize = claimedClusterSize(head);
  if (clusterSize > head.length && file.size > head.length) {
    head = new Uint8Array(Math.min(file.size, clusterSize));
    await file.read(0, head);
  }
  const header = parseQcow2Header(head, file.size, file.path);
  return { format: "qcow2", header, virtualSize: header.virtualSize };
}
