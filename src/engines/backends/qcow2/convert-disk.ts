// Flattens a disk (raw, or qcow2 with its whole chain) into a new standalone qcow2 file that holds only the
// clusters that are not all zeros, like `qemu-img convert -O qcow2`; used to make an image's shared base.

import { randomBytes } from "node:crypto";
import { link, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { createQcow2, syncDirectory } from "./create-qcow2.ts";
import { walkChain } from "./disk-chain.ts";
import { openDisk } from "./open-disk.ts";
import { Qcow2Error } from "./qcow2-error.ts";

/** Read per step: whole 64 KiB clusters of the new file. */
const CHUNK = 1024 * 1024;
const CLUSTER = 64 * 1024;

export interface ConvertDiskOptions {
  readonly format: "qcow2";
}

const call = (f: (done: (err: string | null) => void) => void): Promise<void> =>
  new Promise((resolve, reject) =>
    f((err) => (err === null ? resolve() : reject(new Qcow2Error("disk-io-failed", err)))),
  );

export async function convertDisk(src: string, dst: string, options: ConvertDiskOptions): Promise<void> {
  if (options.format !== "qcow2")
    throw new Qcow2Error("bad-disk-request", `cannot convert to ${String(options.format)}`);
  const [top] = await walkChain(src, false);
  const size = Math.ceil(top!.virtualSize / 512) * 512;
  const tmp = join(dirname(dst), `.${basename(dst)}.${randomBytes(6).toString("hex")}.tmp`);
  await createQcow2(tmp, { sizeBytes: size });
  try {
    const input = await openDisk(src, { readOnly: true });
    try {
      const output = await openDisk(tmp);
      try {
        const buf = new Uint8Array(CHUNK);
        for (let at = 0; at < input.sizeBytes; at += CHUNK) {
          const n = Math.min(CHUNK, input.sizeBytes - at);
          const chunk = buf.subarray(0, n);
          await call((d) => input.read(at, chunk, d));
          for (let c = 0; c < n; c += CLUSTER) {
            const cluster = chunk.subarray(c, Math.min(n, c + CLUSTER));
            if (!isZero(cluster)) await call((d) => output.write(at + c, cluster, d));
          }
        }
        await call((d) => output.flush(d));
      } finally {
        await output.close();
      }
    } finally {
      await input.close();
    }
    await link(tmp, dst).catch((err: NodeJS.ErrnoException) => {
      throw err.code === "EEXIST"
        ? new Qcow2Error("disk-exists", `disk image ${dst} already exists`)
        : new Qcow2Error("disk-io-failed", `cannot create disk image ${dst}: ${err.message}`);
    });
    await syncDirectory(dirname(dst));
  } finally {
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
