// The data directory: every VM's files under one root (TSVM_HOME), each write atomic (temp file, fsync,
// rename, fsync of the directory) so that a crash at any point leaves either the old or the new file.
//
// Layout:
//   $TSVM_HOME/vms/<name>/vm.json      the definition (VmRecord)
//   $TSVM_HOME/vms/<name>/disk.qcow2   the VM's active disk: a qcow2 overlay backed by a node in disks/
//                                      (disk-store.ts); a VM made before qcow2 disks has a raw disk.img
//   $TSVM_HOME/vms/<name>/snapshots.json, snapshots/   its snapshot tree and their memory (snapshots.ts)
//   $TSVM_HOME/vms/<name>/state/       suspended state files, written by the VMM
//   $TSVM_HOME/vms/<name>/console.log  serial console history (append-only, written by the VMM)
//   $TSVM_HOME/vms/<name>/vmm.json     pid, identity and control socket of the VMM, for re-attaching
//   $TSVM_HOME/disks/<id>.qcow2        immutable disk nodes (mode 0444): images' bases, frozen layers
//   $TSVM_HOME/api.sock, api-token, daemon.lock, daemon.json   the daemon's (see the api layer)
//
// Temp names all start with `.tmp-`: `vms/.tmp-*` (a VM directory being assembled, or a deleted one renamed
// away), `.tmp-*` beside any atomically written file, and in a VM directory `.tmp-state-*` (a suspend's new
// state being written) and `.tmp-old-state-*` (the state it replaces, between the two renames of the
// swap). The daemon, which alone writes the first two, removes them when it opens the store; a VM
// directory's are the VMM's while one runs, so they are recovered per VM (recoverLeftovers) when none does.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, mkdir, open, readdir, readFile, rename, rm, stat } from "node:fs/promises";
import { homedir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { HypervisorError } from "./hypervisor-error.ts";
import { FileOperationJournal, type OpenedJournal } from "./operations.ts";
import {
  type BrokenVm,
  RevisionConflictError,
  type StoredVmRecord,
  type VmRecordStore,
} from "./vm-record-store.ts";
import {
  CorruptRecordError,
  parseVmRecord,
  serializeVmRecord,
  VM_NAME_PATTERN,
  type VmRecord,
} from "./vm-record.ts";

/** A definition is a few KiB; anything far bigger is not one of ours, and is not read into memory. */
const MAX_DEFINITION_BYTES = 1 << 20;
const DEFINITION_FILE = "vm.json";
const TEMP_PREFIX = ".tmp-";
/** A suspend's new state being written, and the state it replaces while the two are swapped (vmm-main.ts). */
export const NEW_STATE_PREFIX = ".tmp-state-";
export const OLD_STATE_PREFIX = ".tmp-old-state-";

/** `TSVM_HOME` when set, else `${XDG_DATA_HOME:-~/.local/share}/tsvm`; always absolute. */
export function defaultDataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSVM_HOME) return resolve(env.TSVM_HOME);
  const base = env.XDG_DATA_HOME
    ? resolve(env.XDG_DATA_HOME)
    : join(env.HOME ?? homedir(), ".local", "share");
  return join(base, "tsvm");
}

export class VmNotFoundError extends HypervisorError {
  constructor(readonly vmName: string) {
    super("not-found", `the VM '${vmName}' was not found`);
  }
}

export class VmExistsError extends HypervisorError {
  constructor(readonly vmName: string) {
    super("already-exists", `the VM '${vmName}' already exists`);
  }
}

/** A VM's status change that could not be written (e.g. a full disk), and so did not happen. */
export class RecordWriteError extends HypervisorError {
  constructor(name: string, from: string, to: string, path: string, cause: unknown) {
    super(
      "record-write-failed",
      `could not record VM '${name}' as ${to} in ${path} (${(cause as Error)?.message ?? String(cause)}); it stays ${from}`,
    );
  }
}

export class InvalidNameError extends HypervisorError {
  constructor(name: string) {
    super(
      "invalid-name",
      `'${name.slice(0, 80)}' is not a valid VM name: use 1 to 63 lowercase letters, digits and hyphens, ` +
        "starting with a letter and not ending with a hyphen",
    );
  }
}

export function checkVmName(name: string): void {
  if (!VM_NAME_PATTERN.test(name)) throw new InvalidNameError(name);
}

