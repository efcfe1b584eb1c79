// Takes a state saved by the machine in a browser tab into a SUSPENDED VM (PUT /machine/vms/{name}/state,
// framed as src/machine/state/tab-state-upload-format.ts says), so that `tsvm resume` continues it. All or
// nothing: the state is written to a new directory beside the VM's and checked whole — every checksum, the
// image, what the disk started from, and a trial restore into a machine built as the VM's — before the
// disk pages the guest wrote in the tab are written (the bytes they replace kept to put back on failure)
// and the new state is swapped in as a suspend swaps its own (vmm-main.ts).

import { createHash, randomBytes } from "node:crypto";
import { mkdir, open, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import type { RiscvEngineOptions } from "../engines/riscv/riscv-engine.ts";
import {
  checkTabUploadHeader,
  MAX_TAB_UPLOAD_HEADER_BYTES,
  parseStateManifest,
  RiscvEngine,
  StateFormatError,
  TAB_UPLOAD_MAGIC,
  type TabUploadHeader,
} from "../engines/riscv/riscv-engine.ts";
import { GUEST_AGENT_PORT_NAME } from "../engines/riscv/guest-agent-client.ts";
import { activeDiskOf, openActiveDisk } from "./disk-store.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { readSnapshot } from "./snapshot-file.ts";
import { NEW_STATE_PREFIX, OLD_STATE_PREFIX, type VmPaths } from "./store.ts";
import type { TabMachines } from "./tab-machines.ts";
import { bootFilesOf } from "./vm-boot-files.ts";
import type { VmRecord } from "./vm-record.ts";

type BlockBackend = NonNullable<RiscvEngineOptions["disks"]>[number];
type DiskBackend = Awaited<ReturnType<typeof openActiveDisk>>;

const ARCH = "riscv64";

function refused(name: string, problem: string): HypervisorError {
  return new HypervisorError(
    "invalid-argument",
    `the state offered for VM '${name}' is refused: ${problem}; nothing was changed`,
  );
}

/** Reads exact byte counts from a request body. */
class BodyReader {
  private readonly source: AsyncIterator<Uint8Array>;
  private pending: Uint8Array = new Uint8Array(0);
  private at = 0;
  /** Bytes handed out so far. */
  consumed = 0;

  constructor(body: AsyncIterable<Uint8Array>) {
    this.source = body[Symbol.asyncIterator]();
  }

  /** Up to `max` next bytes (a view, valid until the next call); empty at the end of the body. */
  async next(max: number): Promise<Uint8Array> {
    while (this.at >= this.pending.length) {
      const r = await this.source.next();
      if (r.done) return new Uint8Array(0);
      this.pending = r.value;
      this.at = 0;
    }
    const n = Math.min(max, this.pending.length - this.at);
    const out = this.pending.subarray(this.at, this.at + n);
    this.at += n;
    this.consumed += n;
    return out;
  }

  /** Exactly `length` bytes, or throws naming `what`. */
  async exactly(length: number, what: string): Promise<Buffer> {
    const out = Buffer.alloc(length);
    for (let got = 0; got < length; ) {
      const chunk = await this.next(length - got);
      if (chunk.length === 0) throw new StateFormatError(`the upload ends inside ${what}`);
      out.set(chunk, got);
      got += chunk.length;
    }
    return out;
  }

  /** Streams `length` bytes into `sink`, hashing them; returns the SHA-256 (hex). */
  async pipe(length: number, what: string, sink: (chunk: Uint8Array, offset: number) => Promise<void>) {
    const hash = createHash("sha256");
    for (let got = 0; got < length; ) {
      const chunk = await this.next(Math.min(length - got, 8 << 20));
      if (chunk.length === 0) throw new StateFormatError(`the upload ends inside ${what}`);
      hash.update(chunk);
      await sink(chunk, got);
      got += chunk.length;
    }
    return hash.digest("hex");
  }

  async atEnd(): Promise<boolean> {
    return (await this.next(1)).length === 0;
  }
}

/** Writes a new file from a stream of chunks; durable when `close` resolves. */
async function streamToFile(reader: BodyReader, path: string, length: number, what: string): Promise<string> {
  const fh = await open(path, "wx", 0o600);
  try {
    const sha = await reader.pipe(length, what, async (chunk, offset) => {
      for (let at = 0; at < chunk.length; ) {
        const { bytesWritten } = await fh.write(chunk, at, chunk.length - at, offset + at);
        at += bytesWritten;
      }
    });
    await fh.truncate(length);
    await fh.sync();
    return sha;
  } finally {
    await fh.close();
  }
}

function diskIo(disk: DiskBackend, op: "read" | "write", offset: number, bytes: Uint8Array): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (e: string | null) =>
      e === null ? resolve() : reject(new HypervisorError("internal", `the VM's disk: ${e}`));
    if (op === "read") disk.read(offset, bytes, done);
    else disk.write(offset, bytes, done);
  });
}

