// Whether a disk image holds any guest data of its own, or reads everything from its backing file: a
// qcow2 image whose L1 table is all zeros has no L2 table, so no cluster of its own, data or zero flag.

import { DiskFile } from "./disk-file.ts";
import { probeDisk } from "./probe-disk.ts";

/** L1 entries checked per read: 64 KiB of table at a time. */
const L1_CHUNK_ENTRIES = 8192;

/**
 * False only for a qcow2 image with a backing file and no cluster of its own (an overlay nothing has
 * written, such as a freshly created one): everything reads from its backing. A raw image, or a qcow2 one
 * without backing, counts as holding its data.
 */
export async function hasOwnData(path: string): Promise<boolean> {
  const file = await DiskFile.open(path, true);
  try {
    const probed = await probeDisk(file, null);
    const header = probed.header;
    if (header === null || header.backingName === null) return true;
    const chunk = new Uint8Array(L1_CHUNK_ENTRIES * 8);
    for (let first = 0; first < header.l1Size; first += L1_CHUNK_ENTRIES) {
      const entries = Math.min(L1_CHUNK_ENTRIES, header.l1Size - first);
      const bytes = chunk.subarray(0, entries * 8);
      await file.read(header.l1TableOffset + first * 8, bytes);
      if (bytes.some((b) => b !== 0)) return true;
    }
    return false;
  } finally {
    await file.close();
  }
}
