// Recreates a VM from an export file read from a stream: everything goes into a staging tree in the data
// directory (`.tmp-import-…/{vms/vm,disks}`, which the store removes after a crash), and only once the
// whole stream is verified (every record's checksum, the trailer) and its disks form tsvm's node layout is
// the VM's definition written, its disk nodes linked into disks/ and its directory renamed into vms/.
// On any error everything written is removed: nothing is created.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import {
  chmod,
  type FileHandle,
  link,
  mkdir,
  open,
  readdir,
  readFile,
  rename,
  rm,
  stat,
} from "node:fs/promises";
import { dirname, join } from "node:path";
import { diskChain, readDiskInfo, reclaimLeaks } from "../../engines/backends/qcow2/index.ts";
import { DISKS_DIR, SNAPSHOTS_FILE, VM_DISK_BACKING } from "../disk-store.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import { readTree } from "../snapshot-tree.ts";
import { syncDir, writeFileAtomic } from "../store.ts";
import { serializeVmRecord, type VmRecord, withHistory } from "../vm-record.ts";
import { ArchiveError, ImportWriteError } from "./archive-format.ts";
import { type ArchiveManifest, hostByteOrder } from "./archive-manifest.ts";
import { type ArchiveFileSink, type ArchiveSink, readArchive } from "./archive-reader.ts";

export interface ImportTarget {
  /** The data directory (TSVM_HOME): staging happens in it, under `.tmp-import-…` (removed after a crash). */
  readonly home: string;
  /**
   * Called with the manifest before any file is written: checks that the VM can be recreated here and
   * reserves its name (throws to refuse). Returns the name and id the VM gets, and its network cards here
   * (undefined for a VM from before network cards).
   */
  accept(manifest: ArchiveManifest): {
    readonly name: string;
    readonly id: string;
    readonly networkInterfaces: VmRecord["networkInterfaces"];
  };
  readonly now?: () => Date;
  /**
   * A live move's file (cluster/live-moves.ts): a RUNNING VM without its active disk, which its migration
   * stream brings later (and which the VMM checks then); everything else is checked as for any import.
   */
  readonly live?: boolean;
}

export interface StagedImport {
  readonly record: VmRecord;
  readonly manifest: ArchiveManifest;
  /**
   * Moves the verified VM into place: its disk nodes into disks/ (a node already there is reused only when
   * identical), then its directory into vms/ (already-exists when the name was taken meanwhile). Run it
   * where no disk garbage collection runs at the same time.
   */
  commit(): Promise<void>;
  /** Removes everything staged. */
  discard(): Promise<void>;
}

/**
 * What an export may put in the VM's directory (vm-export.ts): nothing else, so that a hostile file cannot
 * plant a VMM record, a console history or a definition of its own.
 */
const VM_FILES = /^vm\/(?:disk\.qcow2|disk\.img|snapshots\.json|state\/.+|snapshots\/.+|boot\/.+)$/;
/** A disk node's file name in disks/, as disk-store.ts names them. */
const NODE_FILE = /^[a-z0-9-]{1,80}\.(?:qcow2|raw)$/;

/** Writes each file of the archive into the staging tree, verified bytes only. */
class StagingSink implements ArchiveSink {
  accepted: ReturnType<ImportTarget["accept"]> | undefined;
  /** The file being written, closed by `end` or, when the import fails mid-file, by `closeOpen`. */
  private current: FileHandle | undefined;

  constructor(
    /** Mirrors the data directory: vms/vm/ (the VM's directory) and disks/ (its nodes). */
    private readonly dir: string,
    private readonly target: ImportTarget,
  ) {}

