// What the machine in a browser tab (the /machine page, docs/machine-in-browser.md) needs of the host: the
// image it boots (its files and the machine to build around them) and, for migration, a SUSPENDED VM's
// state and disk, and the tab's state taken back into such a VM.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { join } from "node:path";
import type { VmRecord } from "./vm-record.ts";
import { GUEST_AGENT_PORT_NAME } from "../engines/riscv/guest-agent-client.ts";
import type { RiscvEngineOptions } from "../engines/riscv/riscv-engine.ts";
import { activeDiskOf, openActiveDisk } from "./disk-store.ts";
import type { ImageCatalog } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import type { VmPaths } from "./store.ts";
import { identityBootArgs, identityOf } from "./guest-identity.ts";
import { BOOTARGS } from "./riscv-guest.ts";
import { type BootFiles, bootFilesOf } from "./vm-boot-files.ts";

/** The kernel command line of a machine booted in a tab: a VM's, without its identity. */
const TAB_BOOTARGS = BOOTARGS;
/** The guest agent's virtio-console port: a server VM's machine has it, so the tab's has it too. */
const TAB_CONSOLE_PORTS = [GUEST_AGENT_PORT_NAME];
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

/** What TabMachines needs of the hypervisor: a SUSPENDED VM held at rest while `work` runs. */
export type HoldSuspended = <T>(
  name: string,
  work: (record: VmRecord, paths: VmPaths) => Promise<T>,
) => Promise<T>;

/** A SUSPENDED VM as a tab sees it: the machine to build, the image, and its state's files. */
export interface TabVmView extends TabImageView {
  readonly vm: string;
  readonly vmId: string;
  /** The image the VM was created from (its boot files may be its own copies: `hash` is what counts). */
  readonly image: string;
}

export class TabMachines {
  private readonly hashes = new BootFilesHash();

  constructor(
    private readonly images: ImageCatalog,
    private readonly defaultImage: string,
    readonly holdSuspended: HoldSuspended,
  ) {}

  /** The hash naming a VM's boot files (tab-state-upload.ts checks a state's against it). */
  vmImageHash(record: VmRecord, paths: VmPaths): Promise<string> {
    return bootFilesOf(paths.dir, record.image).then((files) => this.hashes.of(files));
  }

  /** A SUSPENDED VM's machine as a tab must build it to run its state. */
  vm(name: string): Promise<TabVmView> {
    return this.holdSuspended(name, async (record, paths) => ({
      vm: record.name,
      vmId: record.id,
      name: record.image,
      image: record.image,
      hash: await this.vmImageHash(record, paths),
      spec: {
        harts: record.cpus,
        memoryBytes: record.memoryMiB * 1048576,
        bootargs: `${TAB_BOOTARGS} ${identityBootArgs(identityOf(record))}`,
        consolePorts: [...TAB_CONSOLE_PORTS],
        macs: (record.networkInterfaces ?? []).map((nic) => nic.mac),
      },
    }));
  }

  /** A SUSPENDED VM's boot file, held at rest while `send` streams it. */
  vmBootFile<T>(name: string, file: Exclude<TabFile, "disk">, send: (file: TabFileSource) => Promise<T>) {
    return this.holdSuspended(name, async (record, paths) => {
      const path = (await bootFilesOf(paths.dir, record.image))[file];
      return send({ path, size: (await stat(path)).size });
    });
  }

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

  /** Streams file `file` of a SUSPENDED VM's saved state (manifest.json, state.json or section-N.bin). */
  vmStateFile<T>(name: string, file: string, send: (file: TabFileSource) => Promise<T>): Promise<T> {
    if (!STATE_FILE.test(file))
      throw new HypervisorError("not-found", `a saved state has no file '${file.slice(0, 100)}'`);
    return this.holdSuspended(name, async (_record, paths) => {
      const path = join(paths.stateDir, file);
      let size: number;
      try {
        size = (await stat(path)).size;
      } catch {
        throw new HypervisorError("not-found", `the saved state of VM '${name}' has no file '${file}'`);
      }
      return send({ path, size });
    });
  }

  /** Streams a SUSPENDED VM's disk as the guest sees it (raw, read through its qcow2 chain). */
  vmDisk<T>(name: string, send: (size: number, bytes: AsyncIterable<Uint8Array>) => Promise<T>): Promise<T> {
    return this.holdSuspended(name, async (_record, paths) => {
      const disk = await openActiveDisk(activeDiskOf(paths.dir));
      try {
        return await send(disk.sizeBytes, readWhole(disk));
      } finally {
        await disk.close();
      }
    });
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

/** The files a saved state has. */
type BlockBackend = NonNullable<RiscvEngineOptions["disks"]>[number];

const STATE_FILE = /^(?:manifest\.json|state\.json|section-\d{1,6}\.bin)$/;
const DISK_CHUNK = 1 << 20;

/** A disk's bytes front to back, a MiB at a time. */
async function* readWhole(disk: BlockBackend): AsyncIterable<Uint8Array> {
  for (let offset = 0; offset < disk.sizeBytes; offset += DISK_CHUNK) {
    const chunk = new Uint8Array(Math.min(DISK_CHUNK, disk.sizeBytes - offset));
    await new Promise<void>((resolve, reject) =>
      disk.read(offset, chunk, (e) =>
        e === null ? resolve() : reject(new HypervisorError("internal", `reading the disk failed: ${e}`)),
      ),
    );
    yield chunk;
  }
}
