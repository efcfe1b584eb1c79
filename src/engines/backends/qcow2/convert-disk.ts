// Flattens a disk (raw, or qcow2 with its whole chain) into a new standalone qcow2 file that holds only the
// clusters that are not all zeros, like `qemu-img convert -O qcow2`; used to make an image's shared base.
// Ranges no layer holds data for are skipped without being read, so a large sparse qcow2 converts quickly.

import { randomBytes } from "node:crypto";
import { access, link, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createQcow2, syncDirectory } from "./create-qcow2.ts";
import { openLayers } from "./open-disk.ts";
import { Qcow2Error } from "./qcow2-error.ts";

/** Read per step: whole 64 KiB clusters of the new file. */
const CHUNK = 1024 * 1024;
const CLUSTER = 64 * 1024;

export interface ConvertDiskOptions {
  readonly format: "qcow2";
}

export async function convertDisk(src: string, dst: string, options: ConvertDiskOptions): Promise<void> {
  if (options.format !== "qcow2")
    throw new Qcow2Error("bad-disk-request", `cannot convert to ${String(options.format)}`);
  if (
    await access(dst).then(
      () => true,
      () => false,
    )
  )
    throw new Qcow2Error("disk-exists", `disk image ${dst} already exists`);
  const tmp = join(dirname(dst), `.${basename(dst)}.${randomBytes(6).toString("hex")}.tmp`);
  const input = await openLayers(src, { readOnly: true });
  try {
    const size = Math.ceil(input.virtualSize / 512) * 512;
    await createQcow2(tmp, { sizeBytes: size });
    const output = await openLayers(tmp);
    try {
      const buf = new Uint8Array(CHUNK);
      for (let at = 0; at < size; at += CHUNK) {
        const n = Math.min(CHUNK, size - at);
        if (!(await input.mayHoldData(at, n))) continue;
        const chunk = buf.subarray(0, n);
        await input.read(at, chunk);
        for (let c = 0; c < n; c += CLUSTER) {
          const cluster = chunk.subarray(c, Math.min(n, c + CLUSTER));
          if (!isZero(cluster)) await output.write(at + c, cluster);
        }
      }
      await output.flush();
    } finally {
      await output.close();
    }
    await link(tmp, dst).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "EEXIST"
        ? new Qcow2Error("disk-exists", `disk image ${dst} already exists`)
        : new Qcow2Error("disk-io-failed", `cannot create disk image ${dst}: ${err.message}`);
    });
    await syncDirectory(dirname(dst));
  } finally {
    await input.close();
    await unlink(tmp).catch(() => {});
  }
}

function isZero(bytes: Uint8Array): boolean {
  // Four bytes at a time where the view is aligned; the clusters read here are.
  if (bytes.byteOffset % 4 === 0 && bytes.length % 4 === 0) {
    const words = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.length / 4);
    for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
    return true;
  }
  for (let i = 0; i < bytes.length; i++) if (bytes[i] !== 0) return false;
  return true;
}
