// Opens a disk, raw or qcow2 with its whole backing chain, as a DiskBackend: the top file writable unless
// asked otherwise, every backing file read-only, the layers opened bottom-up so each gets its backing.

import type { DiskBackend } from "./disk-backend.ts";
import { LayerDiskBackend } from "./disk-backend.ts";
import { walkChain } from "./disk-chain.ts";
import { DiskFile } from "./disk-file.ts";
import type { DiskLayer } from "./disk-layer.ts";
import { probeDisk } from "./probe-disk.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import { AUTOCLEAR_TSVM_CLEAN } from "./qcow2-header.ts";
import { Qcow2Image, type Qcow2OpenOptions } from "./qcow2-image.ts";
import { RawLayer } from "./raw-layer.ts";

export interface OpenDiskOptions extends Qcow2OpenOptions {
  readonly readOnly?: boolean;
}

export async function openDisk(path: string, options: OpenDiskOptions = {}): Promise<DiskBackend> {
  return new LayerDiskBackend(await openLayers(path, options));
}

/** The top layer of the disk at `path`, its backing layers below it. */
export async function openLayers(path: string, options: OpenDiskOptions = {}): Promise<DiskLayer> {
  const links = await walkChain(path, true, !options.readOnly);
  let layer: DiskLayer | null = null;
  let opened = 0;
  try {
    for (let i = links.length - 1; i >= 0; i--) {
      const { file, probed } = links[i]!;
      if (probed.header === null) {
        if (i === 0 && file.size % 512 !== 0)
          throw new Qcow2Error(
            "bad-disk-image",
            `disk image ${file.path} is ${file.size} bytes, not a whole number of 512-byte sectors`,
          );
        layer = new RawLayer(file, file.size);
      } else layer = await Qcow2Image.open(file, probed.header, layer, i === 0 ? options : {});
      opened++;
    }
  } catch (err) {
    // The layers opened so far close their backing layers; the files not yet wrapped close here.
    await layer?.close();
    for (let i = links.length - 1 - opened; i >= 0; i--) await links[i]!.file.close();
    throw err;
  }
  return layer!;
}

/**
 * Gives back the clusters a writer killed mid-write leaked in the qcow2 file at `path` (its backing files
 * are not touched, nor opened): a file not marked clean is opened for writing, which repairs it, and closed,
 * which marks it; a marked one costs one header read. For whoever saw the writer die, so the file is leak-free before anyone looks at it.
 * Returns how many clusters came back (0 for a raw file or one closed cleanly). With `evenIfMarkedClean`
 * the mark is not trusted (a file from elsewhere, e.g. an import, may carry it with refcounts that are not
 * exact): every reference is counted, and refcounts lower than their references refuse the file.
 */
export async function reclaimLeaks(
  path: string,
  options: { readonly evenIfMarkedClean?: boolean } = {},
): Promise<number> {
  const file = await DiskFile.open(path, false);
  let image: Qcow2Image;
  try {
    const { header } = await probeDisk(file, null);
    const clean = header !== null && (header.autoclearFeatures & AUTOCLEAR_TSVM_CLEAN) !== 0;
    // A raw file, or one closed cleanly: nothing to give back, and nothing written.
    if (header === null || (clean && !options.evenIfMarkedClean)) {
      await file.close();
      return 0;
    }
    const unmarked = clean
      ? { ...header, autoclearFeatures: header.autoclearFeatures & ~AUTOCLEAR_TSVM_CLEAN }
      : header;
    image = await Qcow2Image.open(file, unmarked, null);
  } catch (err) {
    await file.close();
    throw err;
  }
  await image.close();
  return image.reclaimedClusters;
}
