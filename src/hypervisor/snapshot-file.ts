// A suspended VM's state on disk (STYLE.md "State and snapshots"): a manifest with magic, format version,
// architecture, writer and per-section SHA-256 checksums; the engine's state tree as JSON with its typed
// arrays moved out to binary sections; large sections (guest RAM) written sparse, zero pages left as holes.
// The format itself (manifest, tree encoding, checks) is src/machine/state/state-file-format.ts, shared with
// the machine in a browser tab; this file is its reading and writing as files. Each section-N.bin holds its
// bytes from offset 0, so it can be mapped as it is.
//
// Reading a state can map its large sections (guest RAM) instead of reading them (`largeSections: "map"`),
// so that a resume does not wait for all of RAM: the host kernel reads a page from the file when the guest
// first touches it. Such a section's SHA-256 is then not checked, because checking it means reading every
// byte, the very cost mapping avoids. That is safe where it is used, a local resume: the state was written
// by a VMM of this installation into its own data directory (mode 0700), fsynced and renamed into place,
// and it is read-checked for size; the tree and every small section are still checked in full. A state
// that comes from elsewhere (an imported file) is checked whole where it enters the host, by a default
// read (`largeSections: "read"`), which reads and checks every byte.
// Section files are never written after they are complete (a later save writes a new directory), so a
// VMM running on a mapping of one never sees it change (mapped-file.ts says why that matters).

