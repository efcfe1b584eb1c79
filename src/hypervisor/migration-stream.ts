// The byte stream of a live migration from the source VMM to the target VMM (docs/cluster.md "Live
// migration"): the guest's RAM in rounds while it runs, then, paused, the last dirty pages and its machine
// state, then the SHA-256 of everything before. The target fills RAM in memory as pages arrive and uses
// nothing until the digest matched, so a corrupt, cut or forged stream leaves nothing behind.
//
//   frame    := kind (u8) · length (u32 LE) · payload[length]
//   HELLO  1  JSON {magic, version, engine, memoryBytes, ticket}: first, once; the ticket is the target's
//             one-time secret for this migration (it reached the source over the cluster-token API)
//   PAGES  2  first page number (u32 LE) · the pages' bytes (a whole number of 4 KiB pages, ≤ 8 MiB)
//   STATE  3  header length (u32 LE) · JSON {engine, version, tree, sections: [{type, length} | {ram: true}]}
//             · the bytes of every section but RAM's, in order; a later STATE replaces an earlier one
//   DISK   5  the next bytes (≤ 8 MiB) of the guest's active disk file (its writable top layer), in order,
//             after the guest paused and its disk was flushed: the layer changes while the guest runs, so it
//             goes in the stop-and-copy part (docs/cluster.md "Moving a running VM"); only when the target
//             expects a disk, and no more than the bound it gave. The target writes them to a file of its
//             own beside the VM's and renames it into place only once END's digest matched
//   END    4  SHA-256 (32 bytes) of every byte of the stream before this frame