function flush(disk: DiskBackend): Promise<void> {
  return new Promise((resolve, reject) =>
    disk.flush((e) =>
      e === null ? resolve() : reject(new HypervisorError("internal", `the VM's disk: ${e}`)),
    ),
  );
}

/**
 * Restores `dir`'s state into a machine built as the VM's (its harts, memory, devices), on the state's
 * own RAM: what `tsvm resume` would do first, so a state it would refuse is refused now.
 */
async function trialRestore(dir: string, record: VmRecord, paths: VmPaths, diskBytes: number): Promise<void> {
  const snapshot = await readSnapshot(dir, { arch: ARCH });
  const files = await bootFilesOf(paths.dir, record.image);
  const [firmware, kernel, initrd] = await Promise.all([
    readFile(files.firmware),
    readFile(files.kernel),
    readFile(files.initrd),
  ]);
  const none = () => {};
  // The VM's disk offers discard and write-zeroes (qcow2), which a guest's driver may have accepted.
  const disk: BlockBackend = {
    sizeBytes: diskBytes,
    readOnly: false,
    read: (_o, _d, done) => done("not read in a trial restore"),
    write: (_o, _s, done) => done("not written in a trial restore"),
    flush: (done) => done(null),
    discard: (_o, _l, done) => done(null),
    writeZeroes: (_o, _l, _u, done) => done(null),
  };
  const engine = new RiscvEngine({
    config: {
      harts: record.cpus,
      memoryBytes: record.memoryMiB * 1048576,
      firmware: { name: files.firmware, bytes: firmware },
      kernel: { name: files.kernel, bytes: kernel },
      initrd: initrd.length > 0 ? { name: files.initrd, bytes: initrd } : null,
      bootargs: "",
    },
    console: { write: none },
    disks: [disk],
    virtioConsole: { sink: { write: none }, ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: none } }] },
    nics: (record.networkInterfaces ?? []).map((nic) => ({
      mac: Uint8Array.from(nic.mac.split(":").map((h) => Number.parseInt(h, 16))),
      backend: { send: none, onFrame: null, resume: none, close: async () => {} },
    })),
    ram: RiscvEngine.ramOf(snapshot),
  });
  await engine.restoreState(snapshot);
  await engine.stop();
}

/** The SHA-256 of the tree of the state now in `stateDir`, or undefined when it has none. */
async function currentTreeSha(stateDir: string): Promise<string | undefined> {
  try {
    return parseStateManifest(await readFile(join(stateDir, "manifest.json"), "utf8"), ARCH).treeSha256;
  } catch {
    return undefined;
  }
}

