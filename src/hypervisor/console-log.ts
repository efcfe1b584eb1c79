// A VM's serial console history on disk, rotated so that a guest printing forever cannot fill the disk:
// `console.log` grows to CONSOLE_LOG_MAX_BYTES, then becomes `console.log.1` (replacing the previous one)
// and a new `console.log` begins. Positions are absolute byte offsets of everything the guest ever printed
// (Compute Engine's getSerialPortOutput `start`/`next`), kept meaningful across rotations by
// `console.log.start`, which records where `console.log` begins and which file is `console.log.1`.
//
// The VMM is the only writer (ConsoleLogWriter, synchronous: the guest cannot outrun the disk and the order
// of bytes is kept); the daemon reads (readConsoleLog). A rotation is: rename console.log → console.log.1,
// write console.log.start atomically, create console.log. A crash between the rename and the record leaves
// a console.log.1 whose inode the record does not name: both the reader and the next writer see that and
// know that console.log.1 then begins where the record says console.log begins.

import { randomBytes } from "node:crypto";
import {
  closeSync,
  fstatSync,
  fsyncSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeSync,
} from "node:fs";
import { type FileHandle, open, readFile } from "node:fs/promises";
import { basename, dirname, join } from "node:path";

/** console.log is rotated at this size; with console.log.1, at most twice this is kept. */
export const CONSOLE_LOG_MAX_BYTES = 4 * 1024 * 1024;
/** Output is gathered up to this much, then written (or at the end of the current turn of the event loop). */
const WRITE_BUFFER_BYTES = 64 * 1024;
/** The position record is a few dozen bytes; a bigger file is not ours and is not read. */
const MAX_POSITION_FILE_BYTES = 4096;

/** console.log.start: where console.log begins, and the inode of the console.log.1 that precedes it. */
interface ConsoleLogPosition {
  /** Absolute offset of console.log's first byte. */
  readonly start: number;
  /** Inode number (decimal) of the console.log.1 that ends at `start`; null before the first rotation. */
  readonly rotatedIno: string | null;
}

const NO_POSITION: ConsoleLogPosition = { start: 0, rotatedIno: null };

export function rotatedLogPath(path: string): string {
  return `${path}.1`;
}

export function positionPath(path: string): string {
  return `${path}.start`;
}

function parsePosition(text: string | undefined): ConsoleLogPosition {
  if (text === undefined || text.length > MAX_POSITION_FILE_BYTES) return NO_POSITION;
  try {
    const raw = JSON.parse(text) as { start?: unknown; rotatedIno?: unknown };
    const start = raw.start;
    const ino = raw.rotatedIno;
    if (typeof start !== "number" || !Number.isSafeInteger(start) || start < 0) return NO_POSITION;
    if (ino !== null && (typeof ino !== "string" || !/^\d{1,20}$/.test(ino))) return NO_POSITION;
    return { start, rotatedIno: ino };
  } catch {
    // A torn or foreign file: positions restart at 0 rather than the log being unreadable.
    return NO_POSITION;
  }
}

/**
 * The window the files hold: console.log.1 is [first, start) and console.log [start, end), from the record
 * read and the console.log.1 found (its size and inode).
 */
function layout(
  recorded: ConsoleLogPosition,
  rotated: { size: number; ino: bigint } | undefined,
  currentSize: number,
): { first: number; start: number; end: number } {
  if (!rotated) return { first: recorded.start, start: recorded.start, end: recorded.start + currentSize };
  if (recorded.rotatedIno === rotated.ino.toString()) {
    return {
      first: recorded.start - Math.min(rotated.size, recorded.start),
      start: recorded.start,
      end: recorded.start + currentSize,
    };
  }
  // A rotation renamed console.log to console.log.1 but has not recorded it (yet, or ever: a crash):
  // console.log.1 begins where console.log did, and a console.log (if any) follows it.
  const start = recorded.start + rotated.size;
  return { first: recorded.start, start, end: start + currentSize };
}

/** Writes a VM's console output to console.log, rotating it; used only by the VMM. Never throws. */
export class ConsoleLogWriter {
  private fd = -1;
  private size = 0;
  private position: ConsoleLogPosition = NO_POSITION;
  private readonly pending = Buffer.alloc(WRITE_BUFFER_BYTES);
  private pendingBytes = 0;
  private flushScheduled = false;
  private failed = false;