import { createHash, randomBytes, timingSafeEqual } from "node:crypto";
import { type FileHandle, open, rename, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import {
  decodeStateTree,
  encodeStateTree,
  MAX_STATE_TREE_BYTES,
  STATE_TYPED_ARRAYS,
  type SnapshotLike,
  type StateArray,
  type StateArrayType,
  StateFormatError,
} from "../engines/riscv/riscv-engine.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { nonZeroRuns, pageRuns } from "./snapshot-file.ts";

export const MIGRATION_STREAM_MAGIC = "tsvm-live-migration";
export const MIGRATION_STREAM_VERSION = 1;

const HELLO = 1;
const PAGES = 2;
const STATE = 3;
const END = 4;
const DISK = 5;
const PAGE = 4096;
const FRAME_HEADER_BYTES = 5;
/** Largest frame of each kind: a bound on what a hostile sender can make the target hold. */
const MAX_HELLO_BYTES = 4096;
const MAX_PAGES_BYTES = 4 + (8 << 20);
const MAX_STATE_BYTES = 4 + MAX_STATE_TREE_BYTES + (64 << 20);
const MAX_DISK_FRAME_BYTES = 8 << 20;
const DIGEST_BYTES = 32;

/** A migration stream that cannot be used (bad, cut, forged): the target keeps nothing of it. */
export class MigrationStreamError extends HypervisorError {
  constructor(problem: string) {
    super("move-failed", `the live migration stream is unusable: ${problem}`);
  }
}

/**
 * The target said it will not run the guest (a line "failed: <why>"): a target says so only while nothing
 * of the guest can run there (before its launcher was asked to take the VM over), so the source runs on.
 */
export class TargetRefusal extends HypervisorError {
  constructor(why: string) {
    super("move-failed", `the target refused the guest: ${why}`);
  }
}

/**
 * The source sent the whole stream but the target's answer did not come (a connection lost, a target gone
 * after END): the target may run the guest already. The source keeps its guest paused until its launcher
 * settles who owns the VM (a VMM's "migrateSettle").
 */
export class MigrationUnconfirmedError extends HypervisorError {
  constructor(problem: string) {
    super(
      "migration-unconfirmed",
      `the whole guest was sent but the target did not confirm that it runs it (${problem}); it stays paused here until its owner is known`,
    );
  }
}

/** Where the sender's bytes go; resolves once the bytes are taken (backpressure). */
export interface MigrationSink {
  write(bytes: Buffer): Promise<void>;
}

/** What the source says about the guest in its HELLO. */
export interface MigrationHello {
  /** The VMM's engine (VmmSpec.engine): a state is only for the engine that saved it. */
  readonly engine: string;
  readonly memoryBytes: number;
  readonly ticket: string;
}

/** Writes a migration stream, keeping the running SHA-256 its END carries. */
export class MigrationStreamWriter {
  private readonly digest = createHash("sha256");
  /** Bytes written so far. */
  bytes = 0;

  constructor(private readonly sink: MigrationSink) {}

  hello(hello: MigrationHello): Promise<void> {
    const body = { magic: MIGRATION_STREAM_MAGIC, version: MIGRATION_STREAM_VERSION, ...hello };
    return this.frame(HELLO, [Buffer.from(JSON.stringify(body))]);
  }

  /**
   * Sends pages of `ram` (live: the guest may run meanwhile; each run is copied when it is sent, so what
   * changes after is the next round's): `pages` (sorted page numbers), or with null every non-zero page
   * (the target's RAM starts zeroed). Resolves with the bytes of RAM sent.
   */
  async pages(ram: Uint8Array, pages: Uint32Array | null): Promise<number> {
    const bytes = Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);
    let sent = 0;
    for (const [from, to] of pages === null ? nonZeroRuns(bytes) : pageRuns(pages)) {
      const first = Buffer.alloc(4);
      first.writeUInt32LE(from / PAGE);
      await this.frame(PAGES, [first, Buffer.from(bytes.subarray(from, to))]);
      sent += to - from;
    }
    return sent;
  }

  /** Sends the machine state `snapshot`, whose RAM section is `ram` (already sent as pages). */
  state(snapshot: SnapshotLike, ram: Uint8Array): Promise<void> {
    const encoded = encodeStateTree(snapshot.data);
    const bodies: Buffer[] = [];
    const sections = encoded.sections.map(({ array, type }) => {
      if (
        array.buffer === ram.buffer &&
        array.byteOffset === ram.byteOffset &&
        array.byteLength === ram.byteLength
      )
        return { ram: true };
      bodies.push(Buffer.from(array.buffer, array.byteOffset, array.byteLength));
      return { type, length: array.length };
    });
    const header = Buffer.from(
      JSON.stringify({ engine: snapshot.engine, version: snapshot.version, tree: encoded.json, sections }),
    );
    const size = Buffer.alloc(4);
    size.writeUInt32LE(header.length);
    return this.frame(STATE, [size, header, ...bodies]);
  }

  /**
   * Sends the disk file at `path` whole, in DISK frames (the guest paused, its writes flushed: the file
   * does not change meanwhile). Resolves with its size.
   */
  async disk(path: string): Promise<number> {
    const file = await open(path, "r");
    try {
      const chunk = Buffer.allocUnsafe(MAX_DISK_FRAME_BYTES);
      let at = 0;
      for (;;) {
        const { bytesRead } = await file.read(chunk, 0, chunk.length, at);
        if (bytesRead === 0) return at;
        // A copy: the sink may hold the frame while the next chunk is read into this buffer.
        await this.frame(DISK, [Buffer.from(chunk.subarray(0, bytesRead))]);
        at += bytesRead;
      }
    } finally {
      await file.close();
    }
  }

  end(): Promise<void> {
    return this.frame(END, [this.digest.digest()]);
  }

  private async frame(kind: number, parts: Buffer[]): Promise<void> {
    const head = Buffer.alloc(FRAME_HEADER_BYTES);
    head.writeUInt8(kind, 0);
    head.writeUInt32LE(
      parts.reduce((n, p) => n + p.length, 0),
      1,
    );
    const frame = Buffer.concat([head, ...parts]);
    // The END frame is not part of its own digest.
    if (kind !== END) this.digest.update(frame);
    this.bytes += frame.length;
    await this.sink.write(frame);
  }
}

/** What a whole, verified stream carried: the machine state with its RAM filled in. */
export interface ReceivedMigration {
  readonly snapshot: SnapshotLike;
  /** Bytes of the stream. */
  readonly bytes: number;
  /** Bytes of RAM pages it carried (pages sent again in later rounds counted again). */
  readonly ramBytes: number;
  /** Bytes of the disk file it carried (in place at ReceiveDisk.path now); 0 without one. */
  readonly diskBytes: number;
}

/** Where a target takes the guest's active disk file the stream carries, and how large it may be. */
export interface ReceiveDisk {
  /** Written (a new file beside it first) only once the whole stream is verified. */
  readonly path: string;
  readonly maxBytes: number;
}

/** Exactly-n-bytes reads from an async stream of chunks. */
class ChunkReader {
  private readonly iterator: AsyncIterator<Uint8Array>;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  constructor(input: AsyncIterable<Uint8Array>) {
    this.iterator = input[Symbol.asyncIterator]();
  }

  /** The next `n` bytes, or undefined when the stream ends first. */
  async read(n: number): Promise<Buffer | undefined> {
    while (this.pendingBytes < n) {
      const next = await this.iterator.next();
      if (next.done) return undefined;
      const chunk = Buffer.from(next.value.buffer, next.value.byteOffset, next.value.byteLength);
      this.pending.push(chunk);
      this.pendingBytes += chunk.length;
    }
    const all = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending);
    this.pending = all.length > n ? [all.subarray(n)] : [];
    this.pendingBytes = all.length - n;
    return all.subarray(0, n);
  }
}

