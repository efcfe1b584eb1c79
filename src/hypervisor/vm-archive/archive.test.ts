// The export file format on its own: what is written reads back byte for byte (zero pages left out), and
// every kind of bad input — truncated anywhere, any region's byte changed, a future version, not an export,
// bytes after the end — is refused with one line naming the problem, before the sink sees a wrong byte.
import assert from "node:assert/strict";
import { mkdtemp, open, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { VM_RECORD_FORMAT_VERSION, type VmRecord } from "../vm-record.ts";
import { ARCHIVE_PAGE, ArchiveError, FILE_HEADER_BYTES, RECORD_HEADER_BYTES } from "./archive-format.ts";
import type { ArchiveManifest } from "./archive-manifest.ts";
import { type ArchiveSink, readArchive } from "./archive-reader.ts";
import { planArchive, scanRuns, writeArchive } from "./archive-writer.ts";

const root = await mkdtemp(join(tmpdir(), "tsvm-archive-"));
after(() => rm(root, { recursive: true, force: true }));

const record: VmRecord = {
  formatVersion: VM_RECORD_FORMAT_VERSION,
  id: "0d6f3f4e-1111-4222-8333-944445555666",
  name: "web",
  machineType: "t1-micro",
  cpus: 1,
  memoryMiB: 128,
  diskMiB: 1,
  image: "default",
  engine: "fixture",
  automaticRestart: true,
  cpuCapPercent: null,
  cpuWeight: 100,
  status: "SUSPENDED",
  statusMessage: "",
  creationTimestamp: "2026-01-01T00:00:00.000Z",
  lastStartTimestamp: null,
  lastStopTimestamp: null,
  lastSuspendedTimestamp: null,
  history: [{ at: "2026-01-01T00:00:00.000Z", from: null, to: "PROVISIONING", reason: "insert" }],
};

/** A disk of 64 pages with data in a few, a small state file, and an empty file. */
async function sources() {
  const disk = Buffer.alloc(64 * ARCHIVE_PAGE);
  disk.fill(0xa5, 0, 100);
  disk.fill(0x5a, 10 * ARCHIVE_PAGE, 13 * ARCHIVE_PAGE + 7);
  disk[63 * ARCHIVE_PAGE + 4095] = 1;
  await writeFile(join(root, "disk.img"), disk);
  const state = Buffer.from('{"count":42}');
  return {
    disk,
    state,
    files: [
      { path: "vm/disk.img", source: join(root, "disk.img"), size: disk.length },
      { path: "vm/state/counter.json", source: state, size: state.length },
      { path: "vm/empty", source: Buffer.alloc(0), size: 0 },
    ],
  };
}

async function archiveBytes(): Promise<{ bytes: Buffer; planned: number; disk: Buffer; state: Buffer }> {
  const { disk, state, files } = await sources();
  const plan = await planArchive(
    {
      format: "tsvm-vm-export",
      exportedAt: "2026-01-02T00:00:00.000Z",
      writer: "tsvm",
      byteOrder: "little",
      vm: record,
      snapshots: true,
    },
    files,
  );
  const chunks: Buffer[] = [];
  for await (const chunk of writeArchive(plan)) chunks.push(chunk);
  return { bytes: Buffer.concat(chunks), planned: plan.bytes, disk, state };
}

/** A sink keeping each file in memory, and everything it was handed in order. */
function memorySink() {
  const files = new Map<string, Buffer>();
  let manifest: ArchiveManifest | undefined;
  const sink: ArchiveSink = {
    async manifest(m) {
      manifest = m;
    },
    async file(entry) {
      const content = Buffer.alloc(entry.size);
      return {
        async write(offset, bytes) {
          bytes.copy(content, offset);
        },
        async end() {
          files.set(entry.path, content);
        },
      };
    },
  };
  return { sink, files, manifest: () => manifest };
}

/** `bytes` as a stream of small uneven chunks, as a pipe delivers them. */
async function* chunked(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0, n = 1; at < bytes.length; at += n, n = (n * 7 + 3) % 5000 || 1)
    yield bytes.subarray(at, at + n);
}

async function* oneChunk(bytes: Buffer): AsyncGenerator<Buffer> {
  yield bytes;
}

async function refusal(bytes: Buffer): Promise<string> {
  try {
    await readArchive(chunked(bytes), memorySink().sink);
  } catch (e) {
    assert.ok(e instanceof ArchiveError, `an ArchiveError, not ${(e as Error).stack}`);
    assert.equal((e as ArchiveError).code, "bad-archive");
    assert.ok(!(e as Error).message.includes("\n"), "one line");
    return (e as Error).message;
  }
  assert.fail("the damaged archive was accepted");
}

