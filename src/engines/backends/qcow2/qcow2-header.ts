// The qcow2 header (QEMU's docs/interop/qcow2.txt, "Header" and "Header extensions"): parsed and validated
// from the bytes of a file's first cluster before any other offset in the file is trusted, and built for
// new images. Every field that later code uses as an offset or a size is checked here against the file.

import { Qcow2Error } from "./qcow2-error.ts";

export const QCOW2_MAGIC = 0x514649fb; // "QFI\xfb"
/** The fixed part of a version 3 header we write: 104 bytes plus compression_type and padding. */
export const QCOW2_V3_HEADER_LENGTH = 112;

/** Incompatible feature bits (spec: "Bitmask of incompatible features"). */
export const INCOMPAT_DIRTY = 1 << 0;
export const INCOMPAT_CORRUPT = 1 << 1;
export const INCOMPAT_DATA_FILE = 1 << 2;
export const INCOMPAT_COMPRESSION = 1 << 3;
export const INCOMPAT_EXTL2 = 1 << 4;
const INCOMPAT_KNOWN =
  INCOMPAT_DIRTY | INCOMPAT_CORRUPT | INCOMPAT_DATA_FILE | INCOMPAT_COMPRESSION | INCOMPAT_EXTL2;

/**
 * Autoclear feature bit 31, tsvm's own: "the refcounts are exact" (no leaked clusters). tsvm sets it when it
 * closes a file it wrote cleanly and clears it when it opens one for writing; a writer that does not know
 * it clears it too (the spec's rule for autoclear bits, which QEMU follows), so a file without it gets its
 * leaks looked for (qcow2-leak-repair.ts). Readers ignore autoclear bits: qemu-img reports nothing about it.
 */
export const AUTOCLEAR_TSVM_CLEAN = 0x80000000;

/** Header extension types. */
export const EXT_END = 0;
export const EXT_BACKING_FORMAT = 0xe2792aca;
export const EXT_FEATURE_TABLE = 0x6803f857;
export const EXT_CRYPTO = 0x0537be77;
export const EXT_DATA_FILE = 0x44415441;

/** Refused above this: tsvm's disks are far smaller, and every size below stays a safe integer. */
export const MAX_VIRTUAL_SIZE = 2 * 1024 ** 4;
/** QEMU's own bounds (QCOW_MAX_L1_SIZE, QCOW_MAX_REFTABLE_SIZE): the tables are held in memory. */
export const MAX_L1_BYTES = 32 * 1024 * 1024;
export const MAX_REFTABLE_BYTES = 8 * 1024 * 1024;
/** The spec's limit for the backing file name ("must be < 1024 bytes"). */
export const MAX_BACKING_NAME = 1023;

export type DiskFormat = "qcow2" | "raw";

export interface Qcow2Header {
  readonly version: 2 | 3;
  readonly clusterBits: number;
  readonly clusterSize: number;
  readonly virtualSize: number;
  readonly l1Size: number;
  readonly l1TableOffset: number;
  readonly refcountTableOffset: number;
  readonly refcountTableClusters: number;
  readonly nbSnapshots: number;
  readonly incompatibleFeatures: number;
  readonly autoclearFeatures: number;
  readonly refcountOrder: number;
  readonly headerLength: number;
  readonly backingName: string | null;
  readonly backingFormat: DiskFormat | null;
  /** Header extensions we neither use nor refuse, kept as they are when the header is rewritten. */
  readonly otherExtensions: ReadonlyArray<{ readonly type: number; readonly data: Uint8Array }>;
}

/** True when the bytes start like a qcow2 file (the probe QEMU uses: the magic). */
export function hasQcow2Magic(head: Uint8Array): boolean {
  return head.length >= 4 && new DataView(head.buffer, head.byteOffset, 4).getUint32(0) === QCOW2_MAGIC;
}

/** The cluster size a header claims, read before the rest so the caller can read the whole first cluster. */
export function claimedClusterSize(head: Uint8Array): number {
  if (head.length < 24) return 512;
  const bits = new DataView(head.buffer, head.byteOffset, head.length).getUint32(20);
  return bits >= 9 && bits <= 21 ? 2 ** bits : 512;
}

/** How many L1 entries a disk of `virtualSize` bytes needs (each L2 table maps clusterSize/8 clusters). */
export function l1EntriesNeeded(virtualSize: number, clusterBits: number): number {
  return Math.ceil(virtualSize / 2 ** (2 * clusterBits - 3));
}

/**
 * Parses and validates a qcow2 header. `head` holds the file's first bytes, at least the whole first
 * cluster where the file is that long; `fileSize` bounds every table the header points at.
 */