export async function takeTabState(
  tab: TabMachines,
  name: string,
  body: AsyncIterable<Uint8Array>,
): Promise<{ readonly vm: string; readonly diskBytesWritten: number; readonly stateBytes: number }> {
  return tab.holdSuspended(name, async (record, paths) => {
    const disk = await openActiveDisk(activeDiskOf(paths.dir));
    const temp = join(paths.dir, `${NEW_STATE_PREFIX}${randomBytes(6).toString("hex")}`);
    let tempMade = false;
    let undo: Array<{ offset: number; bytes: Uint8Array }> | undefined;
    try {
      const reader = new BodyReader(body);
      let header: TabUploadHeader;
      try {
        const magic = (await reader.exactly(8, "its magic")).toString("latin1");
        if (magic !== TAB_UPLOAD_MAGIC)
          throw new StateFormatError(
            `it does not start with ${TAB_UPLOAD_MAGIC}: it is not a state from a tab`,
          );
        const headerBytes = (await reader.exactly(4, "its header's length")).readUInt32LE(0);
        if (headerBytes > MAX_TAB_UPLOAD_HEADER_BYTES)
          throw new StateFormatError(
            `its header is ${headerBytes} bytes, more than ${MAX_TAB_UPLOAD_HEADER_BYTES}`,
          );
        const headerText = (await reader.exactly(headerBytes, "its header")).toString("utf8");
        let parsed: unknown;
        try {
          parsed = JSON.parse(headerText);
        } catch {
          throw new StateFormatError("its header is not JSON");
        }
        header = checkTabUploadHeader(parsed, disk.sizeBytes);
        parseStateManifest(JSON.stringify(header.manifest), ARCH);
      } catch (e) {
        if (e instanceof StateFormatError) throw refused(name, e.problem);
        throw e;
      }
      const vmHash = await tab.vmImageHash(record, paths);
      if (header.image !== vmHash)
        throw refused(
          name,
          `it is the state of a machine booted from other boot files (image ${header.image.slice(0, 16)}), and VM '${name}' boots image '${record.image}' (${vmHash}): a guest's memory runs only on the kernel it booted`,
        );
      if (header.base.kind === "image") {
        if (
          header.disk.length !== 1 ||
          header.disk[0]!.offset !== 0 ||
          header.disk[0]!.length !== disk.sizeBytes
        )
          throw refused(
            name,
            `a machine booted from the image must send its whole ${disk.sizeBytes}-byte disk`,
          );
      } else {
        const now = await currentTreeSha(paths.stateDir);
        if (header.base.vmId !== record.id || header.base.treeSha256 !== now)
          throw refused(
            name,
            header.base.vmId !== record.id
              ? "its disk started from another VM's"
              : `its disk started from VM '${name}' as it was suspended earlier; the VM has been resumed since, so its disk has moved on`,
          );
      }
      // The state's files, each checked against the manifest as it arrives.
      await mkdir(temp, { mode: 0o700 });
      tempMade = true;
      const m = header.manifest;
      const treeSha = await streamToFile(reader, join(temp, "state.json"), m.treeBytes, "state.json");
      if (treeSha !== m.treeSha256)
        throw refused(name, "state.json does not match its SHA-256 in the manifest");
      for (const s of m.sections) {
        const sha = await streamToFile(reader, join(temp, s.file), s.byteLength, s.file);
        if (sha !== s.sha256) throw refused(name, `${s.file} does not match its SHA-256 in the manifest`);
      }
      const runs: Array<{ offset: number; bytes: Buffer }> = [];
      for (const run of header.disk)
        runs.push({ offset: run.offset, bytes: await reader.exactly(run.length, "its disk pages") });
      if (!(await reader.atEnd()))
        throw refused(name, `it has bytes after its last disk run (at byte ${reader.consumed})`);
      const manifestFile = await open(join(temp, "manifest.json"), "wx", 0o600);
      try {
        await manifestFile.writeFile(`${JSON.stringify(m, null, 2)}\n`);
        await manifestFile.sync();
      } finally {
        await manifestFile.close();
      }
      try {
        await trialRestore(temp, record, paths, disk.sizeBytes);
      } catch (e) {
        throw refused(name, `a machine built as the VM's does not take it (${(e as Error).message})`);
      }
      // Only now is anything of the VM changed: its disk, then its state.
      undo = [];
      for (const run of runs) {
        const old = new Uint8Array(run.bytes.length);
        await diskIo(disk, "read", run.offset, old);
        undo.push({ offset: run.offset, bytes: old });
        await diskIo(disk, "write", run.offset, run.bytes);
      }
      await flush(disk);
      const old = join(paths.dir, `${OLD_STATE_PREFIX}${randomBytes(6).toString("hex")}`);
      await rename(paths.stateDir, old);
      try {
        await rename(temp, paths.stateDir);
      } catch (e) {
        await rename(old, paths.stateDir);
        throw e;
      }
      tempMade = false;
      undo = undefined;
      await rm(old, { recursive: true, force: true });
      return {
        vm: name,
        diskBytesWritten: runs.reduce((n, r) => n + r.bytes.length, 0),
        stateBytes: m.treeBytes + m.sections.reduce((n, s) => n + s.byteLength, 0),
      };
    } finally {
      if (undo) {
        // The state was not swapped in: the disk goes back to what that state expects.
        for (const u of undo.reverse()) await diskIo(disk, "write", u.offset, u.bytes).catch(() => {});
        await flush(disk).catch(() => {});
      }
      await disk.close();
      if (tempMade) await rm(temp, { recursive: true, force: true });
    }
  });
}