/**
 * Reads a migration stream from `input` whose HELLO must carry `expect`'s ticket, engine and RAM
 * size, into `into` (zeroed, the guest's RAM size) or a fresh buffer; resolves once END's digest matched, with the last STATE and that RAM as
 * its RAM section. Anything else rejects with MigrationStreamError (nothing of it is kept).
 */
export async function receiveMigration(
  input: AsyncIterable<Uint8Array>,
  expect: MigrationHello,
  into?: ArrayBuffer,
  disk?: ReceiveDisk,
): Promise<ReceivedMigration> {
  if (into && into.byteLength !== expect.memoryBytes)
    throw new RangeError(`a RAM buffer of ${into.byteLength} bytes for a guest of ${expect.memoryBytes}`);
  const incomingDisk = disk ? new IncomingDisk(disk) : undefined;
  try {
    const got = await receiveFrames(input, expect, into, incomingDisk);
    await incomingDisk?.commit();
    return got;
  } catch (e) {
    await incomingDisk?.discard();
    throw e;
  }
}

/** The disk file a stream carries, written beside its final path and renamed there once verified. */
class IncomingDisk {
  private readonly staging: string;
  private file: FileHandle | undefined;
  bytes = 0;

  constructor(private readonly disk: ReceiveDisk) {
    this.staging = `${disk.path}.incoming-${randomBytes(4).toString("hex")}`;
  }

  async append(bytes: Buffer): Promise<void> {
    if (this.bytes + bytes.length > this.disk.maxBytes)
      throw new MigrationStreamError(`its disk is larger than the ${this.disk.maxBytes} bytes it may be`);
    this.file ??= await open(this.staging, "wx", 0o600);
    let done = 0;
    while (done < bytes.length) {
      const { bytesWritten } = await this.file.write(bytes, done, bytes.length - done, this.bytes + done);
      done += bytesWritten;
    }
    this.bytes += bytes.length;
  }

  /** The verified disk into place, durable (a stream without DISK frames leaves the path as it was). */
  async commit(): Promise<void> {
    if (!this.file) throw new MigrationStreamError("it carried no disk, and the target expects one");
    await this.file.sync();
    await this.file.close();
    this.file = undefined;
    await rename(this.staging, this.disk.path);
  }

  async discard(): Promise<void> {
    await this.file?.close().catch(() => {});
    this.file = undefined;
    await rm(this.staging, { force: true });
  }
}

async function receiveFrames(
  input: AsyncIterable<Uint8Array>,
  expect: MigrationHello,
  into: ArrayBuffer | undefined,
  disk: IncomingDisk | undefined,
): Promise<ReceivedMigration> {
  const reader = new ChunkReader(input);
  const digest = createHash("sha256");
  let bytes = 0;
  let ramBytes = 0;
  let ram: Uint8Array<ArrayBuffer> | undefined;
  let state:
    | { snapshot: Omit<SnapshotLike, "data">; tree: string; sections: Array<StateArray | null> }
    | undefined;
  for (;;) {
    const head = await reader.read(FRAME_HEADER_BYTES);
    if (!head) throw new MigrationStreamError(`it was cut after ${bytes} bytes, before its end`);
    const kind = head.readUInt8(0);
    const length = head.readUInt32LE(1);
    const max =
      kind === HELLO
        ? MAX_HELLO_BYTES
        : kind === PAGES
          ? MAX_PAGES_BYTES
          : kind === STATE
            ? MAX_STATE_BYTES
            : kind === END
              ? DIGEST_BYTES
              : kind === DISK && disk
                ? MAX_DISK_FRAME_BYTES
                : -1;
    if (max < 0)
      throw new MigrationStreamError(
        kind === DISK
          ? "it carries a disk, and the target expects none"
          : `a frame of unknown kind ${kind} at byte ${bytes}`,
      );
    if (length > max)
      throw new MigrationStreamError(`a frame of kind ${kind} is ${length} bytes, more than ${max}`);
    if ((kind === HELLO) !== (ram === undefined))
      throw new MigrationStreamError(ram ? "a second HELLO" : "it does not begin with HELLO");
    const body = await reader.read(length);
    if (!body) throw new MigrationStreamError(`it was cut after ${bytes} bytes, in a frame`);
    if (kind === END) {
      if (length !== DIGEST_BYTES || !timingSafeEqual(body, digest.digest()))
        throw new MigrationStreamError("its SHA-256 does not match (corrupted in transit)");
      if (!state) throw new MigrationStreamError("it ended without the machine state");
      const sections = state.sections.map((s) => s ?? ram!);
      let data: unknown;
      try {
        data = decodeStateTree(state.tree, sections);
      } catch (e) {
        if (e instanceof StateFormatError) throw new MigrationStreamError(e.problem);
        throw e;
      }
      return {
        snapshot: { ...state.snapshot, data },
        bytes: bytes + head.length + length,
        ramBytes,
        diskBytes: disk?.bytes ?? 0,
      };
    }
    digest.update(head);
    digest.update(body);
    bytes += head.length + length;
    if (kind === HELLO) {
      checkHello(body, expect);
      ram = into ? new Uint8Array(into) : new Uint8Array(expect.memoryBytes);
    } else if (kind === PAGES) {
      const pages = body.subarray(4);
      const at = body.length >= 4 ? body.readUInt32LE(0) * PAGE : -1;
      if (at < 0 || pages.length % PAGE !== 0 || at + pages.length > ram!.length)
        throw new MigrationStreamError(
          `a PAGES frame at byte ${bytes - length} lies outside the guest's RAM`,
        );
      ram!.set(pages, at);
      ramBytes += pages.length;
    } else if (kind === DISK) await disk!.append(body);
    else state = parseState(body);
  }
}