  private constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly onError: (message: string) => void,
  ) {}

  /** Opens console.log for appending, first finishing a rotation a crash interrupted. */
  static open(
    path: string,
    options: { maxBytes?: number; onError?: (message: string) => void } = {},
  ): ConsoleLogWriter {
    const writer = new ConsoleLogWriter(
      path,
      Math.max(1, options.maxBytes ?? CONSOLE_LOG_MAX_BYTES),
      options.onError ?? (() => {}),
    );
    try {
      let text: string | undefined;
      try {
        text = readFileSync(positionPath(path), "utf8");
      } catch {
        text = undefined;
      }
      writer.position = parsePosition(text);
      const rotated = statOrUndefined(rotatedLogPath(path));
      if (rotated && rotated.ino.toString() !== writer.position.rotatedIno) {
        const { start } = layout(writer.position, rotated, 0);
        writer.recordPosition({ start, rotatedIno: rotated.ino.toString() });
      }
      writer.fd = openSync(path, "a", 0o600);
      writer.size = fstatSync(writer.fd).size;
    } catch (e) {
      writer.fail(e);
    }
    return writer;
  }

  /** Takes a copy of `bytes`; they reach the file at the end of this turn of the event loop at the latest. */
  write(bytes: Uint8Array): void {
    if (this.failed || bytes.length === 0) return;
    if (this.pendingBytes + bytes.length > this.pending.length) this.flush();
    if (bytes.length > this.pending.length) {
      this.writeOut(bytes);
      return;
    }
    this.pending.set(bytes, this.pendingBytes);
    this.pendingBytes += bytes.length;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Writes what is gathered. */
  flush(): void {
    this.flushScheduled = false;
    if (this.pendingBytes === 0) return;
    const n = this.pendingBytes;
    this.pendingBytes = 0;
    this.writeOut(this.pending.subarray(0, n));
  }

  close(): void {
    this.flush();
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
    this.failed = true;
  }

  private writeOut(bytes: Uint8Array): void {
    try {
      let offset = 0;
      while (offset < bytes.length && !this.failed) {
        if (this.size >= this.maxBytes) this.rotate();
        const n = Math.min(bytes.length - offset, this.maxBytes - this.size);
        let written = 0;
        while (written < n) written += writeSync(this.fd, bytes, offset + written, n - written);
        this.size += n;
        offset += n;
      }
    } catch (e) {
      this.fail(e);
    }
  }

  private rotate(): void {
    closeSync(this.fd);
    this.fd = -1;
    const rotated = rotatedLogPath(this.path);
    renameSync(this.path, rotated);
    const ino = statSync(rotated, { bigint: true }).ino;
    this.recordPosition({ start: this.position.start + this.size, rotatedIno: ino.toString() });
    this.fd = openSync(this.path, "a", 0o600);
    this.size = 0;
  }

  /** console.log.start, atomically (temp file, fsync, rename): a reader sees the old record or the new. */
  private recordPosition(position: ConsoleLogPosition): void {
    const target = positionPath(this.path);
    const temp = join(dirname(target), `.tmp-${randomBytes(6).toString("hex")}`);
    try {
      const fd = openSync(temp, "wx", 0o600);
      try {
        writeSync(fd, `${JSON.stringify(position)}\n`);
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
      renameSync(temp, target);
    } catch (e) {
      rmSync(temp, { force: true });
      throw e;
    }
    this.position = position;
  }

  /** The log is best effort: a full disk must not take the guest down. Said once, then output is dropped. */
  private fail(e: unknown): void {
    if (this.failed) return;
    this.failed = true;
    this.pendingBytes = 0;
    this.onError(`console log ${basename(this.path)} stopped: ${(e as Error).message}`);
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {}
      this.fd = -1;
    }
  }
}

function statOrUndefined(path: string): { size: number; ino: bigint } | undefined {
  try {
    const s = statSync(path, { bigint: true });
    return { size: Number(s.size), ino: s.ino };
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

async function openOrUndefined(path: string): Promise<FileHandle | undefined> {
  try {
    return await open(path, "r");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
}

async function readPosition(path: string): Promise<ConsoleLogPosition> {
  return parsePosition(await readFile(positionPath(path), "utf8").catch(() => undefined));
}

export interface ConsoleLogSlice {
  readonly contents: string;
  /** Where `contents` begins: `start` as asked, the first retained byte when that was rotated away, or the
   *  end of the output when `start` lies beyond it. */
  readonly start: number;
  /** Where the following read should start. */
  readonly next: number;
}

/**
 * Up to `maxBytes` of the console output from absolute position `start` (Compute Engine's
 * getSerialPortOutput): output older than the retained window (console.log.1 + console.log) is gone, and
 * then `start` in the answer is the window's first byte.
 */
export async function readConsoleLog(
  path: string,
  start: number,
  maxBytes: number,
): Promise<ConsoleLogSlice> {
  // The writer may rotate while we look: read the record, open both files, and read the record again;
  // a changed record means a rotation came between, so look again (a handle keeps its file's bytes).
  for (let attempt = 0; ; attempt++) {
    const recorded = await readPosition(path);
    const rotatedFh = await openOrUndefined(rotatedLogPath(path));
    const currentFh = await openOrUndefined(path);
    try {
      const again = await readPosition(path);
      const changed = again.start !== recorded.start || again.rotatedIno !== recorded.rotatedIno;
      if (changed && attempt < 5) continue;
      const rotatedStat = rotatedFh ? await rotatedFh.stat({ bigint: true }) : undefined;
      const rotated = rotatedStat ? { size: Number(rotatedStat.size), ino: rotatedStat.ino } : undefined;
      const currentSize = currentFh ? (await currentFh.stat()).size : 0;
      const window = layout(recorded, rotated, currentSize);
      const from = Math.min(Math.max(start, window.first), window.end);
      const length = Math.min(maxBytes, window.end - from);
      const buffer = Buffer.alloc(length);
      let filled = 0;
      // From console.log.1 for what precedes window.start, then from console.log.
      if (from < window.start && rotatedFh) {
        const n = Math.min(length, window.start - from);
        filled += (await rotatedFh.read(buffer, 0, n, from - window.first)).bytesRead;
      }
      if (filled < length && currentFh && from + filled >= window.start) {
        const at = from + filled - window.start;
        filled += (await currentFh.read(buffer, filled, length - filled, at)).bytesRead;
      }
      return { contents: buffer.subarray(0, filled).toString("utf8"), start: from, next: from + filled };
    } finally {
      await rotatedFh?.close();
      await currentFh?.close();
    }
  }
}