export function parseQcow2Header(head: Uint8Array, fileSize: number, path: string): Qcow2Header {
  const bad = (problem: string) => new Qcow2Error("bad-disk-image", `disk image ${path}: ${problem}`);
  if (head.length < 72) throw bad("too short for a qcow2 header");
  const v = new DataView(head.buffer, head.byteOffset, head.length);
  const u64 = (at: number, what: string): number => {
    const hi = v.getUint32(at);
    if (hi >= 2 ** 21) throw bad(`${what} is too large`);
    return hi * 2 ** 32 + v.getUint32(at + 4);
  };
  if (v.getUint32(0) !== QCOW2_MAGIC) throw bad("not a qcow2 file (no QFI magic)");
  const version = v.getUint32(4);
  if (version !== 2 && version !== 3) throw bad(`qcow2 version ${version} is not supported (only 2 and 3)`);
  const clusterBits = v.getUint32(20);
  if (clusterBits < 9 || clusterBits > 21) throw bad(`cluster_bits ${clusterBits} is outside 9..21`);
  const clusterSize = 2 ** clusterBits;
  if (v.getUint32(32) !== 0) throw bad("is encrypted (encryption is not supported)");

  const virtualSize = u64(24, "virtual size");
  if (virtualSize > MAX_VIRTUAL_SIZE) throw bad(`virtual size ${virtualSize} is larger than the 2 TiB limit`);
  if (virtualSize % 512 !== 0)
    throw bad(`virtual size ${virtualSize} is not a whole number of 512-byte sectors`);

  let headerLength = 72;
  let incompatibleFeatures = 0;
  let autoclearFeatures = 0;
  let refcountOrder = 4;
  if (version === 3) {
    if (head.length < 104) throw bad("too short for a version 3 header");
    headerLength = v.getUint32(100);
    if (headerLength < 104 || headerLength % 8 !== 0 || headerLength > Math.min(clusterSize, head.length))
      throw bad(`header_length ${headerLength} is invalid`);
    if (v.getUint32(72) !== 0) throw bad("uses unknown incompatible features (bits 32..63)");
    incompatibleFeatures = v.getUint32(76);
    const unknown = incompatibleFeatures & ~INCOMPAT_KNOWN;
    if (unknown !== 0) throw bad(`uses unknown incompatible features (0x${unknown.toString(16)})`);
    if (incompatibleFeatures & INCOMPAT_DATA_FILE) throw bad("uses an external data file (not supported)");
    if (incompatibleFeatures & INCOMPAT_EXTL2) throw bad("uses extended L2 entries (not supported)");
    const compressionType = headerLength > 104 ? v.getUint8(104) : 0;
    if (compressionType !== 0 || incompatibleFeatures & INCOMPAT_COMPRESSION)
      throw bad(`uses compression type ${compressionType} (only deflate is supported)`);
    autoclearFeatures = v.getUint32(92);
    refcountOrder = v.getUint32(96);
    if (refcountOrder > 6) throw bad(`refcount_order ${refcountOrder} is larger than 6`);
  }

  const l1Size = v.getUint32(36);
  const l1TableOffset = u64(40, "L1 table offset");
  const needed = l1EntriesNeeded(virtualSize, clusterBits);
  if (l1Size < needed) throw bad(`L1 table of ${l1Size} entries is too small for its virtual size`);
  // QEMU grows L1 tables by half again when it resizes an image, so some slack is legitimate.
  if (l1Size * 8 > MAX_L1_BYTES) throw bad(`L1 table of ${l1Size} entries is larger than 32 MiB`);
  if (l1Size > Math.max(2 * needed, needed + 64))
    throw bad(
      `L1 table of ${l1Size} entries is larger than a disk of ${virtualSize} bytes needs (${needed})`,
    );
  if (l1Size > 0) checkTable(l1TableOffset, l1Size * 8, "L1 table");

  const refcountTableOffset = u64(48, "refcount table offset");
  const refcountTableClusters = v.getUint32(56);
  if (refcountTableClusters === 0) throw bad("has no refcount table");
  if (refcountTableClusters * clusterSize > MAX_REFTABLE_BYTES)
    throw bad(`refcount table of ${refcountTableClusters} clusters is larger than 8 MiB`);
  checkTable(refcountTableOffset, refcountTableClusters * clusterSize, "refcount table");
  const nbSnapshots = v.getUint32(60);

  const backingFileOffset = u64(8, "backing file offset");
  const backingFileSize = v.getUint32(16);
  let backingName: string | null = null;
  if (backingFileOffset !== 0) {
    if (backingFileSize === 0 || backingFileSize > MAX_BACKING_NAME)
      throw bad(`backing file name of ${backingFileSize} bytes (must be 1..${MAX_BACKING_NAME})`);
    if (
      backingFileOffset < headerLength ||
      backingFileOffset + backingFileSize > Math.min(clusterSize, head.length)
    )
      throw bad("backing file name lies outside the header cluster");
    backingName = decodeBackingName(
      head.subarray(backingFileOffset, backingFileOffset + backingFileSize),
      bad,
    );
  }

  // Extensions run from the end of the fixed header to the backing name (or the cluster's end).
  const extEnd = backingFileOffset !== 0 ? backingFileOffset : Math.min(clusterSize, head.length);
  let backingFormat: DiskFormat | null = null;
  const otherExtensions: Array<{ type: number; data: Uint8Array }> = [];
  for (let at = headerLength; ; ) {
    if (at + 8 > extEnd) throw bad("header extensions run past the header cluster");
    const type = v.getUint32(at);
    const length = v.getUint32(at + 4);
    if (type === EXT_END) break;
    if (length > extEnd - at - 8)
      throw bad(`header extension 0x${type.toString(16)} runs past the header cluster`);
    const data = head.slice(at + 8, at + 8 + length);
    if (type === EXT_BACKING_FORMAT) {
      const name = new TextDecoder().decode(data);
      if (name !== "qcow2" && name !== "raw")
        throw bad(`backing file format "${name.slice(0, 40)}" is not supported (only qcow2 and raw)`);
      backingFormat = name;
    } else if (type === EXT_CRYPTO) throw bad("is encrypted (encryption is not supported)");
    else if (type === EXT_DATA_FILE) throw bad("uses an external data file (not supported)");
    else if (type !== EXT_FEATURE_TABLE) otherExtensions.push({ type, data });
    at += 8 + Math.ceil(length / 8) * 8;
  }
  if (backingName === null) backingFormat = null;

  return {
    version,
    clusterBits,
    clusterSize,
    virtualSize,
    l1Size,
    l1TableOffset,
    refcountTableOffset,
    refcountTableClusters,
    nbSnapshots,
    incompatibleFeatures,
    autoclearFeatures,
    refcountOrder,
    headerLength,
    backingName,
    backingFormat,
    otherExtensions,
  };

  function checkTable(offset: number, bytes: number, what: string): void {
    if (offset % clusterSize !== 0)
      throw bad(`${what} offset 0x${offset.toString(16)} is not cluster-aligned`);
    if (offset === 0) throw bad(`${what} overlaps the header`);
    if (offset + bytes > fileSize) throw bad(`${what} lies beyond the end of the file`);
  }
}

