// The suspended-machine state format (docs/hypervisor.md "Saved state"), the part every host shares: the
// daemon's VMM writes and reads it as files (src/hypervisor/snapshot-file.ts), the machine in a browser tab
// (src/web/machine) fetches and uploads the same files. Here, with no I/O and no hashing of its own: the
// manifest's shape and checks, and the state tree's encoding as JSON with its typed arrays moved out to
// binary sections (each by its index) and bigints as strings.
//
//   manifest.json    { magic, format: { major, minor }, arch, engine, engineVersion, writer, createdAt,
//                      treeBytes, treeSha256, sections: [{ file, type, length, byteLength, sha256 }] }
//   state.json       the tree; each typed array replaced by { "$section": N }, each bigint by { "$bigint": "…" }
//   section-N.bin    the bytes of typed array N (in the writer's byte order: little-endian everywhere tsvm runs)

import { MachineError } from "../base/machine-error.ts";

export const STATE_MAGIC = "tsvm-state";
export const STATE_FORMAT = { major: 1, minor: 0 } as const;
/** The JSON part holds registers and device fields, never memory: anything bigger is not ours. */
export const MAX_STATE_TREE_BYTES = 16 << 20;
export const MAX_STATE_MANIFEST_BYTES = 1 << 20;
/** Sections are at most what one VM can have: 2 GiB of RAM plus some. */
export const MAX_STATE_SECTION_BYTES = 2 ** 31 + (64 << 20);
const MAX_SECTIONS = 100_000;

/** What an engine's saveState returns (src/engines/engine.ts EngineSnapshot). */
export interface SnapshotLike {
  readonly engine: string;
  readonly version: number;
  readonly data: unknown;
}

