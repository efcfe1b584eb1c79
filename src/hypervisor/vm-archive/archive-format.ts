// The tsvm export file's format (docs/export-format.md): its magic, version, record kinds and bounds, and
// the error every reader and writer of it raises. Shared by archive-writer.ts and archive-reader.ts.

import { HypervisorError } from "../hypervisor-error.ts";

/** 0x89 catches a 7-bit channel and the final newline a text-mode one (as PNG's signature does). */
export const ARCHIVE_MAGIC = Buffer.from([0x89, 0x54, 0x53, 0x56, 0x4d, 0x56, 0x4d, 0x0a]); // "\x89TSVMVM\n"
/**
 * The format this tsvm writes. A reader reads every minor version of its major (later minors only add
 * manifest fields, which it ignores) and refuses another major, naming both.
 */
export const ARCHIVE_FORMAT = { major: 1, minor: 0 } as const;
export const FILE_HEADER_BYTES = 16;
export const RECORD_HEADER_BYTES = 16;
export const DIGEST_BYTES = 32;

/** Record kinds: four ASCII letters each. */
export const RECORD_KINDS = ["META", "FILE", "DATA", "DONE"] as const;
export type RecordKind = (typeof RECORD_KINDS)[number];

/** The sparse unit: a run of zero pages this size is left out of the file. Fixed, whatever the host's page size. */
export const ARCHIVE_PAGE = 4096;
/** Largest data payload of one DATA record: a reader holds one record in memory before it checks it. */
export const MAX_DATA_PAYLOAD = 1 << 20;
/** Largest body per kind (DATA: 8-byte offset + payload). */
export const MAX_BODY_BYTES: Readonly<Record<RecordKind, number>> = {
  META: 4 << 20,
  FILE: 4096,
  DATA: 8 + MAX_DATA_PAYLOAD,
  DONE: 44,
};
/** At most this many files: a VM has a disk chain (≤ 64 nodes), a state and its snapshots' states. */
export const MAX_FILES = 100_000;
/** Largest single file: a disk of 2 TiB (qcow2's virtual size is checked by its own reader). */
export const MAX_FILE_BYTES = 2 ** 41;

/** The manifest's `format` field, so that a META record cannot be mistaken for anything else. */
export const MANIFEST_FORMAT = "tsvm-vm-export";

/** An archive path: `vm/…` (files of the VM's directory) or `disks/<id>.qcow2` (shared disk nodes). */
const PATH_COMPONENT = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;
export function isArchivePath(path: string): boolean {
  if (path.length > 512) return false;
  const parts = path.split("/");
  if (parts.length < 2 || parts.length > 8) return false;
  if (parts[0] !== "vm" && !(parts[0] === "disks" && parts.length === 2)) return false;
  return parts.slice(1).every((p) => PATH_COMPONENT.test(p) && p !== "." && p !== "..");
}

/** What is wrong with an export file (or what reads as one): `bad-archive`, the message names the problem. */
export class ArchiveError extends HypervisorError {
  /** `problem` continues "the export file is unusable: ". */
  constructor(problem: string) {
    super("bad-archive", `the export file is unusable: ${problem}`);
  }
}

/** Writing the imported VM failed (a full disk, say); nothing was created. */
export class ImportWriteError extends HypervisorError {
  constructor(message: string) {
    super("import-failed", message);
  }
}
