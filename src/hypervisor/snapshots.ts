// A VM's snapshots, as a tree (docs/hypervisor.md "Snapshots"): create (a running VM with its memory and a
// pause of milliseconds; a stopped one with its disk; a suspended one with its disk and saved memory),
// list, restore and delete. The Hypervisor runs each in the VM's operation queue and lends it the few
// lifecycle steps a restore needs (SnapshotVm); the disk work is the DiskStore's.
//
//   vms/<name>/snapshots.json               the tree (snapshot-tree.ts)
//   vms/<name>/snapshots/<id>/state/        a snapshot's memory (snapshot-file.ts format, files mode 0444)
//   vms/<name>/snapshots/.tmp-<id>/         one being written (removed by recovery)
//   disks/<id>.qcow2                        its disk: the VM's active disk frozen at that moment

import { randomBytes } from "node:crypto";
import { link, mkdir, readdir, rename, rm, stat } from "node:fs/promises";
import { basename, join } from "node:path";
import { SNAPSHOT_NAME_PATTERN, type Snapshot, type SnapshotEntry } from "../api/schemas/snapshot-schemas.ts";
import { diskChain } from "../engines/backends/qcow2/index.ts";
import { crashPoint } from "./crash-point.ts";
import {
  activeDiskOf,
  type DiskStore,
  freezeActiveDisk,
  LEGACY_DISK,
  recoverActiveDisk,
  replaceActiveDisk,
} from "./disk-store.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { findByName, readTree, withSnapshot, withoutSnapshot, writeTree } from "./snapshot-tree.ts";
import type { VmPaths } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";
import type { VmmHandle } from "./vmm.ts";

const SNAPSHOTS_DIR = "snapshots";
const TEMP_PREFIX = ".tmp-";
/** diskChain refuses chains deeper than 64; each snapshot adds a layer to the active disk's chain. */
const MAX_CHAIN_DEPTH = 64;

/** What a snapshot operation may do to its VM, lent by the Hypervisor (whose queue it runs in). */
export interface SnapshotVm {
  readonly record: VmRecord;
  readonly paths: VmPaths;
  readonly vmm: VmmHandle | undefined;
  /** → STOPPING → TERMINATED: a running guest is forced off at once, a saved state discarded. */
  stop(reason: string): Promise<void>;
  /**
   * From TERMINATED, with the saved state in place: → PROVISIONING → STAGING → RUNNING restoring it, the
   * record patched (the snapshot's machine type) at PROVISIONING.
   */
  resumeSaved(reason: string, patch: Partial<VmRecord>): Promise<void>;
}

/** A snapshot as a clone's source: see Snapshots.cloneSource. */
export interface SnapshotCloneSource {
  readonly node: string;
  readonly stateDir: string | null;
  readonly machineType: string;
  readonly cpus: number;
  readonly memoryMiB: number;
}

export class SnapshotNotFoundError extends HypervisorError {
  constructor(vm: string, name: string) {
    super("not-found", `the VM '${vm}' has no snapshot '${name.slice(0, 80)}'`);
  }
}

export function checkSnapshotName(name: string): void {
  if (!SNAPSHOT_NAME_PATTERN.test(name))
    throw new HypervisorError(
      "invalid-name",
      `'${name.slice(0, 80)}' is not a valid snapshot name: use 1 to 63 lowercase letters, digits and ` +
        "hyphens, starting with a letter and not ending with a hyphen",
    );
}

/** A failure while taking a snapshot: the VM and the other snapshots are as they were. */
function snapshotFailed(vm: string, name: string, e: unknown): HypervisorError {
  if (e instanceof HypervisorError && e.code !== "vmm-error") return e;
  return new HypervisorError(
    "snapshot-failed",
    `could not take snapshot '${name}' of VM '${vm}' (${(e as Error).message}); the VM and its other snapshots are unchanged`,
  );
}

async function allocatedBytes(path: string): Promise<number> {
  const s = await stat(path).catch(() => undefined);
  if (!s) return 0;
  if (!s.isDirectory()) return s.blocks * 512;
  let total = 0;
  for (const e of await readdir(path)) total += await allocatedBytes(join(path, e));
  return total;
}

/** Hard-links the files of `from` into the new directory `to` (read-only: a saved state is never rewritten). */
async function linkTree(from: string, to: string): Promise<void> {
  await mkdir(to);
  for (const e of await readdir(from, { withFileTypes: true })) {
    if (e.isDirectory()) await linkTree(join(from, e.name), join(to, e.name));
    else await link(join(from, e.name), join(to, e.name));
  }
}

export class Snapshots {
  /** `nodesOf`: where a VM's disk nodes are (the host's disks/, or the shared storage's for a VM there). */
  constructor(private readonly nodesOf: (vm: VmRecord) => DiskStore) {}

  private dirOf(paths: VmPaths): string {
    return join(paths.dir, SNAPSHOTS_DIR);
  }