export const STATE_TYPED_ARRAYS = {
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
export type StateArrayType = keyof typeof STATE_TYPED_ARRAYS;
export type StateArray = InstanceType<(typeof STATE_TYPED_ARRAYS)[StateArrayType]>;

export interface StateSectionEntry {
  readonly file: string;
  readonly type: StateArrayType;
  readonly length: number;
  readonly byteLength: number;
  readonly sha256: string;
}

export interface StateManifest {
  readonly magic: string;
  readonly format: { readonly major: number; readonly minor: number };
  readonly arch: string;
  readonly engine: string;
  readonly engineVersion: number;
  readonly writer: string;
  readonly createdAt: string;
  readonly treeBytes: number;
  readonly treeSha256: string;
  readonly sections: readonly StateSectionEntry[];
}

/** A state that cannot be stored or read; `problem` says what, for the host to name where. */
export class StateFormatError extends MachineError {
  constructor(readonly problem: string) {
    super("bad-state", `the saved state is unusable: ${problem}`);
  }
}

/** The file of section `index`. */
export function sectionFileName(index: number): string {
  return `section-${index}.bin`;
}

function typedArrayType(v: unknown): StateArrayType | undefined {
  if (!ArrayBuffer.isView(v) || v instanceof DataView) return undefined;
  for (const name of Object.keys(STATE_TYPED_ARRAYS) as StateArrayType[])
    if (v instanceof STATE_TYPED_ARRAYS[name]) return name;
  return undefined;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The tree of `data` as JSON text, its typed arrays listed in section order. Throws StateFormatError for a
 * tree that cannot be stored (functions, non-finite numbers, cycles, keys starting with $).
 */
export function encodeStateTree(data: unknown): {
  readonly json: string;
  readonly sections: ReadonlyArray<{ readonly array: StateArray; readonly type: StateArrayType }>;
} {
  const sections: Array<{ array: StateArray; type: StateArrayType }> = [];
  const seen = new Set<object>();
  const encode = (v: unknown, path: string): unknown => {
    if (v === null || typeof v === "string" || typeof v === "boolean") return v;
    if (typeof v === "number") {
      if (!Number.isFinite(v)) throw new StateFormatError(`${path} is ${v}, which JSON cannot hold`);
      return v;
    }
    if (typeof v === "bigint") return { $bigint: v.toString() };
    const type = typedArrayType(v);
    if (type) {
      sections.push({ array: v as StateArray, type });
      return { $section: sections.length - 1 };
    }
    if (typeof v !== "object")
      throw new StateFormatError(`${path} is a ${typeof v}, which a state cannot hold`);
    if (seen.has(v)) throw new StateFormatError(`${path} refers back to itself`);
    seen.add(v);
    if (Array.isArray(v)) return v.map((x, i) => encode(x, `${path}[${i}]`));
    const out: Record<string, unknown> = {};
    for (const [key, val] of Object.entries(v)) {
      if (key.startsWith("$"))
        throw new StateFormatError(`${path}.${key}: keys starting with $ are reserved`);
      if (val !== undefined) out[key] = encode(val, `${path}.${key}`);
    }
    return out;
  };
  return { json: JSON.stringify(encode(data, "data")), sections };
}

/** The manifest of a state whose tree and sections are described (their sizes and SHA-256s) by the host. */
export function stateManifest(options: {
  readonly arch: string;
  readonly engine: string;
  readonly engineVersion: number;
  readonly writer: string;
  readonly createdAt: string;
  readonly treeBytes: number;
  readonly treeSha256: string;
  readonly sections: readonly StateSectionEntry[];
}): StateManifest {
  return { magic: STATE_MAGIC, format: STATE_FORMAT, ...options };
}

/**
 * Parses and checks manifest.json's text: magic, format major version, architecture, engine, and every
 * section's entry (its file name, array type, size within bounds). Sizes and checksums of the files
 * themselves are the host's to check. Throws StateFormatError.
 */
export function parseStateManifest(text: string, arch: string): StateManifest {
  let m: unknown;
  try {
    m = JSON.parse(text);
  } catch (e) {
    throw new StateFormatError(`manifest.json is not valid JSON (${(e as Error).message})`);
  }
  if (!isObject(m) || m.magic !== STATE_MAGIC)
    throw new StateFormatError("manifest.json is not a tsvm state manifest");
  const format = m.format as StateManifest["format"] | undefined;
  if (!isObject(format) || format.major !== STATE_FORMAT.major)
    throw new StateFormatError(`its format ${JSON.stringify(format)} is not ${STATE_FORMAT.major}.x`);
  if (m.arch !== arch) throw new StateFormatError(`it is a ${String(m.arch)} state, not ${arch}`);
  if (
    typeof m.engine !== "string" ||
    typeof m.engineVersion !== "number" ||
    !Number.isInteger(m.engineVersion)
  )
    throw new StateFormatError("manifest.json lacks the engine and its state version");
  if (!Array.isArray(m.sections) || m.sections.length > MAX_SECTIONS)
    throw new StateFormatError("manifest.json lacks a valid section list");
  if (!Number.isSafeInteger(m.treeBytes) || typeof m.treeSha256 !== "string")
    throw new StateFormatError("manifest.json lacks the size and SHA-256 of state.json");
  m.sections.forEach((raw: unknown, i: number) => {
    const s = raw as Partial<StateSectionEntry>;
    const Ctor =
      isObject(raw) && typeof s.type === "string" && Object.hasOwn(STATE_TYPED_ARRAYS, s.type)
        ? STATE_TYPED_ARRAYS[s.type as StateArrayType]
        : undefined;
    if (
      !Ctor ||
      s.file !== sectionFileName(i) ||
      !Number.isSafeInteger(s.length) ||
      s.byteLength !== s.length! * Ctor.BYTES_PER_ELEMENT ||
      s.byteLength! > MAX_STATE_SECTION_BYTES ||
      typeof s.sha256 !== "string"
    )
      throw new StateFormatError(`manifest.json describes section ${i} wrongly`);
  });
  return m as unknown as StateManifest;
}

/** The typed array a section's entry calls for, over `buffer` (its bytes, exactly byteLength long). */
export function sectionArray(entry: StateSectionEntry, buffer: ArrayBuffer): StateArray {
  return new STATE_TYPED_ARRAYS[entry.type](buffer);
}

/**
 * The state's data from state.json's text and its sections (in manifest order, checked by the host):
 * each section referred to once, bigints well formed. Throws StateFormatError.
 */
export function decodeStateTree(json: string, sections: readonly StateArray[]): unknown {
  const used = new Set<number>();
  const decode = (v: unknown): unknown => {
    if (Array.isArray(v)) return v.map(decode);
    if (!isObject(v)) return v;
    if ("$section" in v) {
      const n = v.$section;
      if (typeof n !== "number" || !sections[n] || used.has(n))
        throw new StateFormatError(`state.json refers to section ${String(n)} wrongly`);
      used.add(n);
      return sections[n];
    }
    if ("$bigint" in v) {
      if (typeof v.$bigint !== "string" || !/^-?\d+$/.test(v.$bigint))
        throw new StateFormatError("state.json holds a bad bigint");
      return BigInt(v.$bigint);
    }
    // fromEntries defines own properties: a key `__proto__` in the file cannot replace the prototype.
    return Object.fromEntries(Object.entries(v).map(([key, val]) => [key, decode(val)]));
  };
  let parsed: unknown;
  try {
    parsed = JSON.parse(json);
  } catch (e) {
    throw new StateFormatError(`state.json is not valid JSON (${(e as Error).message})`);
  }
  return decode(parsed);
}