  async manifest(manifest: ArchiveManifest): Promise<void> {
    if (manifest.byteOrder !== hostByteOrder())
      throw new ArchiveError(
        `its saved state is ${manifest.byteOrder}-endian and this host is ${hostByteOrder()}-endian; tsvm cannot convert it`,
      );
    const status = manifest.vm.status;
    const live = this.target.live === true;
    if (live ? status !== "RUNNING" : status !== "TERMINATED" && status !== "SUSPENDED")
      throw new ArchiveError(
        `it holds a VM that was ${status}; ${live ? "a live move's file holds a RUNNING VM" : "an export holds a TERMINATED or SUSPENDED VM"}`,
      );
    if (status === "SUSPENDED" && !manifest.files.some((f) => f.path.startsWith("vm/state/")))
      throw new ArchiveError("it holds a SUSPENDED VM without its saved state (vm/state/)");
    const badNode = manifest.files.find(
      (f) => f.path.startsWith("disks/") && !NODE_FILE.test(f.path.slice(6)),
    );
    if (badNode)
      throw new ArchiveError(`it holds ${badNode.path.slice(0, 100)}, which is not a disk node's name`);
    const stray = manifest.files.find((f) => f.path.startsWith("vm/") && !VM_FILES.test(f.path));
    if (stray)
      throw new ArchiveError(`it holds ${stray.path.slice(0, 100)}, which is no part of an exported VM`);
    const hasDisk = manifest.files.some((f) => f.path === "vm/disk.qcow2" || f.path === "vm/disk.img");
    if (!hasDisk && !live)
      throw new ArchiveError("it holds no disk for the VM (vm/disk.qcow2 or vm/disk.img)");
    if (hasDisk && live)
      throw new ArchiveError(
        "it holds the VM's active disk, which a live move sends in its migration stream",
      );
    this.accepted = this.target.accept(manifest);
    await mkdir(join(this.dir, "vms", "vm"), { recursive: true, mode: 0o700 });
    await mkdir(join(this.dir, "disks"), { mode: 0o700 });
  }

  async file(entry: { path: string; size: number }): Promise<ArchiveFileSink> {
    // isArchivePath (checked with the manifest) allows only plain components under vm/ and disks/.
    const path = entry.path.startsWith("vm/")
      ? join(this.dir, "vms", "vm", entry.path.slice("vm/".length))
      : join(this.dir, entry.path);
    await mkdir(dirname(path), { recursive: true, mode: 0o700 });
    const fh = await open(path, "wx", 0o600);
    this.current = fh;
    return {
      write: async (offset, bytes) => {
        let done = 0;
        while (done < bytes.length) {
          const { bytesWritten } = await fh.write(bytes, done, bytes.length - done, offset + done);
          done += bytesWritten;
        }
      },
      end: async () => {
        this.current = undefined;
        try {
          await fh.truncate(entry.size);
          await fh.sync();
        } finally {
          await fh.close();
        }
      },
    };
  }

  async closeOpen(): Promise<void> {
    await this.current?.close().catch(() => {});
    this.current = undefined;
  }
}

/** What a write error says to a user: the file system's words, without Node's syscall detail. */
function describeFsError(e: NodeJS.ErrnoException): string {
  if (e.code === "ENOSPC") return "no space left on device (ENOSPC)";
  if (e.code === "EDQUOT") return "disk quota exceeded (EDQUOT)";
  return e.code ? `${e.code}: ${e.message}` : e.message;
}

/**
 * The staged disks must form the layout disk-store.ts makes, wholly inside the staging tree: the VM's disk
 * backed by "../../disks/<node>", each node by "<node>" beside it, every node in the file, no loop, no
 * chain deeper than qcow2's limit. A hostile export cannot make the VM read a host file through a backing
 * name. Throws ArchiveError.
 */