  /** The snapshots of a VM, oldest first. */
  async list(vm: VmRecord, paths: VmPaths): Promise<Snapshot[]> {
    const tree = await readTree(paths.dir, vm.id);
    const names = new Map(tree.snapshots.map((s) => [s.id, s.name]));
    const out: Snapshot[] = [];
    for (const s of tree.snapshots) {
      const node = this.nodesOf(vm).nodePath(s.diskNode);
      out.push({
        kind: "tsvm#snapshot",
        name: s.name,
        id: s.id,
        instance: vm.name,
        parent: s.parentId === null ? null : (names.get(s.parentId) ?? null),
        current: tree.currentId === s.id,
        description: s.description,
        creationTimestamp: s.creationTimestamp,
        memory: s.memory,
        vmStatus: s.vmStatus,
        machineType: s.machineType,
        diskSizeBytes: node ? await allocatedBytes(node) : 0,
        memorySizeBytes: s.memory ? await allocatedBytes(join(this.dirOf(paths), s.id)) : 0,
      });
    }
    return out.sort((a, b) => a.creationTimestamp.localeCompare(b.creationTimestamp));
  }

  async get(vm: VmRecord, paths: VmPaths, name: string): Promise<Snapshot> {
    const found = (await this.list(vm, paths)).find((s) => s.name === name);
    if (!found) throw new SnapshotNotFoundError(vm.name, name);
    return found;
  }

  /** Refuses a name that is invalid or taken, before an operation is queued (the operation checks again). */
  async checkNew(vm: VmRecord, paths: VmPaths, name: string): Promise<void> {
    checkSnapshotName(name);
    if (findByName(await readTree(paths.dir, vm.id), name))
      throw new HypervisorError("already-exists", `the VM '${vm.name}' already has a snapshot '${name}'`);
  }

  async checkExisting(vm: VmRecord, paths: VmPaths, name: string): Promise<void> {
    checkSnapshotName(name);
    if (!findByName(await readTree(paths.dir, vm.id), name)) throw new SnapshotNotFoundError(vm.name, name);
  }

  /**
   * Takes snapshot `name`. RUNNING: the VMM saves the guest's memory, freezing the disk while the guest is
   * paused, and the guest runs on; SUSPENDED: the disk is frozen and the saved state linked; TERMINATED:
   * the disk alone. Returns what happened, for the operation's status message.
   */
  async create(vm: SnapshotVm, name: string, description: string): Promise<string> {
    const { record, paths } = vm;
    await this.checkNew(record, paths, name);
    const tree = await readTree(paths.dir, record.id);
    // An older VM's raw disk.img is one layer (never probed: its guest wrote its first bytes).
    const active = activeDiskOf(paths.dir);
    const depth = basename(active) === LEGACY_DISK ? 1 : (await diskChain(active)).length;
    if (depth >= MAX_CHAIN_DEPTH)
      throw new HypervisorError(
        "snapshot-limit",
        `the disk of VM '${record.name}' has ${depth} layers, the most a chain may have; no further snapshot can be taken`,
      );
    const id = randomBytes(8).toString("hex");
    const snapDir = this.dirOf(paths);
    await mkdir(snapDir, { recursive: true });
    // What an earlier snapshot left half-written (its daemon died meanwhile): this VM's queue runs no other.
    for (const e of await readdir(snapDir))
      if (e.startsWith(TEMP_PREFIX)) await rm(join(snapDir, e), { recursive: true, force: true });
    const temp = join(snapDir, `${TEMP_PREFIX}${id}`);
    const status = record.status;
    const memory = status !== "TERMINATED";
    let message: string;
    const disks = this.nodesOf(record);
    return disks.exclusive(async () => {
      try {
        await mkdir(temp);
        if (status === "RUNNING") {
          const vmm = vm.vmm;
          if (!vmm)
            throw new HypervisorError(
              "not-running",
              `the VMM of '${record.name}' has exited, so no snapshot was taken; its exit is being handled`,
            );
          const { pausedMs } = await vmm.snapshot({
            stateDir: join(temp, "state"),
            nodeId: id,
            disksDir: disks.dir,
          });
          message = `snapshot '${name}' taken with the guest's memory; the guest was paused ${pausedMs} ms`;
        } else {
          await freezeActiveDisk(paths.dir, disks.dir, id, "createSnapshot");
          if (memory) await linkTree(paths.stateDir, join(temp, "state"));
          message = `snapshot '${name}' taken of the ${memory ? "disk and saved memory" : "disk"}`;
        }
        crashPoint("createSnapshot:after-freeze");
        if (memory) await rename(temp, join(snapDir, id));
        else await rm(temp, { recursive: true, force: true });
        const entry: SnapshotEntry = {
          id,
          name,
          parentId: tree.currentId,
          description,
          creationTimestamp: new Date().toISOString(),
          diskNode: id,
          memory,
          vmStatus: status,
          machineType: record.machineType,
          cpus: record.cpus,
          memoryMiB: record.memoryMiB,
        };
        await writeTree(paths.dir, withSnapshot(tree, entry));
        crashPoint("createSnapshot:after-record");
        return message;
      } catch (e) {
        // The frozen node (if the freeze happened) stays: the active disk's chain reaches it.
        await rm(temp, { recursive: true, force: true });
        await rm(join(snapDir, id), { recursive: true, force: true });
        throw snapshotFailed(record.name, name, e);
      }
    });
  }

