// Recreates a VM from an export file read from a stream: everything goes into a temp directory under
// vms/ (`.tmp-import-…`, which the store removes after a crash), and only once the whole stream is verified
// (every record's checksum, the trailer) is the VM's definition written and the directory renamed into
// place. On any error everything written is removed: nothing is created.

import { randomBytes } from "node:crypto";
import { type FileHandle, mkdir, open, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import { HypervisorError } from "../hypervisor-error.ts";
import { writeFileAtomic } from "../store.ts";
import { serializeVmRecord, type VmRecord, withHistory } from "../vm-record.ts";
import { ArchiveError, ImportWriteError } from "./archive-format.ts";
import { type ArchiveManifest, hostByteOrder } from "./archive-manifest.ts";
import { type ArchiveFileSink, type ArchiveSink, readArchive } from "./archive-reader.ts";

export interface ImportTarget {
  /** The data directory's vms/. */
  readonly vmsDir: string;
  /**
   * Called with the manifest before any file is written: checks that the VM can be recreated here and
   * reserves its name (throws to refuse). Returns the name and id the VM gets.
   */
  accept(manifest: ArchiveManifest): { readonly name: string; readonly id: string };
  readonly now?: () => Date;
}

export interface StagedImport {
  readonly record: VmRecord;
  readonly manifest: ArchiveManifest;
  /** Renames the verified VM directory into place (already-exists when the name was taken meanwhile). */
  commit(): Promise<void>;
  /** Removes everything written. */
  discard(): Promise<void>;
}

/** Writes each file of the archive into the staging directory, verified bytes only. */
class StagingSink implements ArchiveSink {
  accepted: { name: string; id: string } | undefined;
  /** The file being written, closed by `end` or, when the import fails mid-file, by `closeOpen`. */
  private current: FileHandle | undefined;

  constructor(
    private readonly dir: string,
    private readonly target: ImportTarget,
  ) {}

  async manifest(manifest: ArchiveManifest): Promise<void> {
    if (manifest.byteOrder !== hostByteOrder())
      throw new ArchiveError(
        `its saved state is ${manifest.byteOrder}-endian and this host is ${hostByteOrder()}-endian; tsvm cannot convert it`,
      );
    const status = manifest.vm.status;
    if (status !== "TERMINATED" && status !== "SUSPENDED")
      throw new ArchiveError(
        `it holds a VM that was ${status}; an export holds a TERMINATED or SUSPENDED VM`,
      );
    if (status === "SUSPENDED" && !manifest.files.some((f) => f.path.startsWith("vm/state/")))
      throw new ArchiveError("it holds a SUSPENDED VM without its saved state (vm/state/)");
    if (manifest.files.some((f) => f.path.startsWith("disks/")))
      throw new ArchiveError(
        "it holds shared disk nodes (disks/), which this tsvm cannot import yet: import it with a newer tsvm",
      );
    this.accepted = this.target.accept(manifest);
    await mkdir(this.dir, { mode: 0o700 });
  }

  async file(entry: { path: string; size: number }): Promise<ArchiveFileSink> {
    // isArchivePath (checked with the manifest) allows only `vm/` + plain components here.
    const path = join(this.dir, entry.path.slice("vm/".length));
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
 * Reads the export file from `input` into a staging directory and verifies all of it. Resolves once it is
 * verified (call `commit`, or `discard`); rejects ArchiveError (bad input), ImportWriteError (the VM could
 * not be written), or what `accept` threw, with everything written already removed.
 */
export async function stageImport(
  input: AsyncIterable<Uint8Array>,
  target: ImportTarget,
): Promise<StagedImport> {
  const dir = join(target.vmsDir, `.tmp-import-${randomBytes(6).toString("hex")}`);
  const sink = new StagingSink(dir, target);
  const discard = () => rm(dir, { recursive: true, force: true });
  let manifest: ArchiveManifest;
  try {
    manifest = await readArchive(readingErrors(input), sink);
    const accepted = sink.accepted!;
    const at = (target.now?.() ?? new Date()).toISOString();
    const exported = manifest.vm;
    const record: VmRecord = {
      ...exported,
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
    await writeFileAtomic(join(dir, "vm.json"), serializeVmRecord(record));
    return {
      record,
      manifest,
      commit: async () => {
        const final = join(target.vmsDir, accepted.name);
        try {
          // rename() onto an existing non-empty directory fails: a VM created meanwhile keeps its name.
          await rename(dir, final);
        } catch (e) {
          await discard();
          const code = (e as NodeJS.ErrnoException).code;
          if (code === "ENOTEMPTY" || code === "EEXIST")
            throw new HypervisorError("already-exists", `the VM '${accepted.name}' already exists`);
          throw e;
        }
        const fh = await open(target.vmsDir, "r");
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      },
      discard,
    };
  } catch (e) {
    await sink.closeOpen();
    await discard();
    if (e instanceof HypervisorError) throw e;
    const err = e as NodeJS.ErrnoException;
    if (typeof err.code === "string" && err.syscall)
      throw new ImportWriteError(
        `could not write the imported VM into ${target.vmsDir}: ${describeFsError(err)}; nothing was created`,
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
