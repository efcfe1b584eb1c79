// Reads an export file (docs/export-format.md) from a stream and hands its verified contents to a sink:
// each record is held in memory (≤ 1 MiB + framing) and checked against its SHA-256 before the sink sees
// any of it; the trailer's count, length and digest of the whole stream, and the end of input right after
// it, are checked before `read` resolves. A sink therefore writes only verified bytes, and must commit
// nothing until `read` has resolved (an error leaves it to remove what it wrote).

import { createHash, type Hash } from "node:crypto";
import {
  ARCHIVE_FORMAT,
  ARCHIVE_MAGIC,
  ArchiveError,
  DIGEST_BYTES,
  FILE_HEADER_BYTES,
  MAX_BODY_BYTES,
  RECORD_HEADER_BYTES,
  RECORD_KINDS,
  type RecordKind,
} from "./archive-format.ts";
import { type ArchiveFileEntry, type ArchiveManifest, parseManifest } from "./archive-manifest.ts";

export interface ArchiveFileSink {
  /** Verified bytes at `offset` (strictly increasing, never overlapping, within the file's size). */
  write(offset: number, bytes: Buffer): Promise<void>;
  /** The file's last record has come: give it its full size (what was not written reads as zeros). */
  end(): Promise<void>;
}

export interface ArchiveSink {
  /** The manifest, before any file: refuse here (throw) what cannot be imported. */
  manifest(manifest: ArchiveManifest): Promise<void>;
  file(entry: ArchiveFileEntry): Promise<ArchiveFileSink>;
}

/** Pulls exact byte counts from a stream, counting what was consumed and hashing it. */
class ByteSource {
  private readonly chunks: Buffer[] = [];
  private buffered = 0;
  private ended = false;
  /** Bytes consumed so far: where the next read starts in the file. */
  position = 0;
  readonly digest = createHash("sha256");

  constructor(private readonly iterator: AsyncIterator<Uint8Array>) {}

  /** Exactly `n` bytes, or null when the input ended first. */
  async read(n: number): Promise<Buffer | null> {
    while (this.buffered < n && !this.ended) {
      const next = await this.iterator.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length);
        this.chunks.push(chunk);
        this.buffered += chunk.length;
      }
    }
    if (this.buffered < n) return null;
    const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
    // No copy: a stream's chunks are never reused by their producer, so the sink may keep a view of one.
    const out = all.subarray(0, n);
    const rest = all.subarray(n);
    this.chunks.length = 0;
    if (rest.length > 0) this.chunks.push(rest);
    this.buffered = rest.length;
    this.position += n;
    this.digest.update(out);
    return out;
  }

  /** True when nothing at all follows. */
  async atEnd(): Promise<boolean> {
    if (this.buffered > 0) return false;
    while (!this.ended) {
      const next = await this.iterator.next();
      if (next.done) this.ended = true;
      else if (next.value.length > 0) {
        this.chunks.push(Buffer.from(next.value.buffer, next.value.byteOffset, next.value.length));
        this.buffered += next.value.length;
        return false;
      }
    }
    return true;
  }
}

interface RawRecord {
  readonly kind: RecordKind;
  readonly body: Buffer;
  /** Where the record starts in the file. */
  readonly at: number;
  /** The digest of every byte before the record (the trailer carries it). */
  readonly before: Hash;
}

/** Reads and verifies the whole export file from `input`, feeding `sink`; resolves with its manifest. */
export async function readArchive(
  input: AsyncIterable<Uint8Array>,
  sink: ArchiveSink,
): Promise<ArchiveManifest> {
  const source = new ByteSource(input[Symbol.asyncIterator]());
  readHeader(await source.read(FILE_HEADER_BYTES));
  let sequence = 0;
  const next = async (): Promise<RawRecord> => {
    const record = await readRecord(source, sequence);
    sequence++;
    return record;
  };
  const first = await next();
  if (first.kind !== "META")
    throw new ArchiveError(
      `its first record (at byte ${first.at}) is ${first.kind}, not the manifest (META)`,
    );
  const manifest = parseManifest(first.body);
  await sink.manifest(manifest);
  let record = await next();
  for (const entry of manifest.files) {
    if (record.kind !== "FILE")
      throw new ArchiveError(
        `the record at byte ${record.at} is ${record.kind} where the file ${entry.path} should begin (FILE)`,
      );
    checkFileRecord(record, entry);
    const out = await sink.file(entry);
    let end = 0;
    for (record = await next(); record.kind === "DATA"; record = await next()) {
      const offset = Number(record.body.readBigUInt64LE(0));
      const bytes = record.body.subarray(8);
      if (offset < end || offset + bytes.length > entry.size || bytes.length === 0)
        throw new ArchiveError(
          `the data record at byte ${record.at} (offset ${offset}, ${bytes.length} bytes) lies outside ` +
            `${entry.path} (${entry.size} bytes) or overlaps its previous data`,
        );
      await out.write(offset, bytes);
      end = offset + bytes.length;
    }
    await out.end();
  }
  if (record.kind !== "DONE")
    throw new ArchiveError(
      `the record at byte ${record.at} is ${record.kind} where the trailer (DONE) should be: it holds more ` +
        "than its manifest lists",
    );
  checkTrailer(record, sequence - 1);
  if (!(await source.atEnd()))
    throw new ArchiveError(
      `it has bytes after its trailer (at byte ${source.position}): it is not one whole export`,
    );
  return manifest;
}

