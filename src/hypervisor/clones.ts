// Clones: a new VM made from a stopped or suspended VM, or from one of its snapshots, that shares the
// source's unchanged disk data (a qcow2 overlay on a frozen disk node, disk-store.ts) and its saved memory
// (hard links), under a new name and a new identity (guest-identity.ts). The Hypervisor runs the lifecycle
// (the clone's operation, the source's queue, booting or resuming it) and lends the few steps making the
// files needs (CloneVm); this module checks the request, writes the new record and makes the new VM's files.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, link, mkdir, readdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { InsertInstanceRequest } from "../api/schemas/vm-schemas.ts";
import { diskChain, hasOwnData, MAX_CHAIN_DEPTH, readDiskInfo } from "../engines/backends/qcow2/index.ts";
import { crashPoint } from "./crash-point.ts";
import type { DiskAdmission } from "./disk-admission.ts";
import { activeDiskOf, type DiskStore, freezeActiveDisk, newNodeId } from "./disk-store.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { hasNatCard, interfacesForCopy } from "./network-interfaces.ts";
import { forwardsForRequest } from "./port-forwards.ts";
import type { Snapshots } from "./snapshots.ts";
import { syncDir, type VmPaths } from "./store.ts";
import { newRecordBasics, type VmRecord } from "./vm-record.ts";

/** The fields a clone takes from its source: giving them too is refused rather than silently ignored. */
const SOURCE_FIELDS = ["machineType", "cpus", "memoryMiB", "image", "engine", "networkInterfaces"] as const;

/** Refuses a clone request that names what only a new VM from an image can choose. */
export function checkCloneRequest(req: InsertInstanceRequest): void {
  if (req.sourceInstance === undefined) {
    if (req.sourceSnapshot !== undefined)
      throw new HypervisorError(
        "invalid-argument",
        "sourceSnapshot names a snapshot of the VM given as sourceInstance; give sourceInstance too",
      );
    return;
  }
  const given = SOURCE_FIELDS.filter((f) => req[f] !== undefined);
  if (given.length > 0)
    throw new HypervisorError(
      "invalid-argument",
      `a clone has its source's machine type, image, engine and networks: leave out ${given.join(", ")} (change the machine type afterwards with setMachineType)`,
    );
}

/**
 * The record of clone `req.name` of `source`: the source's machine type, disk size, image and engine, the
 * request's (else the source's) scheduling, a new id and a new identity, PROVISIONING. Its network cards are
 * on the source's networks, with new MACs (none of `takenMacs`); its forwards are the request's, none by
 * default (the source's host ports are the source's).
 */
export function cloneRecord(
  source: VmRecord,
  req: InsertInstanceRequest,
  at: string,
  takenMacs: ReadonlySet<string> = new Set(),
): VmRecord {
  const networkInterfaces = interfacesForCopy(source.networkInterfaces, takenMacs);
  const from = req.sourceSnapshot
    ? `clone of '${source.name}' (snapshot '${req.sourceSnapshot}')`
    : `clone of '${source.name}'`;
  return {
    ...newRecordBasics(req.name, at, `insert: ${from}, resources reserved`),
    machineType: source.machineType,
    cpus: source.cpus,
    memoryMiB: source.memoryMiB,
    diskMiB: source.diskMiB,
    image: source.image,
    engine: source.engine,
    automaticRestart: req.automaticRestart ?? source.automaticRestart,
    ...((req.onHostMaintenance ?? source.onHostMaintenance) === undefined
      ? {}
      : { onHostMaintenance: req.onHostMaintenance ?? source.onHostMaintenance }),
    cpuCapPercent: req.cpuCapPercent === undefined ? source.cpuCapPercent : req.cpuCapPercent,
    cpuWeight: req.cpuWeight ?? source.cpuWeight,
    // Its disk is an overlay on its source's nodes: on shared storage when the source's are.
    ...(source.sharedStorage ? { sharedStorage: true } : {}),
    ...(networkInterfaces === undefined ? {} : { networkInterfaces }),
    forwards: forwardsForRequest(req.forwards, hasNatCard({ networkInterfaces })),
  };
}

/**
 * Gives `toDir` (which must not exist) the saved state in `fromDir`: every file hard-linked (a saved state's
 * files are written once and never changed in place, and a resume removes its own links only), copied
 * where a link cannot be made (another filesystem). Assembled under a temp name beside `toDir` and renamed
 * into place, so a crash leaves the whole state or none (the store removes `.tmp-` leftovers).
 */