test("an archive reads back as written, its size is what was planned, and zero pages are left out", async () => {
  const { bytes, planned, disk, state } = await archiveBytes();
  assert.equal(bytes.length, planned);
  // 4 non-zero pages + the last one, of 64: the rest is not in the file.
  assert.ok(bytes.length < 8 * ARCHIVE_PAGE, `${bytes.length} bytes`);
  const { sink, files, manifest } = memorySink();
  const read = await readArchive(chunked(bytes), sink);
  assert.deepEqual(read.vm, record);
  assert.deepEqual(
    manifest()?.files.map((f) => f.path),
    ["vm/disk.img", "vm/state/counter.json", "vm/empty"],
  );
  assert.ok(files.get("vm/disk.img")!.equals(disk));
  assert.ok(files.get("vm/state/counter.json")!.equals(state));
  assert.equal(files.get("vm/empty")!.length, 0);
});

test("a truncated archive is refused, wherever it is cut", async () => {
  const { bytes } = await archiveBytes();
  const cuts = new Set<number>([0, 1, 7, 8, 15, 16, 17, 31, 32, bytes.length - 1, bytes.length - 33]);
  for (let at = 0; at < bytes.length; at += 97) cuts.add(at);
  for (const cut of [...cuts].sort((a, b) => a - b)) {
    const message = await refusal(bytes.subarray(0, cut));
    assert.match(
      message,
      cut < FILE_HEADER_BYTES ? /shorter than an export's 16-byte header/ : /truncated/,
      `cut at ${cut}: ${message}`,
    );
  }
});

test("a changed byte anywhere is found before the sink gets a wrong byte: header, manifest, data, trailer", async () => {
  const { bytes, disk } = await archiveBytes();
  assert.ok(bytes.length > 20_000, `${bytes.length} bytes`);
  for (let at = 0; at < bytes.length; at++) {
    const damaged = Buffer.from(bytes);
    damaged[at]! ^= 0x20;
    const { sink, files } = memorySink();
    let failure: Error | undefined;
    try {
      // One chunk: every byte of a few-KiB file is flipped in turn, so the reads must be cheap.
      await readArchive(oneChunk(damaged), sink);
    } catch (e) {
      failure = e as Error;
    }
    assert.ok(failure instanceof ArchiveError, `byte ${at} changed was not noticed (${failure?.stack})`);
    // Whatever the sink was given before the refusal is the true content (prefix-checked).
    const written = files.get("vm/disk.img");
    if (written) assert.ok(written.equals(disk), `byte ${at}: the sink got a wrong disk`);
  }
});

test("the messages name the problem: not an export, a future version, unknown flags, extra bytes, damage", async () => {
  const { bytes } = await archiveBytes();
  assert.match(await refusal(Buffer.alloc(0)), /not a tsvm export file: it is shorter/);
  assert.match(
    await refusal(Buffer.from("#!/bin/sh\necho this is a shell script\n")),
    /not a tsvm export file \(it starts with the bytes 2321/,
  );
  const future = Buffer.from(bytes);
  future.writeUInt16LE(2, 8);
  assert.match(
    await refusal(future),
    /format version 2\.0; this tsvm reads format 1\.x \(up to 1\.0\): import it with a newer tsvm/,
  );
  const flags = Buffer.from(bytes);
  flags.writeUInt32LE(1, 12);
  assert.match(await refusal(flags), /flags 0x1, which format 1\.0 does not define/);
  // A later minor of the same major is read; the trailer's digest still covers the header, so a minor
  // changed in transit (not by a writer, which digests what it wrote) is caught there.
  const minor = Buffer.from(bytes);
  minor.writeUInt16LE(1, 10);
  assert.match(await refusal(minor), /do not match the checksum in its trailer/);
  assert.match(await refusal(Buffer.concat([bytes, Buffer.from("x")])), /bytes after its trailer/);
  const body = Buffer.from(bytes);
  body[FILE_HEADER_BYTES + RECORD_HEADER_BYTES + 5]! ^= 1;
  assert.match(await refusal(body), /the META record at byte 16 does not match its checksum/);
});

test("a sparse file's holes are skipped and its non-zero pages found, also zero pages written as data", async () => {
  const path = join(root, "sparse.bin");
  const size = 64 * ARCHIVE_PAGE + 100;
  const fh = await open(path, "w");
  try {
    await fh.truncate(size);
    const page = (fill: number) => Buffer.alloc(ARCHIVE_PAGE, fill);
    await fh.write(page(1), 0, ARCHIVE_PAGE, 0);
    await fh.write(page(0), 0, ARCHIVE_PAGE, ARCHIVE_PAGE); // data on disk, but zeros
    await fh.write(page(2), 0, ARCHIVE_PAGE, 2 * ARCHIVE_PAGE);
    await fh.write(page(3), 0, ARCHIVE_PAGE, 40 * ARCHIVE_PAGE);
    await fh.write(Buffer.from([9]), 0, 1, size - 1); // the short last page
  } finally {
    await fh.close();
  }
  assert.deepEqual(await scanRuns(path, size), [
    [0, ARCHIVE_PAGE],
    [2 * ARCHIVE_PAGE, 3 * ARCHIVE_PAGE],
    [40 * ARCHIVE_PAGE, 41 * ARCHIVE_PAGE],
    [64 * ARCHIVE_PAGE, size],
  ]);
  await assert.rejects(scanRuns(path, size + 1), /shorter than/);
});