/** fsync of a directory: what was renamed or created in it survives a crash. */
export async function syncDir(dir: string): Promise<void> {
  const fh = await open(dir, "r");
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

function tempNameFor(path: string): string {
  return join(dirname(path), `${TEMP_PREFIX}${randomBytes(6).toString("hex")}`);
}

/**
 * Replaces `path` with `data` atomically: a reader sees the old file or the new one, never a mix, and after
 * a crash the file is one of the two. The temp file is removed when any step fails.
 */
export async function writeFileAtomic(path: string, data: string | Uint8Array, mode = 0o644): Promise<void> {
  await replaceFile(path, data, mode, true);
  await syncDir(dirname(path));
}

/**
 * Replaces `path` with `data` atomically, as writeFileAtomic, but without making it durable (no fsync, each
 * of which cost 1–40 ms on a busy disk): for a file that describes a running process (a VMM's spec and its
 * run record), which means nothing after a host crash (no VMM runs then, and the next start writes it
 * again). A process that dies midway leaves the old file or the new one; after a host crash the file may
 * be empty or missing, which its readers take as no record.
 */
export async function replaceFile(
  path: string,
  data: string | Uint8Array,
  mode = 0o644,
  durable = false,
): Promise<void> {
  const temp = tempNameFor(path);
  try {
    const fh = await open(temp, "wx", mode);
    try {
      await fh.writeFile(data);
      if (durable) await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
}

/**
 * Copies `source` to `path` atomically, as a reflink (copy-on-write, instant) where the filesystem can,
 * else as a full copy.
 */
export async function copyFileAtomic(source: string, path: string): Promise<void> {
  const temp = tempNameFor(path);
  try {
    await copyFile(source, temp, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    const fh = await open(temp, "r+");
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(temp, path);
  } catch (e) {
    await rm(temp, { force: true });
    throw e;
  }
  await syncDir(dirname(path));
}

export interface VmPaths {
  readonly dir: string;
  readonly definition: string;
  /** Where a new VM's active disk is made (disk.qcow2); an older VM's may be disk.img (activeDiskOf). */
  readonly disk: string;
  readonly stateDir: string;
  readonly consoleLog: string;
  readonly vmm: string;
}

export type { BrokenVm } from "./vm-record-store.ts";

/**
 * Where the records live besides the directories: the vm.json in each (the default), or elsewhere (etcd,
 * cluster/etcd-vm-records.ts), when the directory holds only the VM's files on this host.
 */
export interface VmStoreOptions {
  readonly records?: (store: VmStore) => VmRecordStore;
  /** Where operations are journaled: `operations/` in the data directory unless given. */
  readonly operations?: () => Promise<OpenedJournal>;
  /**
   * A cluster's shared storage (cluster/shared-storage.ts): the VMs whose records say `sharedStorage` have
   * their directories in its `vms/`, not in this data directory's.
   */
  readonly sharedDir?: string;
}

/**
 * The data directory's VMs: their directories (paths, assembly, removal, crash leftovers) and their records,
 * kept in `records` with compare-and-set by revision. The store remembers the revision of each record it
 * read or wrote, so the hypervisor's writes fail (RevisionConflictError) rather than overwrite a change
 * made elsewhere.
 */
/** A VM on the cluster's shared storage met by a host that has none. */
export function noSharedStorageError(name: string): HypervisorError {
  return new HypervisorError(
    "invalid-argument",
    `the VM '${name}' is on shared storage, and this host has none (start its daemon with --shared-storage)`,
  );
}

export class VmStore {
  readonly vmsDir: string;
  /** The shared storage's `vms/`, when the cluster has one. */
  readonly sharedVmsDir: string | undefined;
  readonly records: VmRecordStore;
  /** Whether the records are the directories' vm.json files (created and removed with them). */
  private readonly recordsInDirectories: boolean;
  private readonly revisions = new Map<string, number>();
  /** The VMs on shared storage (seen in their records): paths() puts their directories there. */
  private readonly onShared = new Set<string>();
  /** Opens the operation journal (see VmStoreOptions.operations). */
  readonly openOperations: () => Promise<OpenedJournal>;

  private constructor(
    readonly home: string,
    options: VmStoreOptions,
  ) {
    this.vmsDir = join(home, "vms");
    this.sharedVmsDir = options.sharedDir === undefined ? undefined : join(options.sharedDir, "vms");
    this.recordsInDirectories = options.records === undefined;
    this.records = options.records ? options.records(this) : new FileVmRecords(this);
    this.openOperations = options.operations ?? (() => FileOperationJournal.open(join(home, "operations")));
  }

  /**
   * Opens (creating when missing) the data directory at `home`, and removes the temp files a crash left in
   * it and in `vms/` (half-assembled and half-deleted VM directories). Only the daemon, holding the data
   * directory's lock, may call it: those temp files are written by nothing else.
   */
  static async open(home: string, options: VmStoreOptions = {}): Promise<VmStore> {
    const store = new VmStore(resolve(home), options);
    await mkdir(store.vmsDir, { recursive: true, mode: 0o700 });
    for (const dir of [store.home, store.vmsDir]) {
      for (const entry of await readdir(dir)) {
        if (entry.startsWith(TEMP_PREFIX)) await rm(join(dir, entry), { recursive: true, force: true });
      }
    }
    return store;
  }

  /**
   * Settles the temp files a crash left in a VM's directory; call it only while no VMM runs for the VM.
   * Atomic-write temps and unfinished new states are removed. A suspend interrupted between the two renames
   * of its swap left no `state/` but the previous one under `.tmp-old-state-*`: that previous state is put
   * back (a new state is trusted only once the swap completed). Returns what was done, for the VM's events.
   */
  async recoverLeftovers(name: string): Promise<string[]> {
    const paths = this.paths(name);
    let entries: string[];
    try {
      entries = await readdir(paths.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
      throw e;
    }
    const temps = entries.filter((e) => e.startsWith(TEMP_PREFIX)).sort();
    if (temps.length === 0) return [];
    const done: string[] = [];
    let restored: string | undefined;
    if (!entries.includes("state")) {
      // Normally at most one; with several (repeated crashes) the newest is the state last in place.
      let newest = -1;
      for (const e of temps.filter((t) => t.startsWith(OLD_STATE_PREFIX))) {
        const mtime = (await stat(join(paths.dir, e))).mtimeMs;
        if (mtime > newest) [newest, restored] = [mtime, e];
      }
      if (restored) {
        await rename(join(paths.dir, restored), paths.stateDir);
        done.push(`put back the previous saved state (${restored}): a suspend was interrupted mid-swap`);
      }
    }
    for (const e of temps) {
      if (e === restored) continue;
      await rm(join(paths.dir, e), { recursive: true, force: true });
      done.push(
        e.startsWith(NEW_STATE_PREFIX)
          ? `removed the unfinished state of an interrupted suspend (${e})`
          : e.startsWith(OLD_STATE_PREFIX)
            ? `removed a replaced saved state (${e})`
            : `removed the temp file of an interrupted write (${e})`,
      );
    }
    await syncDir(paths.dir);
    return done;
  }

  /**
   * Notes where the VM's directory is (its record's `sharedStorage`); every record the store reads, lists or
   * writes is noted, and the hypervisor notes each VM it takes in before it asks for its paths.
   */
  locate(record: VmRecord): void {
    if (record.sharedStorage) {
      if (this.sharedVmsDir === undefined) throw noSharedStorageError(record.name);
      this.onShared.add(record.name);
    } else this.onShared.delete(record.name);
  }

  paths(name: string): VmPaths {
    checkVmName(name);
    const dir = join(this.onShared.has(name) ? this.sharedVmsDir! : this.vmsDir, name);
    return {
      dir,
      definition: join(dir, DEFINITION_FILE),
      disk: join(dir, "disk.qcow2"),
      stateDir: join(dir, "state"),
      consoleLog: join(dir, "console.log"),
      vmm: join(dir, "vmm.json"),
    };
  }

  /**
   * Creates the VM's directory and its record. With vm.json records the directory is assembled with its
   * definition under a temp name and renamed into place, so a crash never leaves a VM directory without a
   * definition; with records elsewhere the record is created first (that is where a name is taken), then
   * the directory. Throws VmExistsError, changing nothing, when the name is taken.
   */
  async create(record: VmRecord): Promise<void> {
    if (this.recordsInDirectories) {
      this.revisions.set(record.name, await this.records.create(record));
      return;
    }
    this.locate(record);
    const paths = this.paths(record.name);
    const revision = await this.records.create(record);
    try {
      // A directory left by a VM of this name that was removed while this host was away is not ours.
      await rm(paths.dir, { recursive: true, force: true });
      await mkdir(paths.dir, { mode: 0o700 });
      await syncDir(dirname(paths.dir));
    } catch (e) {
      await this.records.remove(record.name, revision).catch(() => {});
      throw e;
    }
    this.revisions.set(record.name, revision);
  }

  /**
   * Takes the name of a VM an import is about to put in place. With records elsewhere (a cluster's etcd)
   * the record is created there first, so that a name another host has refuses the import (VmExistsError)
   * and the VM is listed by every host; the returned function gives the name back when the import then
   * fails. With vm.json records the VM's directory, renamed into place by the import, is its record.
   */
  async claim(record: VmRecord): Promise<() => Promise<void>> {
    if (this.recordsInDirectories) return async () => {};
    const revision = await this.records.create(record);
    this.revisions.set(record.name, revision);
    return async () => {
      this.revisions.delete(record.name);
      await this.records.remove(record.name, revision);
    };
  }

  /** Reads and validates the record; VmNotFoundError or CorruptRecordError (the record is left as is). */
  async read(name: string): Promise<VmRecord> {
    checkVmName(name);
    const { record, revision } = await this.records.read(name);
    this.revisions.set(name, revision);
    this.locate(record);
    return record;
  }

  /**
   * Replaces the record of an existing VM, at the revision this store last saw of it (read first when it has
   * seen none); RevisionConflictError when it changed meanwhile elsewhere.
   */
  async write(record: VmRecord): Promise<void> {
    checkVmName(record.name);
    const expected = this.revisions.get(record.name) ?? (await this.records.read(record.name)).revision;
    this.revisions.set(record.name, await this.records.write(record, expected));
    this.locate(record);
  }

  /** The revision this store last saw of the VM's record (a move hands it to the new host). */
  revisionOf(name: string): number | undefined {
    return this.revisions.get(name);
  }

  /**
   * Takes over the record of a VM moved here from another host (cluster/vm-moves.ts): writes it at the
   * revision the old host last saw, so that a change made meanwhile fails the move (RevisionConflictError)
   * rather than being overwritten. The VM's directory must already be in place.
   */
  async adopt(record: VmRecord, expectedRevision: number): Promise<void> {
    checkVmName(record.name);
    this.revisions.set(record.name, await this.records.write(record, expectedRevision));
    this.locate(record);
  }

  /**
   * Forgets a VM on shared storage moved to another host: its directory stays, the other host runs it from
   * there; its record is that host's now.
   */
  letGo(name: string): void {
    this.revisions.delete(name);
    this.onShared.delete(name);
  }

  /** Forgets a VM moved away: its directory goes, its record (now another host's) stays. */
  async release(name: string): Promise<void> {
    this.revisions.delete(name);
    await this.removeDirectory(name).catch((e) => {
      if (!(e instanceof VmNotFoundError)) throw e;
    });
  }

  /**
   * With records elsewhere (a cluster's etcd): removes the VM directories that no record of this host names,
   * and says which. They are what a crash left of a handover: a VM moved away whose old host died before it
   * let go of its files, a VM moved here whose new host died before it took over the record, a VM deleted
   * while this host was away. `mine` are the names this host's records hold (usable or not). A directory
   * from which a VMM still runs is kept; its VM is another host's to settle, not this one's to delete under it.
   */
  async removeStrays(mine: ReadonlySet<string>, vmmRunsIn: (dir: string) => boolean): Promise<string[]> {
    if (this.recordsInDirectories) return [];
    const removed: string[] = [];
    for (const name of await readdir(this.vmsDir)) {
      if (name.startsWith(TEMP_PREFIX) || mine.has(name)) continue;
      const dir = join(this.vmsDir, name);
      if (vmmRunsIn(dir)) continue;
      await rm(dir, { recursive: true, force: true });
      removed.push(name);
    }
    if (removed.length > 0) await syncDir(this.vmsDir);
    return removed;
  }

  /** Every VM by name; the broken ones separately with what is wrong with each. */
  async list(): Promise<{ vms: VmRecord[]; broken: BrokenVm[] }> {
    const { vms, broken } = await this.records.list();
    const usable: VmRecord[] = [];
    for (const vm of vms) {
      this.revisions.set(vm.record.name, vm.revision);
      try {
        this.locate(vm.record);
        usable.push(vm.record);
      } catch (e) {
        broken.push({ name: vm.record.name, error: e as HypervisorError });
      }
    }
    return { vms: usable, broken };
  }

  /**
   * Removes the VM's record and its directory with everything in it. With vm.json records the directory is
   * first renamed to a temp name (atomic: the VM is gone at once, and a crash mid-way leaves only a temp
   * directory that the next open removes); with records elsewhere the record goes first, then the files.
   */
  async remove(name: string): Promise<void> {
    checkVmName(name);
    if (this.recordsInDirectories) await this.records.remove(name);
    else {
      await this.records.remove(name, this.revisions.get(name));
      await this.removeDirectory(name).catch((e) => {
        if (!(e instanceof VmNotFoundError)) throw e;
      });
    }
    this.revisions.delete(name);
  }

  /** Renames the VM's directory away (atomically), then removes it; VmNotFoundError when there is none. */
  async removeDirectory(name: string): Promise<void> {
    const paths = this.paths(name);
    const temp = tempNameFor(paths.dir);
    try {
      await rename(paths.dir, temp);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") throw new VmNotFoundError(name);
      throw e;
    }
    await syncDir(dirname(paths.dir));
    await rm(temp, { recursive: true, force: true });
  }
}

/**
 * The records as each VM directory's vm.json. Only the daemon holding the data directory's lock writes
 * them, so revisions are kept in memory: each record gets one when first seen, and a new one at each
 * write; a store opened later numbers them afresh.
 */
export class FileVmRecords implements VmRecordStore {
  private readonly revisions = new Map<string, number>();
  private lastRevision = 0;

  constructor(private readonly store: VmStore) {}

  private revisionOf(name: string): number {
    let revision = this.revisions.get(name);
    if (revision === undefined) {
      revision = ++this.lastRevision;
      this.revisions.set(name, revision);
    }
    return revision;
  }

  private bump(name: string): number {
    const revision = ++this.lastRevision;
    this.revisions.set(name, revision);
    return revision;
  }

  /**
   * Creates the VM's directory with its definition, atomically: the directory is assembled under a temp
   * name and renamed into place, so a crash never leaves a VM directory without a definition. Throws
   * VmExistsError, changing nothing, when the name is taken.
   */
  async create(record: VmRecord): Promise<number> {
    const paths = this.store.paths(record.name);
    if (await exists(paths.dir)) throw new VmExistsError(record.name);
    const temp = tempNameFor(paths.dir);
    try {
      await mkdir(temp, { mode: 0o700 });
      await writeFileAtomic(join(temp, DEFINITION_FILE), serializeVmRecord(record));
      // rename() onto an existing non-empty directory fails (ENOTEMPTY/EEXIST): a racing create loses here.
      await rename(temp, paths.dir);
    } catch (e) {
      await rm(temp, { recursive: true, force: true });
      const code = (e as NodeJS.ErrnoException).code;
      if (code === "ENOTEMPTY" || code === "EEXIST") throw new VmExistsError(record.name);
      throw e;
    }
    await syncDir(this.store.vmsDir);
    return this.bump(record.name);
  }

  async read(name: string): Promise<StoredVmRecord> {
    const paths = this.store.paths(name);
    let text: string;
    try {
      const size = (await stat(paths.definition)).size;
      if (size > MAX_DEFINITION_BYTES) {
        throw new CorruptRecordError(
          paths.definition,
          `it is ${size} bytes, larger than any definition (limit ${MAX_DEFINITION_BYTES})`,
        );
      }
      text = await readFile(paths.definition, "utf8");
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === "ENOENT") {
        if (await exists(paths.dir)) throw new CorruptRecordError(paths.definition, "the file is missing");
        throw new VmNotFoundError(name);
      }
      throw e;
    }
    const record = parseVmRecord(text, paths.definition);
    if (record.name !== name) {
      // A definition copied into another VM's directory would otherwise make two VMs share one name.
      throw new CorruptRecordError(
        paths.definition,
        `it names the VM '${record.name}' but lies in the directory of '${name}'`,
      );
    }
    return { record, revision: this.revisionOf(name) };
  }

  /** Replaces the definition of an existing VM atomically, at `expectedRevision`. */
  async write(record: VmRecord, expectedRevision: number): Promise<number> {
    const paths = this.store.paths(record.name);
    if (!(await exists(paths.dir))) throw new VmNotFoundError(record.name);
    const current = this.revisionOf(record.name);
    if (current !== expectedRevision) throw new RevisionConflictError(record.name, expectedRevision, current);
    await writeFileAtomic(paths.definition, serializeVmRecord(record));
    return this.bump(record.name);
  }

  async list(): Promise<{ vms: StoredVmRecord[]; broken: BrokenVm[] }> {
    const vms: StoredVmRecord[] = [];
    const broken: BrokenVm[] = [];
    const names = (await readdir(this.store.vmsDir)).filter((n) => VM_NAME_PATTERN.test(n)).sort();
    for (const name of names) {
      try {
        vms.push(await this.read(name));
      } catch (e) {
        if (e instanceof VmNotFoundError) continue; // deleted while we listed
        if (e instanceof HypervisorError) broken.push({ name, error: e });
        else throw e;
      }
    }
    return { vms, broken };
  }

  /** Removes the VM's directory, record and all (see VmStore.removeDirectory). */
  async remove(name: string, expectedRevision?: number): Promise<void> {
    if (expectedRevision !== undefined) {
      const current = this.revisionOf(name);
      if (current !== expectedRevision) throw new RevisionConflictError(name, expectedRevision, current);
    }
    await this.store.removeDirectory(name);
    this.revisions.delete(name);
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await stat(path);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
    throw e;
  }
}
