// Makes new qcow2 version 3 files (64 KiB clusters, 16-bit refcounts, as `qemu-img create -f qcow2` does)
// and rewrites a file's backing name (like `qemu-img rebase -u`). A new file appears whole or not at all:
// it is written and synced under a temporary name, then linked to its name (which fails if that exists).

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, link, open, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { DiskFile } from "./disk-file.ts";
import { probeDisk } from "./probe-disk.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import {
  AUTOCLEAR_TSVM_CLEAN,
  buildHeaderBytes,
  type DiskFormat,
  decodeBackingName,
  l1EntriesNeeded,
  MAX_VIRTUAL_SIZE,
  QCOW2_MAGIC,
  QCOW2_V3_HEADER_LENGTH,
} from "./qcow2-header.ts";

const CLUSTER_BITS = 16;
const CLUSTER_SIZE = 2 ** CLUSTER_BITS;
const REFCOUNT_ORDER = 4;

export interface BackingSpec {
  /** Stored as given; a relative name is resolved against the overlay's directory. */
  readonly name: string;
  readonly format: DiskFormat;
}

export interface CreateQcow2Options {
  readonly sizeBytes: number;
  readonly backing?: BackingSpec;
}

function checkBacking(backing: BackingSpec): void {
  const bad = (problem: string) => new Qcow2Error("bad-disk-request", problem);
  if (backing.format !== "qcow2" && backing.format !== "raw")
    throw bad(`backing format "${String(backing.format)}" is not qcow2 or raw`);
  decodeBackingName(new TextEncoder().encode(backing.name), bad);
}

export async function createQcow2(path: string, options: CreateQcow2Options): Promise<void> {
  const { sizeBytes, backing } = options;
  if (
    !Number.isSafeInteger(sizeBytes) ||
    sizeBytes < 0 ||
    sizeBytes % 512 !== 0 ||
    sizeBytes > MAX_VIRTUAL_SIZE
  )
    throw new Qcow2Error(
      "bad-disk-request",
      `disk size ${sizeBytes} must be a whole number of 512-byte sectors up to 2 TiB`,
    );
  if (backing) checkBacking(backing);
  await refuseExisting(path);

  const l1Size = l1EntriesNeeded(sizeBytes, CLUSTER_BITS);
  const l1Clusters = Math.ceil((l1Size * 8) / CLUSTER_SIZE);
  const metadataClusters = 3 + l1Clusters; // header, refcount table, refcount block 0, L1 table
  const fixed = new Uint8Array(QCOW2_V3_HEADER_LENGTH);
  const v = new DataView(fixed.buffer);
  v.setUint32(0, QCOW2_MAGIC);
  v.setUint32(4, 3);
  v.setUint32(20, CLUSTER_BITS);
  v.setUint32(24, Math.floor(sizeBytes / 2 ** 32));
  v.setUint32(28, sizeBytes >>> 0);
  v.setUint32(36, l1Size);
  v.setUint32(44, 3 * CLUSTER_SIZE); // L1 table offset
  v.setUint32(52, CLUSTER_SIZE); // refcount table offset
  v.setUint32(56, 1); // refcount table clusters
  v.setUint32(92, AUTOCLEAR_TSVM_CLEAN); // a new file's refcounts are exact
  v.setUint32(96, REFCOUNT_ORDER);
  v.setUint32(100, QCOW2_V3_HEADER_LENGTH);

  const image = new Uint8Array(metadataClusters * CLUSTER_SIZE);
  image.set(buildHeaderBytes(fixed, CLUSTER_SIZE, backing ?? null, []), 0);
  const iv = new DataView(image.buffer);
  iv.setUint32(CLUSTER_SIZE + 4, 2 * CLUSTER_SIZE); // refcount table entry 0 → block at cluster 2
  for (let c = 0; c < metadataClusters; c++) iv.setUint16(2 * CLUSTER_SIZE + c * 2, 1);
  await writeNewFile(path, image);
}

async function refuseExisting(path: string): Promise<void> {
  const exists = await access(path, constants.F_OK).then(
    () => true,
    () => false,
  );
  if (exists) throw new Qcow2Error("disk-exists", `disk image ${path} already exists`);
}

/** Writes `bytes` as a new file at `path`: temporary name, sync, link (fails if `path` exists), unlink. */
export async function writeNewFile(path: string, bytes: Uint8Array): Promise<void> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString("hex")}.tmp`);
  try {
    const fh = await open(tmp, "wx", 0o644);
    try {
      // A filesystem that fills up mid-write returns a short count, not ENOSPC: a truncated image must
      // never be linked into place (it would be a disk whose L1 table lies beyond its end).
      for (let at = 0; at < bytes.length; ) {
        const { bytesWritten } = await fh.write(bytes, at, bytes.length - at, at);
        if (bytesWritten === 0)
          throw Object.assign(new Error("no space left on device (a write made no progress)"), {
            code: "ENOSPC",
          });
        at += bytesWritten;
      }
      await fh.datasync();
    } finally {
      await fh.close();
    }
    await link(tmp, path);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === "EEXIST") throw new Qcow2Error("disk-exists", `disk image ${path} already exists`);
    throw new Qcow2Error("disk-io-failed", `cannot create disk image ${path}: ${e.message}`);
  } finally {
    await unlink(tmp).catch(() => {});
  }
  await syncDirectory(dirname(path));
}

export async function syncDirectory(dir: string): Promise<void> {
  const fh = await open(dir, "r").catch(() => null);
  if (fh === null) return;
  await fh.sync().catch(() => {});
  await fh.close();
}

/** Changes the backing file `path` names, without touching any data (like `qemu-img rebase -u`). */
export async function setBacking(path: string, backing: BackingSpec | null): Promise<void> {
  if (backing) checkBacking(backing);
  const file = await DiskFile.open(path, false);
  try {
    const { header } = await probeDisk(file, null);
    if (header === null)
      throw new Qcow2Error(
        "bad-disk-request",
        `disk image ${path} is raw: only a qcow2 file names a backing file`,
      );
    const fixed = new Uint8Array(header.headerLength);
    await file.read(0, fixed);
    const bytes = buildHeaderBytes(fixed, header.clusterSize, backing, header.otherExtensions);
    // The whole header cluster, as QEMU rewrites it: zeros over the old extensions and name.
    const out = new Uint8Array(Math.max(bytes.length, Math.min(header.clusterSize, file.size)));
    out.set(bytes);
    await file.write(0, out);
    await file.sync();
  } finally {
    await file.close();
  }
}
