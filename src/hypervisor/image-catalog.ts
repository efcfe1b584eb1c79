// The images a VM can be created from: the built images of the image cache (src/images), by name.

import { stat } from "node:fs/promises";
import { findImage, imagesCacheDir } from "../images/image-store.ts";
import { FileImageCatalog, type ImageCatalog } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import type { BootFiles } from "./vm-boot-files.ts";

export class ImageCacheCatalog implements ImageCatalog {
  private readonly extra: FileImageCatalog;
  /** Names only from the configuration's own keys: `constructor` or `toString` is never an image. */
  private readonly extraNames: ReadonlySet<string>;

  /** @param extra images by name that are plain disk files (from the daemon's config.json) */
  constructor(
    extra: Readonly<Record<string, string>> = {},
    private readonly cacheDir = imagesCacheDir(),
  ) {
    this.extra = new FileImageCatalog(extra);
    this.extraNames = new Set(Object.keys(extra));
  }

  check(image: string): void {
    if (!this.extraNames.has(image)) this.cached(image);
  }

  async diskTemplate(image: string): Promise<{ path: string; sizeMiB: number }> {
    if (this.extraNames.has(image)) return this.extra.diskTemplate(image);
    const disk = this.cached(image);
    return { path: disk, sizeMiB: Math.ceil((await stat(disk)).size / 1048576) };
  }

  bootFiles(image: string): BootFiles | undefined {
    if (this.extraNames.has(image)) return undefined;
    const found = findImage(image, this.cacheDir);
    return found && { firmware: found.firmware, kernel: found.kernel, initrd: found.initrd };
  }

  /** The disk of a built image of the cache; HypervisorError `invalid-image` when there is none. */
  private cached(image: string): string {
    const found = findImage(image, this.cacheDir);
    if (!found)
      throw new HypervisorError(
        "invalid-image",
        `the image '${image.slice(0, 80)}' is not built; build it with 'tsvm image build' (cache: ${this.cacheDir})`,
      );
    return found.disk;
  }
}
