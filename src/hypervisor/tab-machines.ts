// What the machine in a browser tab (the /machine page, docs/machine-in-browser.md) needs of the host: the
// image it boots (its files and the machine to build around them) and, for migration, a SUSPENDED VM's
// state and disk, and the tab's state taken back into such a VM.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import type { ImageCatalog } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import type { BootFiles } from "./vm-boot-files.ts";

/** The kernel command line of a machine booted in a tab (a VM's, without its identity). */
export const TAB_BOOTARGS = "console=ttyS0 earlycon=sbi";
/** The guest agent's virtio-console port: a server VM's machine has it, so the tab's has it too. */
export const TAB_CONSOLE_PORTS = ["org.tsvm.agent.0"] as const;
/** A fresh machine in a tab: one hart and 256 MiB, like `tsvm run`. */
const TAB_HARTS = 1;
const TAB_MEMORY_BYTES = 256 * 1048576;

/** The machine a tab builds; the shape of src/web/machine/machine-messages.ts TabMachineSpec. */
export interface TabMachineSpec {
  readonly harts: number;
  readonly memoryBytes: number;
  readonly bootargs: string;
  readonly consolePorts: readonly string[];
  readonly macs: readonly string[];
}

export type TabFile = "firmware" | "kernel" | "initrd" | "disk";
export const TAB_FILES: readonly TabFile[] = ["firmware", "kernel", "initrd", "disk"];

/** An image as a tab sees it. `hash` names the boot files' contents: a state runs only on the same ones. */
export interface TabImageView {
  readonly name: string;
  readonly hash: string;
  readonly spec: TabMachineSpec;
}

/** A file to send: its path and size. */
export interface TabFileSource {
  readonly path: string;
  readonly size: number;
}

/** SHA-256 over the three boot files, remembered per path, size and mtime (they are tens of MiB). */
class BootFilesHash {
  private readonly known = new Map<string, string>();

  async of(files: BootFiles): Promise<string> {
    const parts = [files.firmware, files.kernel, files.initrd];
    const stats = await Promise.all(parts.map((p) => stat(p)));
    const key = parts.map((p, i) => `${p}:${stats[i]!.size}:${stats[i]!.mtimeMs}`).join("|");
    const cached = this.known.get(key);
    if (cached) return cached;
    const hash = createHash("sha256");
    for (const p of parts) {
      // Each file's length first: the concatenation alone would not say where one ends.
      hash.update(`${(await stat(p)).size}\n`);
      for await (const chunk of createReadStream(p)) hash.update(chunk as Buffer);
    }
    const hex = hash.digest("hex").slice(0, 16);
    this.known.set(key, hex);
    return hex;
  }
}

export class TabMachines {
  private readonly hashes = new BootFilesHash();

  constructor(
    private readonly images: ImageCatalog,
    private readonly defaultImage: string,
  ) {}

  /** The default image as a fresh machine in a tab boots it. */
  async image(): Promise<TabImageView> {
    const files = this.bootFiles(this.defaultImage);
    return {
      name: this.defaultImage,
      hash: await this.hashes.of(files),
      spec: {
        harts: TAB_HARTS,
        memoryBytes: TAB_MEMORY_BYTES,
        bootargs: TAB_BOOTARGS,
        consolePorts: [...TAB_CONSOLE_PORTS],
        macs: [],
      },
    };
  }

  /** One of the default image's files: a boot file, or its template disk (raw). */
  async imageFile(file: TabFile): Promise<TabFileSource> {
    const path =
      file === "disk"
        ? (await this.images.diskTemplate(this.defaultImage)).path
        : this.bootFiles(this.defaultImage)[file];
    return { path, size: (await stat(path)).size };
  }

  private bootFiles(image: string): BootFiles {
    this.images.check(image);
    const files = this.images.bootFiles?.(image);
    if (!files)
      throw new HypervisorError(
        "invalid-image",
        `the image '${image}' has no kernel of its own (a plain disk file): a tab cannot boot it`,
      );
    return files;
  }
}