async function checkDiskChains(
  staging: string,
  vmDir: string,
  snapshotNodes: readonly string[],
  live: boolean,
): Promise<void> {
  const disks = join(staging, "disks");
  const check = async (file: string, pattern: RegExp, what: string) => {
    let info: Awaited<ReturnType<typeof readDiskInfo>>;
    try {
      info = await readDiskInfo(file);
    } catch (e) {
      throw new ArchiveError(`its ${what} is not a usable disk: ${(e as Error).message}`);
    }
    if (!info.backing) return;
    const m = pattern.exec(info.backing.name);
    if (!m)
      throw new ArchiveError(
        `its ${what} is backed by ${JSON.stringify(info.backing.name).slice(0, 100)}, not by a disk node of the export`,
      );
    if (!existsSync(join(disks, m[1]!)))
      throw new ArchiveError(`its ${what} is backed by the node ${m[1]}, which the export does not hold`);
  };
  const top = existsSync(join(vmDir, "disk.qcow2")) ? join(vmDir, "disk.qcow2") : join(vmDir, "disk.img");
  if (!live) await check(top, VM_DISK_BACKING, "disk");
  for (const node of await readdir(disks))
    await check(join(disks, node), /^([a-z0-9-]{1,80}\.(?:qcow2|raw))$/, `disk node ${node}`);
  for (const node of snapshotNodes)
    if (!existsSync(join(disks, `${node}.qcow2`)) && !existsSync(join(disks, `${node}.raw`)))
      throw new ArchiveError(`a snapshot's disk node ${node.slice(0, 80)} is not in the export`);
  // The nodes are whole: a live move's active disk, over them, comes in its stream.
  if (live) return;
  try {
    await diskChain(top);
  } catch (e) {
    throw new ArchiveError(`its disk's chain is unusable: ${(e as Error).message}`);
  }
  // The VM's disk is written again once it runs, trusting its clean mark to mean exact refcounts; one from
  // another host is counted instead, so refcounts below their references refuse it here.
  if (top.endsWith(".qcow2"))
    try {
      await reclaimLeaks(top, { evenIfMarkedClean: true });
    } catch (e) {
      throw new ArchiveError(`its disk's cluster counts are unusable: ${(e as Error).message}`);
    }
}

/** Whether two files hold the same bytes. */
async function sameContent(a: string, b: string): Promise<boolean> {
  const [sa, sb] = await Promise.all([stat(a), stat(b)]);
  if (sa.size !== sb.size) return false;
  const [fa, fb] = await Promise.all([open(a, "r"), open(b, "r")]);
  try {
    const ba = Buffer.alloc(1 << 20);
    const bb = Buffer.alloc(1 << 20);
    for (let at = 0; at < sa.size; at += ba.length) {
      const [ra, rb] = await Promise.all([fa.read(ba, 0, ba.length, at), fb.read(bb, 0, bb.length, at)]);
      if (ra.bytesRead !== rb.bytesRead || !ba.subarray(0, ra.bytesRead).equals(bb.subarray(0, rb.bytesRead)))
        return false;
    }
    return true;
  } finally {
    await Promise.all([fa.close(), fb.close()]);
  }
}

/**
 * Reads the export file from `input` into a staging tree and verifies all of it. Resolves once it is
 * verified (call `commit`, or `discard`); rejects ArchiveError (bad input), ImportWriteError (the VM could
 * not be written), or what `accept` threw, with everything written already removed.
 */
