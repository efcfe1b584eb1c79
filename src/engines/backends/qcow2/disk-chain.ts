// A disk's backing chain, walked one file at a time from the top (never recursively): each file's header is
// validated before its backing name is followed, loops and chains deeper than MAX_CHAIN_DEPTH are refused
// as soon as they show, so a hostile 1,000-deep chain costs 65 header reads.

import { realpath } from "node:fs/promises";
import { dirname, isAbsolute, resolve } from "node:path";
import { DiskFile } from "./disk-file.ts";
import { type ProbedDisk, probeDisk } from "./probe-disk.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import type { DiskFormat } from "./qcow2-header.ts";

/** Backing files below the top one (QEMU's own limit on its chains is far lower in practice). */
export const MAX_CHAIN_DEPTH = 64;

export interface DiskInfo {
  readonly format: DiskFormat;
  readonly virtualSize: number;
  readonly backing: { readonly name: string; readonly path: string; readonly format: DiskFormat } | null;
}

export interface ChainEntry {
  readonly path: string;
  readonly format: DiskFormat;
  readonly virtualSize: number;
}

/** One file of a walked chain; `file` is open only when the walk was asked to keep files open. */
export interface ChainLink extends ChainEntry {
  readonly file: DiskFile;
  readonly probed: ProbedDisk;
}

/** Where a backing name leads: relative names are relative to the overlay's directory, as in QEMU. */
export function backingPath(overlayPath: string, name: string): string {
  return isAbsolute(name) ? name : resolve(dirname(resolve(overlayPath)), name);
}

async function openLink(path: string, declared: DiskFormat | null, writable: boolean, child: string | null) {
  let file: DiskFile;
  try {
    file = await DiskFile.open(path, !writable);
  } catch (err) {
    if (child !== null && err instanceof Qcow2Error && err.code === "disk-not-found")
      throw new Qcow2Error("disk-not-found", `disk image ${child}: its backing file ${path} does not exist`);
    throw err;
  }
  try {
    return { file, probed: await probeDisk(file, declared) };
  } catch (err) {
    await file.close();
    throw err;
  }
}

/** What the top file of `path` is and what it names as backing; the backing file is only probed when its
 * format is not recorded. */
export async function readDiskInfo(path: string): Promise<DiskInfo> {
  const { file, probed } = await openLink(resolve(path), null, false, null);
  await file.close();
  const h = probed.header;
  if (h === null || h.backingName === null)
    return { format: probed.format, virtualSize: probed.virtualSize, backing: null };
  const bpath = backingPath(path, h.backingName);
  let format = h.backingFormat;
  if (format === null) {
    const b = await openLink(bpath, null, false, resolve(path));
    await b.file.close();
    format = b.probed.format;
  }
  return {
    format: "qcow2",
    virtualSize: probed.virtualSize,
    backing: { name: h.backingName, path: bpath, format },
  };
}

/**
 * Walks the chain from `path` down. With `keepOpen`, the files stay open (the top one writable when asked)
 * and belong to the caller; on any error every file opened so far is closed.
 */
export async function walkChain(path: string, keepOpen: boolean, topWritable = false): Promise<ChainLink[]> {
  const links: ChainLink[] = [];
  const seen = new Set<string>();
  try {
    let current: string | null = resolve(path);
    let declared: DiskFormat | null = null;
    let child: string | null = null;
    while (current !== null) {
      if (links.length > MAX_CHAIN_DEPTH)
        throw new Qcow2Error(
          "bad-disk-image",
          `disk image ${path}: its backing chain is deeper than ${MAX_CHAIN_DEPTH} files`,
        );
      const { file, probed } = await openLink(current, declared, topWritable && links.length === 0, child);
      const real = await realpath(current).catch(() => current!);
      if (seen.has(real)) {
        await file.close();
        throw new Qcow2Error(
          "bad-disk-image",
          `disk image ${path}: its backing chain loops back to ${current}`,
        );
      }
      seen.add(real);
      if (!keepOpen) await file.close();
      links.push({ path: current, format: probed.format, virtualSize: probed.virtualSize, file, probed });
      const h = probed.header;
      child = current;
      declared = h?.backingFormat ?? null;
      current = h?.backingName != null ? backingPath(current, h.backingName) : null;
    }
    return links;
  } catch (err) {
    if (keepOpen) for (const l of links) await l.file.close();
    throw err;
  }
}

/** The chain of `path`, top first, absolute paths. */
export async function diskChain(path: string): Promise<ChainEntry[]> {
  const links = await walkChain(path, false);
  return links.map(({ path, format, virtualSize }) => ({ path, format, virtualSize }));
}