/** A backing name as stored: bounded, no NUL, valid UTF-8, a plain file name (no QEMU protocol prefix). */
export function decodeBackingName(bytes: Uint8Array, bad: (problem: string) => Error): string {
  if (bytes.length === 0 || bytes.length > MAX_BACKING_NAME)
    throw bad(`backing file name of ${bytes.length} bytes (must be 1..${MAX_BACKING_NAME})`);
  if (bytes.includes(0)) throw bad("backing file name contains a NUL byte");
  let name: string;
  try {
    name = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw bad("backing file name is not valid UTF-8");
  }
  // QEMU reads "proto:..." (and json:{...}) as a protocol, not a file: refuse rather than guess.
  const colon = name.indexOf(":");
  if (colon >= 0 && !name.slice(0, colon).includes("/"))
    throw bad(`backing file name "${name.slice(0, 80)}" names a protocol, not a file`);
  return name;
}

/**
 * The header cluster's bytes from the fixed header fields and the backing file: our fixed header (or the
 * original's first `base.length` bytes), then the extensions, the end marker and the backing name.
 */
export function buildHeaderBytes(
  fixed: Uint8Array,
  clusterSize: number,
  backing: { readonly name: string; readonly format: DiskFormat } | null,
  otherExtensions: ReadonlyArray<{ readonly type: number; readonly data: Uint8Array }>,
): Uint8Array {
  const enc = new TextEncoder();
  const exts: Array<{ type: number; data: Uint8Array }> = [];
  if (backing) exts.push({ type: EXT_BACKING_FORMAT, data: enc.encode(backing.format) });
  exts.push(...otherExtensions);
  let length = fixed.length;
  for (const e of exts) length += 8 + Math.ceil(e.data.length / 8) * 8;
  length += 8; // end marker
  const name = backing ? enc.encode(backing.name) : new Uint8Array(0);
  const nameAt = length;
  length += name.length;
  if (length > clusterSize)
    throw new Qcow2Error("bad-disk-request", "the header does not fit in one cluster");
  const out = new Uint8Array(length);
  out.set(fixed, 0);
  const v = new DataView(out.buffer);
  let at = fixed.length;
  for (const e of exts) {
    v.setUint32(at, e.type);
    v.setUint32(at + 4, e.data.length);
    out.set(e.data, at + 8);
    at += 8 + Math.ceil(e.data.length / 8) * 8;
  }
  at += 8; // EXT_END: type 0, length 0
  out.set(name, nameAt);
  v.setUint32(8, 0);
  v.setUint32(12, backing ? nameAt : 0);
  v.setUint32(16, name.length);
  return out;
}
