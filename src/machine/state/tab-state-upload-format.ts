// How the machine in a browser tab sends its state to the server in one request body: the state file format
// (state-file-format.ts: manifest, state.json, sections), framed, followed by the disk pages the guest wrote.
//
//   magic "TSVMTAB1" (8 bytes) · header length (u32 LE) · header (JSON, UTF-8)
//   state.json (manifest.treeBytes) · section-0 … section-N (each byteLength) · disk runs (each length)
//
// The header says which image the machine booted (the SHA-256 prefix of its boot files, as the server
// names them) and what its disk started from: the image's template (the runs then cover the whole disk)
// or a VM's disk as it was when the tab fetched that VM's state (naming the state by its tree's SHA-256).

import type { StateManifest } from "./state-file-format.ts";
import { StateFormatError } from "./state-file-format.ts";

export const TAB_UPLOAD_MAGIC = "TSVMTAB1";
export const MAX_TAB_UPLOAD_HEADER_BYTES = 4 << 20;
const MAX_DISK_RUNS = 1 << 20;

export type TabDiskBase =
  | { readonly kind: "image" }
  | { readonly kind: "vm"; readonly vmId: string; readonly treeSha256: string };

export interface TabUploadHeader {
  /** The boot files' hash of the machine whose state this is. */
  readonly image: string;
  readonly base: TabDiskBase;
  readonly manifest: StateManifest;
  /** Disk bytes that follow the sections, in increasing non-overlapping order. */
  readonly disk: ReadonlyArray<{ readonly offset: number; readonly length: number }>;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * Checks a header's shape and its disk runs against a disk of `diskBytes` (512-byte aligned, inside it,
 * increasing, not overlapping); the manifest is checked by parseStateManifest. Throws StateFormatError.
 */
export function checkTabUploadHeader(value: unknown, diskBytes: number): TabUploadHeader {
  if (!isObject(value) || typeof value.image !== "string" || !isObject(value.manifest))
    throw new StateFormatError("the upload's header lacks the image or the manifest");
  const base = value.base;
  if (
    !isObject(base) ||
    !(
      base.kind === "image" ||
      (base.kind === "vm" && typeof base.vmId === "string" && typeof base.treeSha256 === "string")
    )
  )
    throw new StateFormatError("the upload's header does not say what its disk started from");
  if (!Array.isArray(value.disk) || value.disk.length > MAX_DISK_RUNS)
    throw new StateFormatError("the upload's header lacks a valid list of disk runs");
  let end = 0;
  for (const run of value.disk as unknown[]) {
    const r = run as { offset?: unknown; length?: unknown };
    if (
      !isObject(run) ||
      !Number.isSafeInteger(r.offset) ||
      !Number.isSafeInteger(r.length) ||
      (r.offset as number) < end ||
      (r.length as number) <= 0 ||
      (r.offset as number) % 512 !== 0 ||
      (r.length as number) % 512 !== 0 ||
      (r.offset as number) + (r.length as number) > diskBytes
    )
      throw new StateFormatError(
        `the upload's disk run ${JSON.stringify(run).slice(0, 100)} is not 512-byte aligned, inside the ${diskBytes}-byte disk and after the one before`,
      );
    end = (r.offset as number) + (r.length as number);
  }
  return value as unknown as TabUploadHeader;
}