function checkHello(body: Buffer, expect: MigrationHello): void {
  let hello: Partial<MigrationHello & { magic: string; version: number }>;
  try {
    hello = JSON.parse(body.toString("utf8"));
  } catch {
    throw new MigrationStreamError("its HELLO is not JSON");
  }
  if (hello?.magic !== MIGRATION_STREAM_MAGIC)
    throw new MigrationStreamError("it is not a tsvm live migration");
  if (hello.version !== MIGRATION_STREAM_VERSION)
    throw new MigrationStreamError(`its version ${String(hello.version)} is not ${MIGRATION_STREAM_VERSION}`);
  // Compared as digests: the same length whatever was sent, in constant time.
  const sha = (s: unknown) => createHash("sha256").update(String(s)).digest();
  if (typeof hello.ticket !== "string" || !timingSafeEqual(sha(hello.ticket), sha(expect.ticket)))
    throw new MigrationStreamError("its ticket is wrong (not the migration this host expects)");
  if (hello.engine !== expect.engine)
    throw new MigrationStreamError(`it is a guest of engine ${String(hello.engine)}, not ${expect.engine}`);
  if (hello.memoryBytes !== expect.memoryBytes)
    throw new MigrationStreamError(
      `its guest has ${String(hello.memoryBytes)} bytes of RAM, not ${expect.memoryBytes}`,
    );
}

function parseState(body: Buffer): {
  snapshot: Omit<SnapshotLike, "data">;
  tree: string;
  sections: Array<StateArray | null>;
} {
  const bad = (why: string) => new MigrationStreamError(`its STATE frame ${why}`);
  const headerBytes = body.length >= 4 ? body.readUInt32LE(0) : Number.POSITIVE_INFINITY;
  if (4 + headerBytes > body.length) throw bad("is shorter than its header");
  let header: { engine?: unknown; version?: unknown; tree?: unknown; sections?: unknown };
  try {
    header = JSON.parse(body.subarray(4, 4 + headerBytes).toString("utf8"));
  } catch {
    throw bad("has a header that is not JSON");
  }
  if (
    typeof header.engine !== "string" ||
    !Number.isInteger(header.version) ||
    typeof header.tree !== "string" ||
    !Array.isArray(header.sections)
  )
    throw bad("lacks the engine, its version, the tree or the sections");
  let at = 4 + headerBytes;
  let rams = 0;
  const sections = header.sections.map((raw: { ram?: unknown; type?: unknown; length?: unknown }) => {
    if (raw?.ram === true) {
      rams++;
      return null;
    }
    const Ctor =
      typeof raw?.type === "string" && Object.hasOwn(STATE_TYPED_ARRAYS, raw.type)
        ? STATE_TYPED_ARRAYS[raw.type as StateArrayType]
        : undefined;
    const length = raw?.length;
    if (!Ctor || !Number.isSafeInteger(length) || (length as number) < 0)
      throw bad("describes a section wrongly");
    const byteLength = (length as number) * Ctor.BYTES_PER_ELEMENT;
    if (at + byteLength > body.length) throw bad("is shorter than its sections");
    // A copy of its own: a typed array needs its element alignment, which the frame's offset may lack.
    const array = new Ctor(length as number);
    new Uint8Array(array.buffer).set(body.subarray(at, at + byteLength));
    at += byteLength;
    return array;
  });
  if (rams !== 1) throw bad(`names ${rams} RAM sections, not 1`);
  if (at !== body.length) throw bad("is longer than its sections");
  return {
    snapshot: { engine: header.engine, version: header.version as number },
    tree: header.tree,
    sections,
  };
}