  /**
   * Makes the VM what it was at snapshot `name`: its disk, and with memory its running guest (the VM ends
   * RUNNING). A disk-only snapshot leaves the VM TERMINATED, as it was when taken (a running VM is
   * stopped: its guest and disk are replaced).
   */
  async restore(vm: SnapshotVm, name: string): Promise<string> {
    const { record, paths } = vm;
    const tree = await readTree(paths.dir, record.id);
    const entry = findByName(tree, name);
    if (!entry) throw new SnapshotNotFoundError(record.name, name);
    const disks = this.nodesOf(record);
    const node = disks.nodePath(entry.diskNode);
    const saved = join(this.dirOf(paths), entry.id, "state");
    if (!node || (entry.memory && !(await stat(saved).catch(() => undefined))))
      throw new HypervisorError(
        "bad-state",
        `snapshot '${name}' of VM '${record.name}' is incomplete: its ${node ? "saved memory" : "disk node"} is missing`,
      );
    if (record.status !== "TERMINATED")
      await vm.stop(`restoring snapshot '${name}': the current guest is discarded`);
    await disks.exclusive(async () => {
      await replaceActiveDisk(paths.dir, node);
      crashPoint("restoreSnapshot:after-disk-replaced");
      await writeTree(paths.dir, { ...tree, currentId: entry.id });
      await disks.collectGarbage();
    });
    if (!entry.memory) return `restored the disk of snapshot '${name}'; the VM is TERMINATED`;
    const temp = join(paths.dir, `${TEMP_PREFIX}state-${randomBytes(6).toString("hex")}`);
    await rm(paths.stateDir, { recursive: true, force: true });
    try {
      await linkTree(saved, temp);
      await rename(temp, paths.stateDir);
    } catch (e) {
      await rm(temp, { recursive: true, force: true });
      throw e;
    }
    crashPoint("restoreSnapshot:after-state-linked");
    await vm.resumeSaved(`restoring snapshot '${name}'`, {
      machineType: entry.machineType,
      cpus: entry.cpus,
      memoryMiB: entry.memoryMiB,
    });
    return `restored snapshot '${name}' with its memory; the guest runs on from that moment`;
  }

  /** Removes snapshot `name`; its children take its parent, and the disk nodes no longer reached go. */
  async delete(vm: SnapshotVm, name: string): Promise<string> {
    const { record, paths } = vm;
    const tree = await readTree(paths.dir, record.id);
    const entry = findByName(tree, name);
    if (!entry) throw new SnapshotNotFoundError(record.name, name);
    const disks = this.nodesOf(record);
    return disks.exclusive(async () => {
      await writeTree(paths.dir, withoutSnapshot(tree, entry));
      await rm(join(this.dirOf(paths), entry.id), { recursive: true, force: true });
      const removed = await disks.collectGarbage();
      return `deleted snapshot '${name}'; ${removed.length} disk layer(s) no longer used were removed`;
    });
  }

  /**
   * What a clone of snapshot `name` starts from (clones.ts): its disk node, its saved memory (null for a
   * disk-only snapshot) and the machine shape it was taken with. The files are shared, never changed.
   */
  async cloneSource(vm: VmRecord, paths: VmPaths, name: string): Promise<SnapshotCloneSource> {
    checkSnapshotName(name);
    const entry = findByName(await readTree(paths.dir, vm.id), name);
    if (!entry) throw new SnapshotNotFoundError(vm.name, name);
    const node = this.nodesOf(vm).nodePath(entry.diskNode);
    const stateDir = entry.memory ? join(this.dirOf(paths), entry.id, "state") : null;
    if (!node || (stateDir !== null && !(await stat(stateDir).catch(() => undefined))))
      throw new HypervisorError(
        "bad-state",
        `snapshot '${name}' of VM '${vm.name}' is incomplete: its ${node ? "saved memory" : "disk node"} is missing`,
      );
    const { machineType, cpus, memoryMiB } = entry;
    return { node, stateDir, machineType, cpus, memoryMiB };
  }

  /**
   * Settles what a crash left of snapshots in a VM's directory (no VMM may run for it): an interrupted
   * freeze or restore of its disk, snapshots half-written or deleted from the list but not from disk.
   */
  async recover(vm: VmRecord, paths: VmPaths): Promise<string[]> {
    const done = await recoverActiveDisk(paths.dir);
    const dir = this.dirOf(paths);
    const entries = await readdir(dir).catch(() => [] as string[]);
    if (entries.length === 0) return done;
    let listed: Set<string>;
    try {
      listed = new Set((await readTree(paths.dir, vm.id)).snapshots.map((s) => s.id));
    } catch {
      return done; // an unusable list: nothing is removed on its word
    }
    for (const e of entries) {
      if (listed.has(e)) continue;
      await rm(join(dir, e), { recursive: true, force: true });
      done.push(`removed the files of a snapshot that is not in the list (${SNAPSHOTS_DIR}/${e})`);
    }
    return done;
  }
}
