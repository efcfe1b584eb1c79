// Writes an export file (docs/export-format.md) as a stream: the header, the manifest, each file as a
// FILE record and DATA records for its non-zero 4 KiB pages only, and the DONE trailer with the digest of
// everything before it. Files are scanned once first (planArchive), so the exact size is known before
// the first byte is sent (Content-Length, progress); the stream then reads them again, one record at a time.

import { createHash, type Hash } from "node:crypto";
import { type FileHandle, open } from "node:fs/promises";
import { dataExtents } from "../../engines/backends/file-extents.ts";
import {
  ARCHIVE_FORMAT,
  ARCHIVE_MAGIC,
  ARCHIVE_PAGE,
  DIGEST_BYTES,
  FILE_HEADER_BYTES,
  MAX_DATA_PAYLOAD,
  RECORD_HEADER_BYTES,
  type RecordKind,
} from "./archive-format.ts";
import type { ArchiveManifest } from "./archive-manifest.ts";

/** A file to put in the archive: where it is read from, and its runs of non-zero pages. */
export interface PlannedFile {
  readonly path: string;
  /** A file's path, or its bytes (a file made for the archive, e.g. the boot files' description). */
  readonly source: string | Buffer;
  readonly size: number;
  /** [start, end) byte ranges holding every non-zero byte; the rest of the file reads as zeros. */
  readonly runs: ReadonlyArray<readonly [number, number]>;
}

export interface ArchivePlan {
  readonly manifest: ArchiveManifest;
  readonly files: readonly PlannedFile[];
  /** The exact size of the archive in bytes. */
  readonly bytes: number;
}

const SCAN_CHUNK = 1 << 20;
const ZERO_PAGE = Buffer.alloc(ARCHIVE_PAGE);

/** Adds the non-zero pages of `chunk` (which starts at `at`) to `runs`. */
function addRuns(runs: Array<[number, number]>, chunk: Buffer, at: number): void {
  for (let p = 0; p < chunk.length; p += ARCHIVE_PAGE) {
    const end = Math.min(p + ARCHIVE_PAGE, chunk.length);
    if (chunk.subarray(p, end).equals(ZERO_PAGE.subarray(0, end - p))) continue;
    const last = runs[runs.length - 1];
    if (last && last[1] === at + p) last[1] = at + end;
    else runs.push([at + p, at + end]);
  }
}

/** The runs of non-zero 4 KiB pages of `source` (its first `size` bytes). */
export async function scanRuns(source: string | Buffer, size: number): Promise<Array<[number, number]>> {
  const runs: Array<[number, number]> = [];
  if (typeof source !== "string") {
    addRuns(runs, source.subarray(0, size), 0);
    return runs;
  }
  const fh = await open(source, "r");
  try {
    if ((await fh.stat()).size < size) throw new Error(`${source} is shorter than ${size} bytes`);
    const buffer = Buffer.alloc(SCAN_CHUNK);
    // Only where the file has data: its holes read as zeros. Reads stay page-aligned so that addRuns' pages
    // are the file's, and never go over a page twice (blocks smaller than a page).
    let scanned = 0;
    for (const [from, to] of dataExtents(fh.fd, size) ?? [[0, size]]) {
      const start = Math.max(scanned, from - (from % ARCHIVE_PAGE));
      const end = Math.min(size, to + ((ARCHIVE_PAGE - (to % ARCHIVE_PAGE)) % ARCHIVE_PAGE));
      for (let at = start; at < end; at += SCAN_CHUNK) {
        const want = Math.min(SCAN_CHUNK, end - at);
        const { bytesRead } = await fh.read(buffer, 0, want, at);
        if (bytesRead !== want) throw new Error(`${source} is shorter than ${size} bytes`);
        addRuns(runs, buffer.subarray(0, want), at);
      }
      scanned = Math.max(scanned, end);
    }
  } finally {
    await fh.close();
  }
  return runs;
}

/** Reads `n` bytes at `at` of a planned file's source. */
async function readSource(source: Buffer | FileHandle, at: number, n: number, name: string): Promise<Buffer> {
  if (Buffer.isBuffer(source)) return Buffer.from(source.subarray(at, at + n));
  const payload = Buffer.alloc(n);
  const { bytesRead } = await source.read(payload, 0, n, at);
  if (bytesRead !== n) throw new Error(`${name} shrank while it was being exported`);
  return payload;
}

