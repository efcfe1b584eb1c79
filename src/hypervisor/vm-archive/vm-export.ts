// What an export file holds of one VM at rest (TERMINATED or SUSPENDED; the hypervisor holds the VM while
// it is read): its definition, its active disk and every disk node (disks/, shared bases included) its
// chain and its snapshots' chains reach, its saved state when SUSPENDED, its snapshots (list and saved
// memory) unless left out, and the boot files it needs on a host without its image. Only reads: the
// source VM and its nodes are never changed.

import { existsSync } from "node:fs";
import { lstat, readdir, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { diskChain } from "../../engines/backends/qcow2/index.ts";
import { activeDiskOf, SNAPSHOTS_FILE } from "../disk-store.ts";
import type { ImageCatalog } from "../hypervisor.ts";
import { treeNodes } from "../snapshot-tree.ts";
import type { VmPaths } from "../store.ts";
import { BOOT_DIR, BOOT_MANIFEST, bootManifest, vmBootFiles } from "../vm-boot-files.ts";
import type { VmRecord } from "../vm-record.ts";
import { isArchivePath } from "./archive-format.ts";
import { hostByteOrder } from "./archive-manifest.ts";
import { type ArchivePlan, planArchive } from "./archive-writer.ts";

export interface ExportOptions {
  /** Include the VM's snapshots (snapshots.json and their saved states); default true. */
  readonly snapshots?: boolean;
  /**
   * Include the active disk (default true). A live move leaves it out: the VM runs and writes it, so it
   * goes in the migration stream after the pause (cluster/live-moves.ts); its nodes do not change.
   */
  readonly activeDisk?: boolean;
}

interface SourceFile {
  path: string;
  source: string | Buffer;
  size: number;
}

const SNAPSHOT_ENTRIES = [SNAPSHOTS_FILE, "snapshots"];

/** Every regular file under `dir`, as archive paths under `prefix`, sorted; a symlink or device is refused. */
async function filesUnder(dir: string, prefix: string): Promise<SourceFile[]> {
  const out: SourceFile[] = [];
  for (const entry of (await readdir(dir)).sort()) {
    if (entry.startsWith(".tmp-")) continue; // an atomic write in flight or a crash's leftover: not the VM's
    const source = join(dir, entry);
    const info = await lstat(source);
    const path = `${prefix}/${entry}`;
    if (info.isDirectory()) out.push(...(await filesUnder(source, path)));
    else if (info.isFile()) out.push({ path, source, size: info.size });
    else throw new Error(`${source} is neither a file nor a directory; it cannot be exported`);
  }
  return out;
}

async function existing(path: string): Promise<boolean> {
  return stat(path).then(
    () => true,
    (e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return false;
      throw e;
    },
  );
}

/** The files of `record`'s VM an export carries, in the order they are written. */
async function vmFiles(
  record: VmRecord,
  paths: VmPaths,
  disksDir: string,
  images: ImageCatalog,
  options: ExportOptions,
): Promise<SourceFile[]> {
  const files: SourceFile[] = [];
  const add = async (entry: string) => {
    const source = join(paths.dir, entry);
    if (!(await existing(source))) return;
    const info = await lstat(source);
    if (info.isDirectory()) files.push(...(await filesUnder(source, `vm/${entry}`)));
    else files.push({ path: `vm/${entry}`, source, size: info.size });
  };
  const snapshots = options.snapshots ?? true;
  // The active disk, then every node its chain and (unless left out) its snapshots' chains reach.
  const active = activeDiskOf(paths.dir);
  const chains = [await diskChain(active)];
  if (snapshots)
    for (const node of await treeNodes(paths.dir)) {
      const nodePath = [".qcow2", ".raw"].map((ext) => join(disksDir, `${node}${ext}`)).find(existsSync);
      if (!nodePath) throw new Error(`the disk node ${node} of a snapshot of '${record.name}' is missing`);
      chains.push(await diskChain(nodePath));
    }
  if (options.activeDisk ?? true) await add(basename(active));
  const nodes = new Set<string>();
  for (const chain of chains)
    for (const link of chain) {
      if (link.path === active) continue;
      if (dirname(link.path) !== disksDir)
        throw new Error(
          `the disk ${link.path} in the chain of '${record.name}' is not a node of ${disksDir}`,
        );
      nodes.add(link.path);
    }
  for (const node of [...nodes].sort())
    files.push({ path: `disks/${basename(node)}`, source: node, size: (await stat(node)).size });
  if (record.status === "SUSPENDED") await add("state");
  if (snapshots) for (const entry of SNAPSHOT_ENTRIES) await add(entry);
  // An imported VM has its own boot files; any other VM takes its image's along.
  if (await vmBootFiles(paths.dir)) await add(BOOT_DIR);
  else {
    const boot = images.bootFiles?.(record.image);
    if (boot) {
      const manifest = Buffer.from(bootManifest(boot, record.image));
      files.push({ path: `vm/${BOOT_DIR}/${BOOT_MANIFEST}`, source: manifest, size: manifest.length });
      for (const source of new Set([boot.firmware, boot.kernel, boot.initrd])) {
        const name = source.slice(source.lastIndexOf("/") + 1);
        files.push({ path: `vm/${BOOT_DIR}/${name}`, source, size: (await stat(source)).size });
      }
    }
  }
  for (const f of files)
    if (!isArchivePath(f.path))
      throw new Error(`the VM's file ${f.path} has a name an export cannot hold; rename it`);
  return files;
}

/**
 * Scans the VM's files and plans its export file (exact size known). The VM must stay at rest until the
 * archive has been written (writeArchive).
 */
export async function planVmExport(
  record: VmRecord,
  paths: VmPaths,
  /** The data directory's disks/ (disk-store.ts), where the VM's disk nodes are. */
  disksDir: string,
  images: ImageCatalog,
  options: ExportOptions = {},
  now = new Date(),
): Promise<ArchivePlan> {
  return planArchive(
    {
      format: "tsvm-vm-export",
      exportedAt: now.toISOString(),
      writer: "tsvm",
      byteOrder: hostByteOrder(),
      // Where the VM's files were is this host's business: an import puts them on the importer's storage.
      vm: withoutPlacement(record),
      snapshots: options.snapshots ?? true,
    },
    await vmFiles(record, paths, disksDir, images, options),
  );
}

function withoutPlacement(record: VmRecord): VmRecord {
  const { sharedStorage: _, ...rest } = record;
  return rest;
}