// After END the target answers on the same connection with one line: RUNNING_LINE once the guest runs
// there, or "failed: <why>" (or it closes the connection) when it will not.
const RUNNING_LINE = "running";
const MAX_ANSWER_BYTES = 1024;

/**
 * The sink of a stream over `socket`: a write resolves at once while the socket takes more (a frame per
 * run of pages must not wait a turn of the event loop each, which the guest shares), else once it
 * drained; it rejects once the socket failed or closed.
 */
export function socketSink(socket: Socket): MigrationSink {
  let failed: Error | undefined;
  socket.once("error", (e) => {
    failed ??= e;
  });
  socket.once("close", () => {
    failed ??= new Error("the connection closed");
  });
  return {
    write: async (bytes) => {
      if (failed) throw failed;
      if (socket.write(bytes)) return;
      await new Promise<void>((resolve, reject) => {
        const done = () => {
          socket.off("drain", done);
          socket.off("close", done);
          if (failed) reject(failed);
          else resolve();
        };
        socket.on("drain", done);
        socket.on("close", done);
      });
    },
  };
}

/** The target's answer on `socket`: resolves when the guest runs there, else rejects saying why. */
export function targetAnswer(socket: Socket): Promise<void> {
  return new Promise((resolve, reject) => {
    let text = "";
    const done = (error?: Error) => {
      socket.off("data", onData);
      socket.off("close", onClose);
      socket.off("error", onClose);
      if (error) reject(error);
      else resolve();
    };
    const onData = (chunk: Buffer) => {
      text += chunk.toString("utf8");
      const nl = text.indexOf("\n");
      if (nl < 0 && text.length < MAX_ANSWER_BYTES) return;
      const line = text.slice(0, nl < 0 ? MAX_ANSWER_BYTES : nl);
      if (line === RUNNING_LINE) done();
      else done(new TargetRefusal(line.replace(/^failed: /, "").slice(0, 300)));
    };
    const onClose = () =>
      done(new HypervisorError("move-failed", "the target closed the connection before the guest ran there"));
    socket.on("data", onData);
    socket.once("close", onClose);
    socket.once("error", onClose);
  });
}

/**
 * The target's answer: the guest runs here (undefined) or why it does not. Resolves once the line is
 * flushed (or the connection is gone).
 */
export function answerSource(socket: Socket, failure?: Error): Promise<void> {
  const line = failure ? `failed: ${failure.message.replace(/\s+/g, " ")}` : RUNNING_LINE;
  const flushed = new Promise<void>((resolve) => {
    socket.once("close", () => resolve());
    socket.end(`${line}\n`, () => resolve());
  });
  if (failure) {
    // The source stops sending once it reads the line; whatever it sent meanwhile is read and dropped.
    socket.resume();
    setTimeout(() => socket.destroy(), 10_000).unref();
  }
  return flushed;
}

/**
 * The source's side of a migration over TCP: connects to the target VMM at `target`, runs `send` (a
 * guest's migrateOut) with the sink, the ticket and the target's answer; a refusal the target sends early
 * ends the stream at once. Rejects with the target's refusal when it gave one.
 */
export async function sendOverTcp<T>(
  target: { readonly host: string; readonly port: number; readonly ticket: string },
  send: (sink: MigrationSink, ticket: string, confirmed: () => Promise<void>) => Promise<T>,
): Promise<T> {
  const socket = connect(target.port, target.host);
  socket.on("error", () => {});
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once("connect", resolve);
      socket.once("error", reject);
    });
  } catch (e) {
    socket.destroy();
    throw new HypervisorError(
      "move-failed",
      `cannot reach the target VMM at ${target.host}:${target.port}: ${(e as Error).message}`,
    );
  }
  let refusal: Error | undefined;
  const answer = targetAnswer(socket);
  answer.catch((r: Error) => {
    refusal = r;
    socket.destroy();
  });
  try {
    return await send(socketSink(socket), target.ticket, () => answer);
  } catch (e) {
    if (e instanceof MigrationUnconfirmedError) throw e;
    // Let a refusal on its way arrive: it says more than the broken pipe it caused.
    await new Promise((r) => setTimeout(r, 50));
    throw refusal ?? new HypervisorError("move-failed", `sending the guest failed: ${(e as Error).message}`);
  } finally {
    socket.destroy();
  }
}