export async function shareSavedState(fromDir: string, toDir: string): Promise<void> {
  const temp = join(dirname(toDir), `.tmp-clone-state-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(temp, { mode: 0o700 });
    for (const entry of await readdir(fromDir, { withFileTypes: true })) {
      if (!entry.isFile())
        throw new Error(`the saved state ${fromDir} holds '${entry.name}', which is not a file`);
      const from = join(fromDir, entry.name);
      const to = join(temp, entry.name);
      await link(from, to).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== "EXDEV" && e.code !== "EPERM" && e.code !== "EMLINK") throw e;
        await copyFile(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      });
    }
    await syncDir(temp);
    await rename(temp, toDir);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  await syncDir(dirname(toDir));
}

/** What making a clone's files may do, lent by the Hypervisor (it runs in the source's queue). */
export interface CloneVm {
  /** The clone's record; set when it takes its snapshot's machine type. */
  record: VmRecord;
  readonly paths: VmPaths;
  readonly source: { readonly record: VmRecord; readonly paths: VmPaths };
  /** Refuses (checkAdmission) the clone's vCPUs and memory when the host cannot take them beside the rest. */
  admit(cpus: number, memoryMiB: number): void;
  /** Creates the clone's directory with its record (record-write-failed). */
  createDirectory(): Promise<void>;
  /** Removes the clone's directory again. */
  removeDirectory(): Promise<void>;
  /** Removes the disk nodes nothing reaches any more (never throws). */
  collectGarbage(): Promise<void>;
}

export class Clones {
  constructor(
    /** Where a VM's disk nodes are (the host's disks/, or the shared storage's for a VM there). */
    private readonly nodesOf: (vm: VmRecord) => DiskStore,
    private readonly disks: DiskAdmission,
    private readonly snapshots: Snapshots,
  ) {}

  /**
   * Writes the clone's directory, its active disk (an overlay on the source's disk frozen now, or on the
   * snapshot's node) and its saved state (linked: a clone of a SUSPENDED VM or of a memory snapshot).
   * Returns whether the clone resumes from a saved state.
   */
  async makeFiles(vm: CloneVm, snapshot: string | undefined): Promise<boolean> {
    const { source, paths } = vm;
    const from = source.paths;
    const taken =
      snapshot === undefined ? undefined : await this.snapshots.cloneSource(source.record, from, snapshot);
    if (taken && (taken.cpus !== vm.record.cpus || taken.memoryMiB !== vm.record.memoryMiB)) {
      // The snapshot was taken with another machine type than its VM has now: the clone has the snapshot's.
      vm.admit(taken.cpus, taken.memoryMiB);
      const { machineType, cpus, memoryMiB } = taken;
      vm.record = { ...vm.record, machineType, cpus, memoryMiB };
    }
    const savedState = taken ? taken.stateDir : source.record.status === "SUSPENDED" ? from.stateDir : null;
    // The node the clone's disk goes on: the snapshot's; the source's active disk's backing when that disk
    // has nothing of its own yet (written by no guest since it was made or frozen); else the source's
    // active disk frozen now, one more layer under it (up to the chain limit).
    const active = activeDiskOf(from.dir);
    const unwritten =
      taken || (await hasOwnData(active)) ? undefined : (await readDiskInfo(active)).backing?.path;
    const depth = taken || unwritten ? 0 : (await diskChain(active)).length;
    if (depth >= MAX_CHAIN_DEPTH)
      throw new HypervisorError(
        "snapshot-limit",
        `the disk of VM '${source.record.name}' has ${depth} layers, the most a chain may have; no further clone of its present disk can be made (clone one of its snapshots instead)`,
      );
    // The clone's overlay may grow to the whole disk; its state is linked, it costs nothing more.
    const release = await this.disks.admit(vm.record.name, vm.record.diskMiB, paths.disk);
    try {
      await vm.createDirectory();
      crashPoint("insert:after-record");
      try {
        // A clone of a VM on shared storage is there too (cloneRecord), its nodes with its source's.
        const nodes = this.nodesOf(source.record);
        await nodes.exclusive(async () => {
          // Freezing leaves the source's disk as it was, only in two layers: its guest sees no change.
          const node =
            taken?.node ?? unwritten ?? (await freezeActiveDisk(from.dir, nodes.dir, newNodeId(), "clone"));
          await nodes.createOverlay(paths.disk, node);
        });
        if (savedState !== null) await shareSavedState(savedState, paths.stateDir);
      } catch (e) {
        await vm.removeDirectory();
        await vm.collectGarbage();
        throw new HypervisorError(
          "disk-copy-failed",
          `could not make the disk of clone '${vm.record.name}' of '${source.record.name}' (${(e as Error).message}); nothing was created and '${source.record.name}' is unchanged`,
        );
      }
    } catch (e) {
      release();
      throw e;
    }
    return savedState !== null;
  }
}
