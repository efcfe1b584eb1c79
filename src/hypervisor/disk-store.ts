// The disk nodes of a data directory (docs/hypervisor.md "Disks"): immutable qcow2 (or, frozen from an old
// VM, raw) files in $TSVM_HOME/disks, each VM's active disk a qcow2 overlay backed by one of them, the
// base node of each image converted once, freezing, and garbage collection by scanning chains.
//
//   disks/<id>.qcow2           a node (mode 0444): an image's base, or a frozen layer (snapshot, clone source)
//   disks/<id>.raw             a frozen raw disk.img of a VM made before qcow2 disks (same rules)
//   vms/<name>/disk.qcow2      the active disk, backing "../../disks/<id>.qcow2"
//   vms/<name>/disk.qcow2.new  a freeze's or restore's new active disk, before the rename that commits it
//
// Crash safety: a freeze writes the new overlay beside the active disk first (disk.qcow2.new, backed by
// the node name it is about to create), renames the active disk to that node, then renames the overlay
// into place. After a crash at any point exactly one arrangement is complete: while disk.qcow2 exists it
// is the truth and a .new beside it is discarded; without disk.qcow2 the freeze had moved it into its node
// already, and the .new (which names that node) is renamed into place (recoverActiveDisk).

import { createHash, randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { chmod, mkdir, open, readdir, realpath, rename, rm, stat } from "node:fs/promises";
import { basename, dirname, join, relative, resolve } from "node:path";
import { FileBlockBackend } from "../engines/backends/file-block-backend.ts";
import {
  convertDisk,
  type DiskBackend,
  createQcow2,
  diskChain,
  openDisk,
  readDiskInfo,
  reclaimLeaks,
  setBacking,
} from "../engines/backends/qcow2/index.ts";
import { lockHolders } from "../engines/backends/file-lock.ts";
import { crashPoint } from "./crash-point.ts";
import { syncDir } from "./store.ts";

export const DISKS_DIR = "disks";
/** The only backing names a VM's active disk may have: a node of disks/, nothing outside the layout. */
export const VM_DISK_BACKING = /^\.\.\/\.\.\/disks\/([a-z0-9-]{1,80}\.(?:qcow2|raw))$/;
/** The active disk of a VM made since qcow2 disks, and the raw one of an older VM. */
export const ACTIVE_DISK = "disk.qcow2";
export const LEGACY_DISK = "disk.img";
/** A freeze's or a restore's next active disk (never a `.tmp-` name: the generic cleanup must keep it). */
export const NEXT_DISK = "disk.qcow2.new";
const TEMP_PREFIX = ".tmp-";
const NODE_PATTERN = /^([a-z0-9-]{1,80})\.(qcow2|raw)$/;
export const SNAPSHOTS_FILE = "snapshots.json";

/** The active disk of the VM in `vmDir`: disk.qcow2, or an older VM's raw disk.img when only that exists. */
export function activeDiskOf(vmDir: string): string {
  const qcow2 = join(vmDir, ACTIVE_DISK);
  const legacy = join(vmDir, LEGACY_DISK);
  return !existsSync(qcow2) && existsSync(legacy) ? legacy : qcow2;
}

/**
 * Opens a disk just written (and closes it): its tables are checked against its size, so that a file a full
 * filesystem cut short is refused before anything depends on it.
 */
async function checkWritten(path: string): Promise<void> {
  try {
    await (await openDisk(path, { readOnly: true })).close();
  } catch (e) {
    throw new Error(
      `the new disk ${path} was not written whole (is the filesystem full?): ${(e as Error).message}`,
    );
  }
}

/**
 * Creates the qcow2 overlay `path` of `backing`: written first without it and checked whole (its backing
 * may not exist yet: a freeze names the node it is about to create), then given its backing name.
 */
async function createOverlayFile(
  path: string,
  sizeBytes: number,
  backing: { name: string; format: "qcow2" | "raw" },
): Promise<void> {
  await createQcow2(path, { sizeBytes });
  await checkWritten(path);
  await setBacking(path, backing);
  await syncFile(path);
}

async function syncFile(path: string): Promise<void> {
  const fh = await open(path, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** A fresh node id: random, so that two homes never make the same one for different contents. */
export function newNodeId(): string {
  return randomBytes(8).toString("hex");
}

/**
 * The active disk of the VM in `vmDir` as the files say, never as a guest could make it look: disk.qcow2 is
 * a qcow2 tsvm made (its header is out of the guest's reach), an older VM's disk.img is raw whatever its
 * first bytes (its guest may have written the qcow2 magic into sector 0, naming any host file as backing).
 */
export async function activeDiskInfo(
  vmDir: string,
): Promise<{ path: string; format: "qcow2" | "raw"; virtualSize: number }> {
  const path = activeDiskOf(vmDir);
  if (basename(path) === LEGACY_DISK) return { path, format: "raw", virtualSize: (await stat(path)).size };
  const info = await readDiskInfo(path);
  return { path, format: info.format, virtualSize: info.virtualSize };
}

/** Opens a VM's active disk for its guest: disk.qcow2 with its chain, an older VM's disk.img as raw. */
export function openActiveDisk(path: string): Promise<DiskBackend> {
  return basename(path) === LEGACY_DISK ? FileBlockBackend.open(path) : openDisk(path);
}

/**
 * Settles a freeze or restore that a crash interrupted in `vmDir` (no VMM may run for the VM): the
 * complete arrangement is kept (see the file's comment). Returns what was done, for the VM's events.
 */
export async function recoverActiveDisk(vmDir: string): Promise<string[]> {
  const next = join(vmDir, NEXT_DISK);
  if (!existsSync(next)) return [];
  if (existsSync(join(vmDir, ACTIVE_DISK))) {
    await rm(next, { force: true });
    return [`removed the unfinished new disk of an interrupted snapshot or restore (${NEXT_DISK})`];
  }
  const node = (await readDiskInfo(next)).backing?.path;
  if (node) await renameBacking(node, vmDir);
  await rename(next, join(vmDir, ACTIVE_DISK));
  await syncDir(vmDir);
  return [`completed an interrupted freeze of the disk: ${NEXT_DISK} became ${ACTIVE_DISK}`];
}

/**
 * Gives back what the VMM that died in `vmDir` left reserved in its disk (the qcow2 writer's allocation
 * pool, which `qemu-img check` would report as leaked clusters), so the disk is exact again before the VM
 * restarts or anyone checks it. Cheap when the VMM closed the disk cleanly. Does nothing while a process
 * still holds the disk's lock. Returns what was done, for the VM's events.
 */
export async function reclaimActiveDiskLeaks(vmDir: string): Promise<string[]> {
  const path = join(vmDir, ACTIVE_DISK);
  if (!existsSync(path) || lockHolders(path).length > 0) return [];
  const clusters = await reclaimLeaks(path);
  return clusters === 0 ? [] : [`gave back ${clusters} clusters its VMM had reserved in ${ACTIVE_DISK}`];
}

/**
 * Gives the disk just moved from `vmDir` into disks/ its backing's name as seen from there (qemu resolves
 * a relative name from the file's own directory). Done again after a crash, it changes nothing.
 */
async function renameBacking(node: string, vmDir: string): Promise<void> {
  const backing = (await readDiskInfo(node)).backing;
  if (!backing || !backing.name.includes("/")) return;
  const target = resolve(vmDir, backing.name);
  await setBacking(node, { name: relative(dirname(node), target), format: backing.format });
}

/**
 * Freezes the active disk of the VM in `vmDir` into node `id` of `disksDir`: the active file is renamed to
 * the node (mode 0444) and a new empty overlay backed by it takes its place. Its caller holds the disk (no
 * guest writes meanwhile, its writes flushed). Before the first rename nothing has changed: a failure there
 * (e.g. a full disk) leaves the VM as it was. Returns the node's path.
 */
export async function freezeActiveDisk(
  vmDir: string,
  disksDir: string,
  id: string,
  /** Names the crash point between the renames (crash-point.ts): the VMM's, or the daemon's operation. */
  crashPrefix = "vmm",
): Promise<string> {
  // A node is never written again: what a dead VMM leaked in it would stay leaked (its VMM, if it runs,
  // holds the lock and closed the disk cleanly before this).
  await reclaimActiveDiskLeaks(vmDir);
  const info = await activeDiskInfo(vmDir);
  const active = info.path;
  const node = join(disksDir, `${id}.${info.format}`);
  const next = join(vmDir, NEXT_DISK);
  await rm(next, { force: true });
  try {
    await createOverlayFile(next, info.virtualSize, { name: relative(vmDir, node), format: info.format });
    await syncDir(vmDir);
  } catch (e) {
    await rm(next, { force: true });
    throw e;
  }
  // From here on recoverActiveDisk completes what a crash interrupts.
  await rename(active, node);
  await syncDir(disksDir);
  crashPoint(`${crashPrefix}:freeze-between-renames`);
  await renameBacking(node, vmDir);
  await rename(next, join(vmDir, ACTIVE_DISK));
  await syncDir(vmDir);
  await chmod(node, 0o444);
  return node;
}

/**
 * Replaces the VM's active disk with a new empty overlay of node `nodePath` (a restore): written beside it,
 * then renamed over it in one step, so that a crash leaves the old disk or the new one.
 */
export async function replaceActiveDisk(vmDir: string, nodePath: string): Promise<void> {
  const info = await readDiskInfo(nodePath);
  const next = join(vmDir, NEXT_DISK);
  await rm(next, { force: true });
  try {
    await createOverlayFile(next, info.virtualSize, { name: relative(vmDir, nodePath), format: info.format });
    await rename(next, join(vmDir, ACTIVE_DISK));
  } catch (e) {
    await rm(next, { force: true });
    throw e;
  }
  // An older VM's raw disk is superseded by the qcow2 now in place.
  await rm(join(vmDir, LEGACY_DISK), { force: true });
  await syncDir(vmDir);
}

/** Where the snapshots of a VM directory keep their disk nodes, for garbage collection (snapshots.ts). */
export type SnapshotNodeReader = (vmDir: string) => Promise<string[]>;

/**
 * How long an unreached node on shared storage is kept: far longer than any host takes from making a node
 * to writing the chain that reaches it, so a collection never races another host's freeze or clone.
 */
export const SHARED_NODE_GRACE_MS = 10 * 60_000;

/**
 * The disk nodes of one data directory. Node-creating steps and garbage collection are serialized through
 * `exclusive`, so that a collection never sees a node made but not yet referenced.
 */
export class DiskStore {
  readonly dir: string;
  private readonly vmsDir: string;
  /** Base conversions in flight, by node id: concurrent inserts of one image convert it once. */
  private readonly converting = new Map<string, Promise<string>>();
  private lock: Promise<void> = Promise.resolve();
  /** Nodes on shared storage (openShared): collected only once older than SHARED_NODE_GRACE_MS. */
  private shared = false;

  private constructor(
    home: string,
    private readonly snapshotNodes: SnapshotNodeReader,
  ) {
    this.dir = join(home, DISKS_DIR);
    this.vmsDir = join(home, "vms");
  }

  /**
   * Opens (creating) disks/ and settles what a crash left there: half-converted bases (temps) are removed,
   * and a node frozen just before the crash gets its mode 0444. Only the daemon may call it.
   */
  static async open(home: string, snapshotNodes: SnapshotNodeReader): Promise<DiskStore> {
    const store = new DiskStore(home, snapshotNodes);
    await mkdir(store.dir, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(store.dir)) {
      const path = join(store.dir, entry);
      if (entry.startsWith(TEMP_PREFIX)) await rm(path, { recursive: true, force: true });
      else if (NODE_PATTERN.test(entry) && ((await stat(path)).mode & 0o222) !== 0) await chmod(path, 0o444);
    }
    return store;
  }

  /**
   * The nodes on a cluster's shared storage (`shared`/disks, made by cluster/shared-storage.ts): the base
   * and snapshot nodes of the VMs there, whose directories are `shared`/vms. Other hosts write there too and
   * this daemon's lock does not reach them: nothing is cleaned up at open (a temp may be another host's
   * conversion in flight), and collection spares a node made or changed within SHARED_NODE_GRACE_MS (another
   * host may be between making it and writing the chain that reaches it: a freeze, a clone, a conversion).
   */
  static async openShared(shared: string, snapshotNodes: SnapshotNodeReader): Promise<DiskStore> {
    const store = new DiskStore(shared, snapshotNodes);
    store.shared = true;
    return store;
  }

  /** Runs `work` with no other node-creating step or collection running in this daemon. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.lock.then(work);
    this.lock = run.then(
      () => {},
      () => {},
    );
    return run;
  }

  /**
   * The base node of the image whose raw template is `template`: converted once per image build (its id
   * derives from the template's file identity), atomically (a temp name, then a rename), whichever of
   * concurrent callers comes first. Returns the node's path.
   */
  async baseNode(template: string): Promise<string> {
    const { real, id, node } = await this.baseOf(template);
    let inFlight = this.converting.get(id);
    if (!inFlight) {
      inFlight = this.convertOnce(real, node).finally(() => this.converting.delete(id));
      this.converting.set(id, inFlight);
    }
    return inFlight;
  }

  /** Where the base node of `template` is (or will be, once converted). */
  async baseNodePath(template: string): Promise<string> {
    return (await this.baseOf(template)).node;
  }

  private async baseOf(template: string): Promise<{ real: string; id: string; node: string }> {
    const real = await realpath(template);
    const s = await stat(real);
    const id = `base-${createHash("sha256")
      .update(`${real}\0${s.dev}\0${s.ino}\0${s.size}\0${s.mtimeMs}`)
      .digest("hex")
      .slice(0, 16)}`;
    return { real, id, node: join(this.dir, `${id}.qcow2`) };
  }

  private async convertOnce(template: string, node: string): Promise<string> {
    if (existsSync(node)) return node;
    const temp = join(this.dir, `${TEMP_PREFIX}${randomBytes(6).toString("hex")}`);
    try {
      await convertDisk(template, temp, { format: "qcow2" });
      await checkWritten(temp);
      await chmod(temp, 0o444);
      await syncFile(temp);
      await rename(temp, node);
    } catch (e) {
      await rm(temp, { force: true });
      throw e;
    }
    await syncDir(this.dir);
    return node;
  }

  /**
   * Creates a VM's active disk at `path` (failing if it exists): an empty qcow2 v3 overlay of `node`, by the
   * relative name qemu resolves from the overlay's directory.
   */
  async createOverlay(path: string, node: string): Promise<void> {
    const info = await readDiskInfo(node);
    if (existsSync(path)) throw new Error(`the disk ${path} exists already`);
    try {
      await createOverlayFile(path, info.virtualSize, {
        name: relative(join(path, ".."), node),
        format: info.format,
      });
    } catch (e) {
      await rm(path, { force: true });
      throw e;
    }
    await syncDir(join(path, ".."));
  }

  /** The node path of id `id` (either format), or undefined when there is none. */
  nodePath(id: string): string | undefined {
    for (const format of ["qcow2", "raw"]) {
      const path = join(this.dir, `${id}.${format}`);
      if (existsSync(path)) return path;
    }
    return undefined;
  }

  /**
   * Removes every node no chain reaches: not the chain of any VM directory's active disk (also of
   * directories being assembled or removed, and whatever their definition), not any snapshot's. Nothing
   * is removed when any chain cannot be read: a node is deleted only when it is known unreachable. Call
   * it inside `exclusive`. Returns the ids removed.
   */
  async collectGarbage(now = Date.now()): Promise<string[]> {
    const reached = new Set<string>();
    const mark = async (top: string) => {
      for (const link of await diskChain(top)) reached.add(basename(link.path));
    };
    for (const entry of await readdir(this.vmsDir)) {
      const vmDir = join(this.vmsDir, entry);
      if (!(await stat(vmDir).catch(() => undefined))?.isDirectory()) continue;
      for (const disk of [ACTIVE_DISK, NEXT_DISK]) {
        const path = join(vmDir, disk);
        if (existsSync(path)) await mark(path);
      }
      for (const node of await this.snapshotNodes(vmDir)) {
        const path = this.nodePath(node);
        if (path) await mark(path);
      }
    }
    const removed: string[] = [];
    for (const entry of await readdir(this.dir)) {
      const m = NODE_PATTERN.exec(entry);
      if (!m || reached.has(entry)) continue;
      if (this.shared) {
        const info = await stat(join(this.dir, entry)).catch(() => undefined);
        if (!info || now - Math.max(info.mtimeMs, info.ctimeMs) < SHARED_NODE_GRACE_MS) continue;
      }
      await rm(join(this.dir, entry), { force: true });
      removed.push(m[1]!);
    }
    if (removed.length > 0) await syncDir(this.dir);
    return removed;
  }
}