const recordBytes = (bodyBytes: number) => RECORD_HEADER_BYTES + bodyBytes + DIGEST_BYTES;

function fileRecordBody(file: PlannedFile): Buffer {
  return Buffer.from(JSON.stringify({ path: file.path, size: file.size }), "utf8");
}

/** Scans `files` and sizes the archive; the manifest's file list is made from them. */
export async function planArchive(
  manifest: Omit<ArchiveManifest, "files">,
  files: ReadonlyArray<{ path: string; source: string | Buffer; size: number }>,
): Promise<ArchivePlan> {
  const planned: PlannedFile[] = [];
  for (const f of files) planned.push({ ...f, runs: await scanRuns(f.source, f.size) });
  const full: ArchiveManifest = { ...manifest, files: files.map((f) => ({ path: f.path, size: f.size })) };
  let bytes = FILE_HEADER_BYTES + recordBytes(Buffer.byteLength(JSON.stringify(full)));
  for (const f of planned) {
    bytes += recordBytes(fileRecordBody(f).length);
    for (const [start, end] of f.runs) {
      const records = Math.ceil((end - start) / MAX_DATA_PAYLOAD);
      bytes += records * recordBytes(8) + (end - start);
    }
  }
  bytes += recordBytes(44);
  return { manifest: full, files: planned, bytes };
}

/** Frames records and keeps the digest of everything written so far (for the trailer). */
class RecordFramer {
  private readonly stream: Hash = createHash("sha256");
  private written = 0;
  private sequence = 0;

  header(): Buffer {
    const h = Buffer.alloc(FILE_HEADER_BYTES);
    ARCHIVE_MAGIC.copy(h, 0);
    h.writeUInt16LE(ARCHIVE_FORMAT.major, 8);
    h.writeUInt16LE(ARCHIVE_FORMAT.minor, 10);
    h.writeUInt32LE(0, 12); // flags: none defined
    return this.track(h);
  }

  record(kind: RecordKind, ...body: Buffer[]): Buffer {
    const length = body.reduce((n, b) => n + b.length, 0);
    const head = Buffer.alloc(RECORD_HEADER_BYTES);
    head.write(kind, 0, "latin1");
    head.writeUInt32LE(this.sequence++, 4);
    head.writeBigUInt64LE(BigInt(length), 8);
    const digest = createHash("sha256").update(head);
    for (const b of body) digest.update(b);
    return this.track(Buffer.concat([head, ...body, digest.digest()]));
  }

  done(): Buffer {
    const body = Buffer.alloc(44);
    body.writeUInt32LE(this.sequence, 0);
    body.writeBigUInt64LE(BigInt(this.written), 4);
    this.stream.copy().digest().copy(body, 12);
    return this.record("DONE", body);
  }

  private track(bytes: Buffer): Buffer {
    this.stream.update(bytes);
    this.written += bytes.length;
    return bytes;
  }
}

/**
 * The archive's bytes, one record at a time (a consumer's back-pressure paces the reads). Throws when a
 * file changed size since it was planned: the archive would not match its own Content-Length.
 */
export async function* writeArchive(plan: ArchivePlan): AsyncGenerator<Buffer> {
  const framer = new RecordFramer();
  yield framer.header();
  yield framer.record("META", Buffer.from(JSON.stringify(plan.manifest), "utf8"));
  for (const file of plan.files) {
    yield framer.record("FILE", fileRecordBody(file));
    if (file.runs.length === 0) continue;
    const source = typeof file.source === "string" ? await open(file.source, "r") : file.source;
    try {
      for (const [start, end] of file.runs) {
        for (let at = start; at < end; at += MAX_DATA_PAYLOAD) {
          const n = Math.min(MAX_DATA_PAYLOAD, end - at);
          const payload = await readSource(source, at, n, file.path);
          const offset = Buffer.alloc(8);
          offset.writeBigUInt64LE(BigInt(at));
          yield framer.record("DATA", offset, payload);
        }
      }
    } finally {
      if (!Buffer.isBuffer(source)) await source.close();
    }
  }
  yield framer.done();
}
