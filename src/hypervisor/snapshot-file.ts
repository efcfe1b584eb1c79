// A suspended VM's state on disk (STYLE.md "State and snapshots"): a manifest with magic, format version,
// architecture, writer and per-section SHA-256 checksums; the engine's state tree as JSON with its typed
// arrays moved out to binary sections; large sections (guest RAM) written sparse, zero pages left as holes.
//
//   manifest.json    { magic, format: { major, minor }, arch, engine, engineVersion, writer, createdAt,
//                      treeBytes, treeSha256, sections: [{ file, type, length, byteLength, sha256 }] }
//   state.json       the tree; each typed array replaced by { "$section": N }, each bigint by { "$bigint": "…" }
//   section-N.bin    the bytes of typed array N, from its file's offset 0 (so it can be mapped as it is)
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
import { open, readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import { mapFilePrivate } from "../engines/backends/mapped-file.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export const SNAPSHOT_MAGIC = "tsvm-state";
export const SNAPSHOT_FORMAT = { major: 1, minor: 0 } as const;
/** The JSON part holds registers and device fields, never memory: anything bigger is not ours. */
export const MAX_TREE_BYTES = 16 << 20;
const MAX_MANIFEST_BYTES = 1 << 20;
/** Sections are at most what one VM can have: 2 GiB of RAM plus some. */
const MAX_SECTION_BYTES = 2 ** 31 + (64 << 20);
const PAGE = 4096;
/** Sections at least this big are guest RAM: readSnapshot maps them when asked (`largeSections: "map"`). */
export const MAP_MIN_BYTES = 1 << 20;
const ZERO_PAGE = Buffer.alloc(PAGE);

/** What an engine's saveState returns (src/engines/engine.ts EngineSnapshot). */
export interface SnapshotLike {
  readonly engine: string;
  readonly version: number;
  readonly data: unknown;
}

const TYPED_ARRAYS = {
  Uint8Array,
  Int8Array,
  Uint8ClampedArray,
  Uint16Array,
  Int16Array,
  Uint32Array,
  Int32Array,
  Float32Array,
  Float64Array,
  BigUint64Array,
  BigInt64Array,
} as const;
type TypedArrayName = keyof typeof TYPED_ARRAYS;
type AnyTypedArray = InstanceType<(typeof TYPED_ARRAYS)[TypedArrayName]>;

interface SectionEntry {
  readonly file: string;
  readonly type: TypedArrayName;
  readonly length: number;
  readonly byteLength: number;
  readonly sha256: string;
}

interface Manifest {
  readonly magic: string;
  readonly format: { readonly major: number; readonly minor: number };
  readonly arch: string;
  readonly engine: string;
  readonly engineVersion: number;
  readonly writer: string;
  readonly createdAt: string;
  readonly treeBytes: number;
  readonly treeSha256: string;
  readonly sections: readonly SectionEntry[];
}

export class StateFileError extends HypervisorError {
  constructor(dir: string, problem: string) {
    super("bad-state", `the saved state in ${dir} is unusable: ${problem}; it was left as it is`);
  }
}

function typedArrayName(v: unknown): TypedArrayName | undefined {
  if (!ArrayBuffer.isView(v) || v instanceof DataView) return undefined;
  for (const name of Object.keys(TYPED_ARRAYS) as TypedArrayName[])
    if (v instanceof TYPED_ARRAYS[name]) return name;
  return undefined;
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
  const isZero = (off: number) => {
    const page = bytes.subarray(off, Math.min(off + PAGE, bytes.length));
    return page.length === PAGE ? page.equals(ZERO_PAGE) : page.every((b) => b === 0);
  };
  await writeFileDurable(path, async (fh) => {
    let off = 0;
    while (off < bytes.length) {
      if (isZero(off)) {
        off += PAGE;
        continue;
      }
      let end = off + PAGE;
      while (end < bytes.length && end - off < MAX_WRITE_BYTES && !isZero(end)) end += PAGE;
      end = Math.min(end, bytes.length);
      for (let at = off; at < end; ) {
        const { bytesWritten } = await fh.write(bytes, at, end - at, at);
        at += bytesWritten;
      }
      off = end;
    }
    await fh.truncate(bytes.length);
  });
}

/**
 * Writes `snapshot` into `dir` (an existing, empty directory; the caller renames it into place). Throws
 * HypervisorError "bad-state" for a tree that cannot be stored (functions, non-finite numbers, cycles).
 */
export async function writeSnapshot(
  dir: string,
  snapshot: SnapshotLike,
  meta: { readonly arch: string; readonly writer: string },
): Promise<void> {
  const sections: Array<{ array: AnyTypedArray; type: TypedArrayName }> = [];
  const seen = new Set<object>();
  const encode = (v: unknown, path: string): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new StateFileError(dir, `${path} is ${v}, which JSON cannot hold`);
      return v;
    }
    if (typeof v === "bigint") return { $bigint: v.toString() };
    const type = typedArrayName(v);
    if (type) {
      sections.push({ array: v as AnyTypedArray, type });
      return { $section: sections.length - 1 };
    }
    if (typeof v !== "object")
      throw new StateFileError(dir, `${path} is a ${typeof v}, which a state cannot hold`);
    if (seen.has(v)) throw new StateFileError(dir, `${path} refers back to itself`);
    seen.add(v);
    if (Array.isArray(v)) return v.map((x, i) => encode(x, `${path}[${i}]`));
    const out: Record<string, unknown> = {};
    for (const [key, val] of Object.entries(v)) {
      if (key.startsWith("$"))
        throw new StateFileError(dir, `${path}.${key}: keys starting with $ are reserved`);
      if (val !== undefined) out[key] = encode(val, `${path}.${key}`);
    }
    return out;
  };
  const tree = Buffer.from(JSON.stringify(encode(snapshot.data, "data")));
  if (tree.length > MAX_TREE_BYTES)
    throw new StateFileError(dir, `the state tree is ${tree.length} bytes, more than ${MAX_TREE_BYTES}`);

  const entries: SectionEntry[] = [];
  for (let i = 0; i < sections.length; i++) {
    const { array, type } = sections[i]!;
    const bytes = Buffer.from(array.buffer, array.byteOffset, array.byteLength);
    const file = `section-${i}.bin`;
    await writeSparse(join(dir, file), bytes);
    entries.push({
      file,
      type,
      length: array.length,
      byteLength: array.byteLength,
      sha256: createHash("sha256").update(bytes).digest("hex"),
    });
  }
  await writeFileDurable(join(dir, "state.json"), (fh) => fh.writeFile(tree).then(() => {}));
  const manifest: Manifest = {
    magic: SNAPSHOT_MAGIC,
    format: SNAPSHOT_FORMAT,
    arch: meta.arch,
    engine: snapshot.engine,
    engineVersion: snapshot.version,
    writer: meta.writer,
    createdAt: new Date().toISOString(),
    treeBytes: tree.length,
    treeSha256: createHash("sha256").update(tree).digest("hex"),
    sections: entries,
  };
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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
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
  Ctor: (typeof TYPED_ARRAYS)[TypedArrayName],
  length: number,
): Promise<AnyTypedArray> {
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
  Ctor: (typeof TYPED_ARRAYS)[TypedArrayName],
  byteLength: number,
): AnyTypedArray {
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
  const manifestText = (await readBounded(dir, "manifest.json", MAX_MANIFEST_BYTES)).toString("utf8");
  let m: unknown;
  try {
    m = JSON.parse(manifestText);
  } catch (e) {
    throw new StateFileError(dir, `manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(m) || m.magic !== SNAPSHOT_MAGIC)
    throw new StateFileError(dir, "manifest.json is not a tsvm state manifest");
  const format = m.format as Manifest["format"] | undefined;
  if (!isObject(format) || format.major !== SNAPSHOT_FORMAT.major)
    throw new StateFileError(dir, `its format ${JSON.stringify(format)} is not ${SNAPSHOT_FORMAT.major}.x`);
  if (m.arch !== options.arch)
    throw new StateFileError(dir, `it is a ${String(m.arch)} state, not ${options.arch}`);
  if (
    typeof m.engine !== "string" ||
    typeof m.engineVersion !== "number" ||
    !Number.isInteger(m.engineVersion)
  )
    throw new StateFileError(dir, "manifest.json lacks the engine and its state version");
  if (!Array.isArray(m.sections) || m.sections.length > 100_000)
    throw new StateFileError(dir, "manifest.json lacks a valid section list");
  // The sections are read side by side: a resume waits for the slowest, not for their sum.
  const loadSection = async (i: number, raw: unknown): Promise<AnyTypedArray> => {
    const s = raw as Partial<SectionEntry>;
    const Ctor =
      isObject(raw) && typeof s.type === "string" && Object.hasOwn(TYPED_ARRAYS, s.type)
        ? TYPED_ARRAYS[s.type as TypedArrayName]
        : undefined;
    if (
      !Ctor ||
      s.file !== `section-${i}.bin` ||
      !Number.isSafeInteger(s.length) ||
      s.byteLength !== s.length! * Ctor.BYTES_PER_ELEMENT ||
      s.byteLength! > MAX_SECTION_BYTES ||
      typeof s.sha256 !== "string"
    )
      throw new StateFileError(dir, `manifest.json describes section ${i} wrongly`);
    let size: number;
    try {
      size = (await stat(join(dir, s.file))).size;
    } catch {
      throw new StateFileError(dir, `${s.file} is missing`);
    }
    if (size !== s.byteLength)
      throw new StateFileError(
        dir,
        `${s.file} is ${size < s.byteLength! ? "truncated" : "too long"}: ${size} bytes, expected ${s.byteLength}`,
      );
    if (options.largeSections === "map" && s.byteLength! >= MAP_MIN_BYTES)
      return mapSection(dir, s.file, Ctor, s.byteLength!);
    const array = await readSection(dir, s.file, Ctor, s.length!);
    const bytes = new Uint8Array(array.buffer);
    if (createHash("sha256").update(bytes).digest("hex") !== s.sha256)
      throw new StateFileError(dir, `${s.file} is corrupt (its SHA-256 does not match the manifest)`);
    return array;
  };
  const sections: AnyTypedArray[] = [];
  const listed = m.sections as unknown[];
  // At most 32 files open at once, whatever a manifest lists.
  for (let at = 0; at < listed.length; at += 32)
    sections.push(
      ...(await Promise.all(listed.slice(at, at + 32).map((raw, k) => loadSection(at + k, raw)))),
    );
  const tree = await readBounded(dir, "state.json", MAX_TREE_BYTES);
  if (tree.length !== m.treeBytes || createHash("sha256").update(tree).digest("hex") !== m.treeSha256)
    throw new StateFileError(
      dir,
      "state.json is truncated or corrupt (size or SHA-256 does not match the manifest)",
    );
  const used = new Set<number>();
  const decode = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(decode);
    if (!isObject(v)) return v;
    if ("$section" in v) {
      const n = v.$section;
      if (typeof n !== "number" || !sections[n] || used.has(n))
        throw new StateFileError(dir, `state.json refers to section ${String(n)} wrongly`);
      used.add(n);
      return sections[n];
    }
    if ("$bigint" in v) {
      if (typeof v.$bigint !== "string" || !/^-?\d+$/.test(v.$bigint))
        throw new StateFileError(dir, "state.json holds a bad bigint");
      return BigInt(v.$bigint);
    }
    // fromEntries defines own properties: a key `__proto__` in the file cannot replace the prototype.
    return Object.fromEntries(Object.entries(v).map(([key, val]) => [key, decode(val)]));
  };
  let data: unknown;
  try {
    data = decode(JSON.parse(tree.toString("utf8")));
  } catch (e) {
    if (e instanceof StateFileError) throw e;
    throw new StateFileError(dir, `state.json is not valid JSON (${(e as Error).message})`);
  }
  return { engine: m.engine, version: m.engineVersion, data };
}
