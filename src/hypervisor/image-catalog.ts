// The images a VM can be created from: the built images of the image cache (src/images), by name.

import { stat } from "node:fs/promises";
import { findImage, imagesCacheDir } from "../images/image-store.ts";
import { FileImageCatalog, type ImageCatalog } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export class ImageCacheCatalog implements ImageCatalog {
  /** @param extra images by name that are plain disk files (from the daemon's config.json) */
  constructor(
    private readonly extra: Readonly<Record<string, string>> = {},
    private readonly cacheDir = imagesCacheDir(),
  ) {}

  async diskTemplate(image: string): Promise<{ path: string; sizeMiB: number }> {
    if (image in this.extra) return new FileImageCatalog(this.extra).diskTemplate(image);
    const found = findImage(image, this.cacheDir);
    if (!found)
      throw new HypervisorError(
        "invalid-image",
        `the image '${image.slice(0, 80)}' is not built; build it with 'tsvm image build' (cache: ${this.cacheDir})`,
      );
    return { path: found.disk, sizeMiB: Math.ceil((await stat(found.disk)).size / 1048576) };
  }
}
