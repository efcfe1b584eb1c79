// The META record of an export file: what the file holds (the VM's definition and the list of its files),
// checked field by field when read, since an export file comes from anywhere.

import { endianness } from "node:os";
import { parseVmRecord, type VmRecord } from "../vm-record.ts";
import { ArchiveError, isArchivePath, MANIFEST_FORMAT, MAX_FILE_BYTES, MAX_FILES } from "./archive-format.ts";

export interface ArchiveFileEntry {
  /** `vm/…` or `disks/<id>.qcow2` (archive-format.ts isArchivePath). */
  readonly path: string;
  readonly size: number;
}

export interface ArchiveManifest {
  readonly format: typeof MANIFEST_FORMAT;
  readonly exportedAt: string;
  /** Who wrote it, for people ("tsvm"). */
  readonly writer: string;
  /**
   * The byte order of the engine state files inside (their typed-array sections are in the writer's host
   * order); a reader of the other order refuses the file rather than misread it.
   */
  readonly byteOrder: "little" | "big";
  /** The VM's definition (vm.json) as it was exported. */
  readonly vm: VmRecord;
  /** Whether the VM's snapshots were included (export --no-snapshots leaves them out). */
  readonly snapshots: boolean;
  /** Every file that follows, in order. */
  readonly files: readonly ArchiveFileEntry[];
}

export function hostByteOrder(): "little" | "big" {
  return endianness() === "LE" ? "little" : "big";
}

/** Parses and checks a META record's body; ArchiveError names the first problem. */
export function parseManifest(body: Buffer): ArchiveManifest {
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(body.toString("utf8")) as Record<string, unknown>;
  } catch (e) {
    throw new ArchiveError(`its manifest (META record) is not valid JSON (${(e as Error).message})`);
  }
  const bad = (field: string, what: string) => new ArchiveError(`its manifest's field '${field}' ${what}`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new ArchiveError("its manifest (META record) is not a JSON object");
  if (raw.format !== MANIFEST_FORMAT) throw bad("format", `is not "${MANIFEST_FORMAT}"`);
  if (typeof raw.exportedAt !== "string" || raw.exportedAt.length > 40)
    throw bad("exportedAt", "is not a time");
  if (typeof raw.writer !== "string" || raw.writer.length > 200) throw bad("writer", "is not a string");
  if (raw.byteOrder !== "little" && raw.byteOrder !== "big")
    throw bad("byteOrder", 'is not "little" or "big"');
  if (typeof raw.snapshots !== "boolean") throw bad("snapshots", "is not true or false");
  if (!Array.isArray(raw.files) || raw.files.length > MAX_FILES)
    throw bad("files", `is not a list of at most ${MAX_FILES} files`);
  const seen = new Set<string>();
  const files: ArchiveFileEntry[] = raw.files.map((f: unknown, i: number) => {
    const entry = f as Record<string, unknown>;
    if (typeof entry !== "object" || entry === null) throw bad(`files[${i}]`, "is not an object");
    if (typeof entry.path !== "string" || !isArchivePath(entry.path))
      throw bad(
        `files[${i}].path`,
        `is not a path an export may hold (${JSON.stringify(entry.path)?.slice(0, 80)})`,
      );
    if (
      !Number.isSafeInteger(entry.size) ||
      (entry.size as number) < 0 ||
      (entry.size as number) > MAX_FILE_BYTES
    )
      throw bad(`files[${i}].size`, `is not a size from 0 to ${MAX_FILE_BYTES}`);
    if (seen.has(entry.path)) throw bad(`files[${i}].path`, `repeats ${entry.path}`);
    seen.add(entry.path);
    return { path: entry.path, size: entry.size as number };
  });
  // A file beside a directory of the same name could not be created: refused before anything is written.
  for (const path of seen) {
    const parts = path.split("/");
    for (let i = 2; i < parts.length; i++) {
      const prefix = parts.slice(0, i).join("/");
      if (seen.has(prefix)) throw bad("files", `holds both the file ${prefix} and ${path} inside it`);
    }
  }
  let vm: VmRecord;
  try {
    vm = parseVmRecord(JSON.stringify(raw.vm ?? null), "(the export's manifest)");
  } catch (e) {
    throw new ArchiveError(`its VM definition is unusable: ${(e as Error).message}`);
  }
  return {
    format: MANIFEST_FORMAT,
    exportedAt: raw.exportedAt,
    writer: raw.writer,
    byteOrder: raw.byteOrder,
    vm,
    snapshots: raw.snapshots,
    files,
  };
}