export async function stageImport(
  input: AsyncIterable<Uint8Array>,
  target: ImportTarget,
): Promise<StagedImport> {
  const staging = join(target.home, `.tmp-import-${randomBytes(6).toString("hex")}`);
  const vmDir = join(staging, "vms", "vm");
  const sink = new StagingSink(staging, target);
  const discard = () => rm(staging, { recursive: true, force: true });
  try {
    await mkdir(staging, { mode: 0o700 });
    const manifest = await readArchive(readingErrors(input), sink);
    const accepted = sink.accepted!;
    const at = (target.now?.() ?? new Date()).toISOString();
    const exported = manifest.vm;
    // A VM given a new id (its own is taken here) takes its snapshot list along, which names the VM's id.
    if (accepted.id !== exported.id && existsSync(join(vmDir, SNAPSHOTS_FILE))) {
      const tree = JSON.parse(await readFile(join(vmDir, SNAPSHOTS_FILE), "utf8").catch(() => "null")) as {
        vmId?: string;
      } | null;
      if (tree && typeof tree === "object")
        await writeFileAtomic(
          join(vmDir, SNAPSHOTS_FILE),
          `${JSON.stringify({ ...tree, vmId: accepted.id }, null, 2)}\n`,
        );
    }
    let snapshotNodes: string[];
    try {
      snapshotNodes = (await readTree(vmDir, accepted.id)).snapshots.map((s) => s.diskNode);
    } catch (e) {
      throw new ArchiveError(`its snapshot list is unusable: ${(e as Error).message}`);
    }
    await checkDiskChains(staging, vmDir, snapshotNodes, target.live === true);
    const cards = accepted.networkInterfaces;
    const record: VmRecord = {
      ...exported,
      ...(cards === undefined ? {} : { networkInterfaces: cards }),
      name: accepted.name,
      id: accepted.id,
      statusMessage: "",
      history: withHistory(exported, {
        at,
        from: null,
        to: exported.status,
        reason:
          `import: recreated from an export of VM '${exported.name}' made ${manifest.exportedAt}` +
          (accepted.id === exported.id ? "" : " (given a new id: a VM on this host has the exported one)"),
      }),
    };
    await writeFileAtomic(join(vmDir, "vm.json"), serializeVmRecord(record));
    const commit = async () => {
      const disks = join(target.home, DISKS_DIR);
      const vmsDir = join(target.home, "vms");
      await mkdir(disks, { recursive: true, mode: 0o700 });
      /** Nodes this import added to disks/: taken back out when the commit fails. */
      const added: string[] = [];
      try {
        // Nodes first: a crash before the VM's directory is in place leaves only unreferenced nodes, which
        // the next garbage collection removes.
        for (const node of await readdir(join(staging, "disks"))) {
          const staged = join(staging, "disks", node);
          const final = join(disks, node);
          await chmod(staged, 0o444);
          try {
            await link(staged, final);
            added.push(final);
          } catch (e) {
            if ((e as NodeJS.ErrnoException).code !== "EEXIST") throw e;
            if (!(await sameContent(staged, final)))
              throw new HypervisorError(
                "bad-archive",
                `the export file is unusable here: its disk node ${node} differs from the node of that id in ${disks}; nothing was created`,
              );
          }
        }
        await syncDir(disks);
        // rename() onto an existing non-empty directory fails: a VM created meanwhile keeps its name.
        await rename(vmDir, join(vmsDir, accepted.name));
      } catch (e) {
        for (const node of added) await rm(node, { force: true });
        await discard();
        const code = (e as NodeJS.ErrnoException).code;
        if (code === "ENOTEMPTY" || code === "EEXIST")
          throw new HypervisorError("already-exists", `the VM '${accepted.name}' already exists`);
        throw e;
      }
      await syncDir(vmsDir);
      await discard();
    };
    return { record, manifest, commit, discard };
  } catch (e) {
    await sink.closeOpen();
    await discard();
    if (e instanceof HypervisorError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === "string" && err.syscall)
      throw new ImportWriteError(
        `could not write the imported VM into ${target.home}: ${describeFsError(err)}; nothing was created`,
      );
    throw e;
  }
}

/** The input's own failures (a client gone mid-upload) as bad input: the file did not arrive whole. */
async function* readingErrors(input: AsyncIterable<Uint8Array>): AsyncGenerator<Uint8Array> {
  const iterator = input[Symbol.asyncIterator]();
  for (;;) {
    let next: IteratorResult<Uint8Array>;
    try {
      next = await iterator.next();
    } catch (e) {
      throw new ArchiveError(`reading it failed (${(e as Error).message}): it did not arrive whole`);
    }
    if (next.done) return;
    yield next.value;
  }
}
