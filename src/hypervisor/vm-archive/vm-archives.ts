// The Hypervisor's exports and imports of whole VMs (docs/export-format.md): planning and streaming one
// VM's export file, and recreating a VM from one under a name reserved while the file is read. The
// Hypervisor holds the exported VM and runs the import's operation; it lends the few steps an import needs
// (ImportHost), as it lends SnapshotVm to snapshots.ts.

import { randomUUID } from "node:crypto";
import type { DiskStore } from "../disk-store.ts";
import type { ImageCatalog } from "../hypervisor.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import type { OperationView } from "../operations.ts";
import type { VmPaths } from "../store.ts";
import type { VmRecord } from "../vm-record.ts";
import { writeArchive } from "./archive-writer.ts";
import { type ExportOptions, planVmExport } from "./vm-export.ts";
import { stageImport } from "./vm-import.ts";

/** What an import may ask of the Hypervisor. */
export interface ImportHost {
  /** Throws unless `name` is a valid VM name that no VM, unusable VM directory or import has. */
  checkNameFree(name: string): void;
  /** The engines this daemon runs VMs on. */
  engines(): readonly string[];
  /** Whether a VM of this host already has the id. */
  idTaken(id: string): boolean;
  /**
   * The cards the imported VM (the exported record, under the id it gets here) has on this host: its
   * private cards' networks checked and their addresses taken until `release` (PrivateNetworks
   * .cardsForImport). Throws when a card's network is missing here (unless `dropMissingNetworks`).
   */
  cardsFor(
    exported: VmRecord,
    vm: { readonly id: string; readonly name: string },
    options: { readonly dropMissingNetworks: boolean; readonly savedMemory: boolean },
  ): { readonly cards: VmRecord["networkInterfaces"]; readonly release: () => void };
  /**
   * Runs the insert operation of the imported VM: `commit` moves it into place, then the Hypervisor makes it
   * known (its slot, its disk held, its first event). Resolves with the operation, DONE. `commit`'s
   * `andThen` runs right after, while no disk garbage collection may run yet (a live move's VM, whose
   * active disk comes later).
   */
  insert(record: VmRecord, commit: (andThen?: () => Promise<void>) => Promise<void>): Promise<OperationView>;
}

/** What an import is asked for besides its file (Hypervisor.importVm). */
export interface ImportOptions {
  /** The VM's name here (default: the exported VM's). */
  readonly name?: string;
  /** Leave out the cards on private networks this host does not have, instead of refusing the import. */
  readonly dropMissingNetworks?: boolean;
  /** A live move's file: a RUNNING VM without its active disk (ImportTarget.live). */
  readonly live?: boolean;
}

export class VmArchives {
  /** Names taken by imports still reading their file (no VM of that name yet). */
  private readonly importing = new Set<string>();

  constructor(
    private readonly nodes: DiskStore,
    private readonly home: string,
    private readonly images: ImageCatalog,
    private readonly now: () => Date,
  ) {}

  /** Whether an import in flight has reserved `name`. */
  isImporting(name: string): boolean {
    return this.importing.has(name);
  }

  /** The export file of a VM at rest: its exact size and its bytes. The VM must stay at rest while read. */
  async export(
    record: VmRecord,
    paths: VmPaths,
    options: ExportOptions,
    /** Where its disk nodes are: this host's disks/ unless the VM is on the cluster's shared storage. */
    disksDir = this.nodes.dir,
  ): Promise<{ readonly bytes: number; readonly stream: AsyncIterable<Buffer> }> {
    const plan = await planVmExport(record, paths, disksDir, this.images, options, this.now());
    return { bytes: plan.bytes, stream: writeArchive(plan) };
  }

  /** See Hypervisor.importVm. */
  async import(
    input: AsyncIterable<Uint8Array>,
    options: ImportOptions,
    host: ImportHost,
  ): Promise<OperationView> {
    if (options.name !== undefined) host.checkNameFree(options.name);
    let reserved: string | undefined;
    let releaseCards = () => {};
    try {
      const staged = await stageImport(input, {
        home: this.home,
        now: this.now,
        live: options.live === true,
        accept: (manifest) => {
          const name = options.name ?? manifest.vm.name;
          host.checkNameFree(name);
          const engines = host.engines();
          if (!engines.includes(manifest.vm.engine))
            throw new HypervisorError(
              "invalid-engine",
              `the exported VM runs on the engine '${manifest.vm.engine.slice(0, 80)}', which this daemon does not have (available: ${engines.join(", ") || "none"}); nothing was created`,
            );
          // The same VM moved keeps its id, unless this host already has a VM with it (imported twice).
          const id = host.idTaken(manifest.vm.id) ? randomUUID() : manifest.vm.id;
          const { cards, release } = host.cardsFor(
            manifest.vm,
            { id, name },
            {
              dropMissingNetworks: options.dropMissingNetworks === true,
              savedMemory: manifest.files.some((f) => /^vm\/(?:snapshots\/[^/]+\/)?state\//.test(f.path)),
            },
          );
          releaseCards = release;
          this.importing.add(name);
          reserved = name;
          return { name, id, networkInterfaces: cards };
        },
      });
      // No garbage collection may run between the nodes' arrival in disks/ and the VM's that reaches them.
      return await host.insert(staged.record, (andThen) =>
        this.nodes.exclusive(async () => {
          await staged.commit();
          await andThen?.();
        }),
      );
    } finally {
      if (reserved !== undefined) this.importing.delete(reserved);
      releaseCards();
    }
  }
}
