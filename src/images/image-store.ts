// The cache of built guest images: where it lives, what a built image is (ImageInfo), and finding,
// listing and copying them. A directory counts as an image only once its image.json exists, which the
// builder writes last, just before renaming the directory into place.
import { chmodSync, constants, copyFileSync, existsSync, readdirSync, readFileSync } from "node:fs";
import { homedir } from "node:os";
import { join } from "node:path";

/** A built guest image; every path is absolute. */
export interface ImageInfo {
  /** Recipe name, e.g. "default" (the directory images/<name>/ of the repository). */
  readonly name: string;
  /** The image's directory in the cache. */
  readonly dir: string;
  /** Linux `Image` (riscv64, uncompressed), to load at RAM base + 2 MiB. */
  readonly kernel: string;
  /** gzip-compressed cpio (newc) initramfs. */
  readonly initrd: string;
  /** Pristine ext4 root disk template (raw); copy it (copyDiskFor) before booting read-write. */
  readonly disk: string;
  /** OpenSBI fw_dynamic.bin, loaded at RAM base. */
  readonly firmware: string;
  /** When the build finished, ISO 8601. */
  readonly builtAt: string;
  /** sha256 (hex) of the recipe files, the builder's source and the Debian package versions used. */
  readonly recipeHash: string;
}

/** What image.json holds: file names relative to the image directory, plus build facts. */
export interface ImageManifest {
  readonly name: string;
  readonly kernel: string;
  readonly initrd: string;
  readonly disk: string;
  readonly firmware: string;
  readonly builtAt: string;
  readonly recipeHash: string;
  readonly buildSeconds: number;
  readonly versions: Record<string, string>;
}

export const IMAGE_MANIFEST = "image.json";

/** `${TSVM_CACHE:-${XDG_CACHE_HOME:-~/.cache}/tsvm}/images`. */
export function imagesCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  const tsvmCache = env.TSVM_CACHE || join(env.XDG_CACHE_HOME || join(homedir(), ".cache"), "tsvm");
  return join(tsvmCache, "images");
}

/** Directory name of an image in the cache: the recipe name and the first 16 hex digits of its hash. */
export function imageDirName(name: string, recipeHash: string): string {
  return `${name}-${recipeHash.slice(0, 16)}`;
}

/** The image in `dir`, or undefined when it is not a complete image. */
export function readImage(dir: string): ImageInfo | undefined {
  let manifest: ImageManifest;
  try {
    manifest = JSON.parse(readFileSync(join(dir, IMAGE_MANIFEST), "utf8")) as ImageManifest;
  } catch {
    return undefined;
  }
  const info: ImageInfo = {
    name: manifest.name,
    dir,
    kernel: join(dir, manifest.kernel),
    initrd: join(dir, manifest.initrd),
    disk: join(dir, manifest.disk),
    firmware: join(dir, manifest.firmware),
    builtAt: manifest.builtAt,
    recipeHash: manifest.recipeHash,
  };
  for (const file of [info.kernel, info.initrd, info.disk, info.firmware]) {
    if (!existsSync(file)) return undefined;
  }
  return info;
}

/** Every complete image in the cache, newest first. Temporary build directories start with "." and are skipped. */
export function listImages(cacheDir = imagesCacheDir()): ImageInfo[] {
  let entries: string[];
  try {
    entries = readdirSync(cacheDir);
  } catch {
    return [];
  }
  const images: ImageInfo[] = [];
  for (const entry of entries) {
    if (entry.startsWith(".")) continue;
    const image = readImage(join(cacheDir, entry));
    if (image) images.push(image);
  }
  // Code-unit order, not localeCompare: ISO 8601 times and paths need no collation, and the first
  // localeCompare of a process sets up ICU's collator (~70 ms of CPU in every VMM's start).
  const order = (x: string, y: string) => (x < y ? -1 : x > y ? 1 : 0);
  return images.sort((a, b) => order(b.builtAt, a.builtAt) || order(a.dir, b.dir));
}

/**
 * The newest complete image of that name in the cache, whatever its recipe hash (so a consumer keeps
 * working with the last good build); `buildImage` gives the one matching the current recipe.
 */
export function findImage(name: string, cacheDir = imagesCacheDir()): ImageInfo | undefined {
  return listImages(cacheDir).find((image) => image.name === name);
}

/**
 * Copies the image's pristine disk to `destPath` (a reflink where the file system can) and makes the copy
 * writable, so a VM may boot read-write without touching the cached template. Returns `destPath`.
 */
export function copyDiskFor(image: ImageInfo, destPath: string): string {
  copyFileSync(image.disk, destPath, constants.COPYFILE_FICLONE);
  chmodSync(destPath, 0o644);
  return destPath;
}
