// The boot files (firmware, kernel, initrd) a VM of engine "riscv" boots from: its image's, or, for a VM
// imported from an export file, the copies that came with it in its own directory (vms/<name>/boot/, named
// by boot.json), since its image may not exist on this host or may have been rebuilt differently here (a
// suspended guest's memory must resume with the kernel it was booted from).

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { findImage } from "../images/image-store.ts";

export interface BootFiles {
  readonly firmware: string;
  readonly kernel: string;
  readonly initrd: string;
}

/** The VM directory's subdirectory holding its own boot files. */
export const BOOT_DIR = "boot";
export const BOOT_MANIFEST = "boot.json";
const FILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** boot.json: the three files' names in the boot directory, and the image they came from (for people). */
export function bootManifest(files: BootFiles, image: string): string {
  const base = (p: string) => p.slice(p.lastIndexOf("/") + 1);
  return `${JSON.stringify({ image, firmware: base(files.firmware), kernel: base(files.kernel), initrd: base(files.initrd) }, null, 2)}\n`;
}

/**
 * The VM's own boot files when its directory has a boot.json (absolute paths), else undefined. boot.json
 * came from an export file: each name must be a plain file name in the boot directory.
 */
export async function vmBootFiles(vmDir: string): Promise<BootFiles | undefined> {
  const dir = join(vmDir, BOOT_DIR);
  let text: string;
  try {
    text = await readFile(join(dir, BOOT_MANIFEST), "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  const raw = JSON.parse(text) as Record<string, unknown>;
  const name = (key: keyof BootFiles) => {
    const value = raw[key];
    if (typeof value !== "string" || !FILE_NAME.test(value) || value === BOOT_MANIFEST)
      throw new Error(`${join(dir, BOOT_MANIFEST)}: '${key}' is not a file name in ${dir}`);
    return join(dir, value);
  };
  return { firmware: name("firmware"), kernel: name("kernel"), initrd: name("initrd") };
}

/** The files a VM boots from: its own (imported) ones, else its image's from the image cache. */
export async function bootFilesOf(vmDir: string, image: string): Promise<BootFiles> {
  const own = await vmBootFiles(vmDir);
  if (own) return own;
  const found = findImage(image);
  if (!found) throw new Error(`the image '${image}' is not built (build it with 'tsvm image build')`);
  return found;
}