import { createHash } from "node:crypto";
import { type FileHandle, open, readFile, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { mapFilePrivate } from "../engines/backends/mapped-file.ts";
import {
  decodeStateTree,
  encodeStateTree,
  MAX_STATE_MANIFEST_BYTES,
  MAX_STATE_TREE_BYTES,
  parseStateManifest,
  STATE_FORMAT,
  STATE_MAGIC,
  STATE_TYPED_ARRAYS,
  type SnapshotLike,
  type StateArray,
  type StateArrayType,
  StateFormatError,
  type StateSectionEntry,
  sectionFileName,
  stateManifest,
} from "../engines/riscv/riscv-engine.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export type { SnapshotLike };
export const SNAPSHOT_MAGIC = STATE_MAGIC;
export const SNAPSHOT_FORMAT = STATE_FORMAT;
export const MAX_TREE_BYTES = MAX_STATE_TREE_BYTES;
const PAGE = 4096;
/** Sections at least this big are guest RAM: readSnapshot maps them when asked (`largeSections: "map"`). */
export const MAP_MIN_BYTES = 1 << 20;
const ZERO_PAGE = Buffer.alloc(PAGE);

export class StateFileError extends HypervisorError {
  constructor(dir: string, problem: string) {
    super("bad-state", `the saved state in ${dir} is unusable: ${problem}; it was left as it is`);
  }
}

/** Runs `work`, naming `dir` in a StateFormatError it throws. */
function inDir<T>(dir: string, work: () => T): T {
  try {
    return work();
  } catch (e) {
    if (e instanceof StateFormatError) throw new StateFileError(dir, e.problem);
    throw e;
  }
}

async function writeFileDurable(
  path: string,
  write: (fh: Awaited<ReturnType<typeof open>>) => Promise<void>,
) {
  const fh = await open(path, "wx", 0o600);
  try {
    await write(fh);
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** Most bytes one write of a run of non-zero pages takes. */
const MAX_WRITE_BYTES = 8 << 20;

/**
 * Writes `bytes` to a new file, leaving every all-zero 4 KiB page as a hole (each page at its own offset,
 * so the file can be mapped as it is). Consecutive non-zero pages go out in one write: a page per write
 * made a suspend of a 1 GiB guest take many seconds of system calls.
 */
async function writeSparse(path: string, bytes: Buffer): Promise<void> {
  await writeFileDurable(path, async (fh) => {
    for (const [from, to] of nonZeroRuns(bytes)) await writeRange(fh, bytes, from, to);
    await fh.truncate(bytes.length);
  });
}

/** The [start, end) runs of `bytes` holding no all-zero page, each at most MAX_WRITE_BYTES (a file's holes). */
export function* nonZeroRuns(bytes: Buffer): Generator<[number, number]> {
  const isZero = (off: number) => {
    const page = bytes.subarray(off, Math.min(off + PAGE, bytes.length));
    return page.length === PAGE ? page.equals(ZERO_PAGE) : page.every((b) => b === 0);
  };
  let off = 0;
  while (off < bytes.length) {
    if (isZero(off)) {
      off += PAGE;
      continue;
    }
    let end = off + PAGE;
    while (end < bytes.length && end - off < MAX_WRITE_BYTES && !isZero(end)) end += PAGE;
    end = Math.min(end, bytes.length);
    yield [off, end];
    off = end;
  }
}

/** Writes bytes [from, to) of `bytes` at the same offsets of the file (a short write is carried on). */
async function writeRange(fh: FileHandle, bytes: Buffer, from: number, to: number): Promise<void> {
  for (let at = from; at < to; ) {
    const { bytesWritten } = await fh.write(bytes, at, to - at, at);
    at += bytesWritten;
  }
}

/**
 * Writes pages of `bytes` (live guest RAM; the guest may run meanwhile) into the file at `path` at their own
 * offsets: with `pages` null every non-zero page into a new file of `bytes.length` (zero pages left as
 * holes), else those pages, zero or not, into that file. Resolves with the bytes written. A suspend's rounds
 * while its guest runs (riscv-guest.ts): what changes behind a round is in the next round's pages.
 */
export async function writeRamPages(path: string, bytes: Buffer, pages: Uint32Array | null): Promise<number> {
  const fh = await open(path, pages === null ? "wx" : "r+", 0o600);
  let written = 0;
  try {
    if (pages === null) await fh.truncate(bytes.length);
    const write = async (from: number, to: number) => {
      await writeRange(fh, bytes, from, to);
      written += to - from;
    };
    if (pages === null) {
      for (const [from, to] of nonZeroRuns(bytes)) await write(from, to);
    } else for (const [from, to] of pageRuns(pages)) await write(from, to);
    await fh.sync();
  } finally {
    await fh.close();
  }
  return written;
}

/**
 * The [start, end) byte ranges of runs of consecutive pages in `pages` (sorted page numbers), each at most
 * MAX_WRITE_BYTES: one write (or one frame of a migration stream) per run.
 */
export function* pageRuns(pages: Uint32Array): Generator<[number, number]> {
  for (let i = 0; i < pages.length; ) {
    let j = i + 1;
    while (j < pages.length && pages[j] === pages[j - 1]! + 1 && (j - i) * PAGE < MAX_WRITE_BYTES) j++;
    yield [pages[i]! * PAGE, pages[j - 1]! * PAGE + PAGE];
    i = j;
  }
}

/** A section already written by writeRamPages rounds, but for the pages written since the last one. */
export interface PrewrittenSection {
  /** The file writeRamPages wrote. */
  readonly path: string;
  /** The section's array (the live RAM) whose bytes the file holds. */
  readonly array: ArrayBufferView;
  /** The pages written since the last round: written now, then the file becomes the section's. */
  readonly dirty: Uint32Array;
}

/**
 * Writes `snapshot` into `dir` (an existing, empty directory; the caller renames it into place). Throws
 * HypervisorError "bad-state" for a tree that cannot be stored (functions, non-finite numbers, cycles).
 * With `prewritten` its section is finished from that file (only the pages dirty since its last round are
 * written) and moved into `dir`, instead of written whole.
 */
export async function writeSnapshot(
  dir: string,
  snapshot: SnapshotLike,
  meta: { readonly arch: string; readonly writer: string },
  prewritten?: PrewrittenSection,
): Promise<void> {
  const encoded = inDir(dir, () => encodeStateTree(snapshot.data));
  const tree = Buffer.from(encoded.json);
  if (tree.length > MAX_TREE_BYTES)
    throw new StateFileError(dir, `the state tree is ${tree.length} bytes, more than ${MAX_TREE_BYTES}`);
  const sections = encoded.sections;

  const entries: StateSectionEntry[] = [];
  for (let i = 0; i < sections.length; i++) {
    const { array, type } = sections[i]!;
    const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
    const file = sectionFileName(i);
    const isPrewritten =
      prewritten !== undefined &&
      array.buffer === prewritten.array.buffer &&
      array.byteOffset === prewritten.array.byteOffset &&
      array.byteLength === prewritten.array.byteLength;
    if (isPrewritten) {
      await writeRamPages(prewritten.path, bytes, prewritten.dirty);
      await rename(prewritten.path, join(dir, file));
    } else await writeSparse(join(dir, file), bytes);
    entries.push({
      file,
      type,
      length: array.length,
      byteLength: array.byteLength,
      sha256: createHash("sha256").update(bytes).digest("hex"),
    });
  }
  await writeFileDurable(join(dir, "state.json"), (fh) => fh.writeFile(tree).then(() => {}));
  const manifest = stateManifest({
    arch: meta.arch,
    engine: snapshot.engine,
    engineVersion: snapshot.version,
    writer: meta.writer,
    createdAt: new Date().toISOString(),
    treeBytes: tree.length,
    treeSha256: createHash("sha256").update(tree).digest("hex"),
    sections: entries,
  });
  // The manifest last: a directory without one was never completely written.
  await writeFileDurable(join(dir, "manifest.json"), (fh) =>
    fh.writeFile(`${JSON.stringify(manifest, null, 2)}\n`).then(() => {}),
  );
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
}

/** Reads a file of at most `max` bytes, or throws StateFileError saying it is missing or too big. */
async function readBounded(dir: string, file: string, max: number): Promise<Buffer> {
  const path = join(dir, file);
  let size: number;
  try {
    size = (await stat(path)).size;
  } catch {
    throw new StateFileError(dir, `${file} is missing`);
  }
  if (size > max) throw new StateFileError(dir, `${file} is ${size} bytes, more than ${max}`);
  return readFile(path);
}

export interface ReadSnapshotOptions {
  /** The architecture the state must be for. */
  readonly arch: string;
  /**
   * "read" (default): every section is read into memory and its SHA-256 checked. "map": each section of
   * at least MAP_MIN_BYTES (guest RAM) is mapped copy-on-write from its file (its pages are read when
   * first touched; writes to the array never reach the file) and its SHA-256 is not checked — for a local
   * resume only (the header of this file says why); the other sections are read and checked as always.
   */
  readonly largeSections?: "read" | "map";
}

/** Reads section file `file` (`byteLength` bytes) into a new `Ctor` array, every byte. */
async function readSection(
  dir: string,
  file: string,
  Ctor: (typeof STATE_TYPED_ARRAYS)[StateArrayType],
  length: number,
): Promise<StateArray> {
  // Read straight into the array's memory: a RAM section is not held twice.
  const array = new Ctor(length);
  const view = new Uint8Array(array.buffer);
  const fh = await open(join(dir, file), "r");
  try {
    for (let off = 0; off < view.length; ) {
      const { bytesRead } = await fh.read(view, off, Math.min(view.length - off, 64 << 20), off);
      if (bytesRead === 0) throw new StateFileError(dir, `${file} is truncated`);
      off += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return array;
}

/** Maps section file `file` (`byteLength` bytes, checked by the mapping) as a new `Ctor` array. */
function mapSection(
  dir: string,
  file: string,
  Ctor: (typeof STATE_TYPED_ARRAYS)[StateArrayType],
  byteLength: number,
): StateArray {
  let buffer: ArrayBuffer;
  try {
    buffer = mapFilePrivate(join(dir, file), byteLength);
  } catch (e) {
    throw new StateFileError(dir, `${file} cannot be mapped (${(e as Error).message})`);
  }
  return new Ctor(buffer);
}

/**
 * Reads and checks a state written by writeSnapshot: magic, format, every section's size and checksum
 * (but see `largeSections`), the tree's checksum, before anything is returned. Throws StateFileError naming
 * the file and the problem.
 */
export async function readSnapshot(dir: string, options: ReadSnapshotOptions): Promise<SnapshotLike> {
  const manifestText = (await readBounded(dir, "manifest.json", MAX_STATE_MANIFEST_BYTES)).toString("utf8");
  const m = inDir(dir, () => parseStateManifest(manifestText, options.arch));
  // The sections are read side by side: a resume waits for the slowest, not for their sum.
  const loadSection = async (s: StateSectionEntry): Promise<StateArray> => {
    const Ctor = STATE_TYPED_ARRAYS[s.type];
    let size: number;
    try {
      size = (await stat(join(dir, s.file))).size;
    } catch {
      throw new StateFileError(dir, `${s.file} is missing`);
    }
    if (size !== s.byteLength)
      throw new StateFileError(
        dir,
        `${s.file} is ${size < s.byteLength ? "truncated" : "too long"}: ${size} bytes, expected ${s.byteLength}`,
      );
    if (options.largeSections === "map" && s.byteLength >= MAP_MIN_BYTES)
      return mapSection(dir, s.file, Ctor, s.byteLength);
    const array = await readSection(dir, s.file, Ctor, s.length);
    const bytes = new Uint8Array(array.buffer);
    if (createHash("sha256").update(bytes).digest("hex") !== s.sha256)
      throw new StateFileError(dir, `${s.file} is corrupt (its SHA-256 does not match the manifest)`);
    return array;
  };
  const sections: StateArray[] = [];
  const listed = m.sections;
  // At most 32 files open at once, whatever a manifest lists.
  for (let at = 0; at < listed.length; at += 32)
    sections.push(...(await Promise.all(listed.slice(at, at + 32).map(loadSection))));
  const tree = await readBounded(dir, "state.json", MAX_TREE_BYTES);
  if (tree.length !== m.treeBytes || createHash("sha256").update(tree).digest("hex") !== m.treeSha256)
    throw new StateFileError(
      dir,
      "state.json is truncated or corrupt (size or SHA-256 does not match the manifest)",
    );
  const data = inDir(dir, () => decodeStateTree(tree.toString("utf8"), sections));
  return { engine: m.engine, version: m.engineVersion, data };
}