function readHeader(header: Buffer | null): void {
  if (header === null || header.subarray(0, ARCHIVE_MAGIC.length).compare(ARCHIVE_MAGIC) !== 0) {
    throw new ArchiveError(
      header === null
        ? "it is not a tsvm export file: it is shorter than an export's 16-byte header"
        : `it is not a tsvm export file (it starts with the bytes ${header.subarray(0, 8).toString("hex")}, ` +
            `not ${ARCHIVE_MAGIC.toString("hex")})`,
    );
  }
  const major = header.readUInt16LE(8);
  const minor = header.readUInt16LE(10);
  if (major !== ARCHIVE_FORMAT.major)
    throw new ArchiveError(
      `it is an export of format version ${major}.${minor}; this tsvm reads format ${ARCHIVE_FORMAT.major}.x ` +
        `(up to ${ARCHIVE_FORMAT.major}.${ARCHIVE_FORMAT.minor})${major > ARCHIVE_FORMAT.major ? ": import it with a newer tsvm" : ""}`,
    );
  const flags = header.readUInt32LE(12);
  if (flags !== 0)
    throw new ArchiveError(
      `its header has flags 0x${flags.toString(16)}, which format ${major}.${minor} does not define`,
    );
}

async function readRecord(source: ByteSource, sequence: number): Promise<RawRecord> {
  const at = source.position;
  const before = source.digest.copy();
  const head = await source.read(RECORD_HEADER_BYTES);
  if (head === null) throw truncated(at, "a record's header");
  const kind = head.toString("latin1", 0, 4);
  if (!(RECORD_KINDS as readonly string[]).includes(kind))
    throw new ArchiveError(
      `the record at byte ${at} has the unknown kind ${JSON.stringify(kind)}: the file is damaged`,
    );
  const length = head.readBigUInt64LE(8);
  const max = MAX_BODY_BYTES[kind as RecordKind];
  if (length > BigInt(max))
    throw new ArchiveError(
      `the ${kind} record at byte ${at} claims ${length} bytes, more than its limit of ${max}: the file is damaged`,
    );
  const body = await source.read(Number(length));
  if (body === null) throw truncated(at, `its ${kind} record`);
  const digest = await source.read(DIGEST_BYTES);
  if (digest === null) throw truncated(at, `the checksum of its ${kind} record`);
  const expected = createHash("sha256").update(head).update(body).digest();
  if (!expected.equals(digest))
    throw new ArchiveError(
      `the ${kind} record at byte ${at} does not match its checksum: the file is damaged`,
    );
  if (head.readUInt32LE(4) !== sequence)
    throw new ArchiveError(
      `the record at byte ${at} is number ${head.readUInt32LE(4)} where number ${sequence} should be: records are missing or out of order`,
    );
  return { kind: kind as RecordKind, body, at, before };
}

function truncated(at: number, what: string): ArchiveError {
  return new ArchiveError(`it ends early, in ${what} at byte ${at}: the file is truncated`);
}

function checkFileRecord(record: RawRecord, entry: ArchiveFileEntry): void {
  let described: { path?: unknown; size?: unknown };
  try {
    described = JSON.parse(record.body.toString("utf8")) as typeof described;
  } catch {
    throw new ArchiveError(`the FILE record at byte ${record.at} is not valid JSON`);
  }
  if (described.path !== entry.path || described.size !== entry.size)
    throw new ArchiveError(
      `the FILE record at byte ${record.at} describes ${JSON.stringify(described.path)?.slice(0, 80)} where the manifest lists ${entry.path} (${entry.size} bytes)`,
    );
}

function checkTrailer(record: RawRecord, records: number): void {
  const body = record.body;
  if (body.length !== 44)
    throw new ArchiveError(`its trailer (DONE at byte ${record.at}) has ${body.length} bytes, not 44`);
  if (body.readUInt32LE(0) !== records)
    throw new ArchiveError(
      `its trailer counts ${body.readUInt32LE(0)} records where ${records} came before it`,
    );
  if (Number(body.readBigUInt64LE(4)) !== record.at)
    throw new ArchiveError(
      `its trailer says ${body.readBigUInt64LE(4)} bytes precede it, but ${record.at} did`,
    );
  // Every byte before the trailer, the header included, is covered here: a changed byte that no record's
  // own checksum covers (the header's minor version, say) is found before anything is committed.
  if (!record.before.digest().equals(body.subarray(12, 44)))
    throw new ArchiveError("its contents do not match the checksum in its trailer: the file is damaged");
}
