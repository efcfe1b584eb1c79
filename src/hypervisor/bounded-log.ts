// A log file a guest (or anything else) cannot grow without bound: lines are capped in length, the file is
// rotated at a size (one previous file kept, `<path>.1`), and lines that may come from a guest are
// rate-limited, with a summary line saying how many were dropped. Used for vmm.log and daemon.log, whose
// writers are the process's stderr.

import { closeSync, fstatSync, openSync, renameSync, statSync, writeSync } from "node:fs";

/** A log is rotated at this size; with its `.1`, at most twice this is kept. */
export const LOG_MAX_BYTES = 1024 * 1024;
/** Longer lines are cut here (a guest's line can be as long as it likes). */
export const LOG_MAX_LINE_BYTES = 2048;
/** Rate-limited lines: at most this many per window; the rest are counted and summarised. */
export const LOG_RATE_LINES = 100;
export const LOG_RATE_WINDOW_MS = 10_000;

export interface BoundedLogOptions {
  readonly maxBytes?: number;
  readonly rateLines?: number;
  readonly rateWindowMs?: number;
  readonly now?: () => number;
}

/** Renames `path` to `path.1` when it is larger than `maxBytes` (before a new writer opens it to append). */
export function rotateIfLarger(path: string, maxBytes = LOG_MAX_BYTES): void {
  try {
    if (statSync(path).size > maxBytes) renameSync(path, `${path}.1`);
  } catch {
    // Missing, or not ours to rotate: the writer that opens it next is bounded anyway.
  }
}

export class BoundedLog {
  private fd = -1;
  private size = 0;
  private windowStart: number;
  private linesInWindow = 0;
  private droppedInWindow = 0;
  /** Every rate-limited line dropped since the log was opened. */
  droppedTotal = 0;
  private summaryTimer: NodeJS.Timeout | undefined;
  private readonly maxBytes: number;
  private readonly rateLines: number;
  private readonly rateWindowMs: number;
  private readonly now: () => number;

  constructor(
    readonly path: string,
    options: BoundedLogOptions = {},
  ) {
    this.maxBytes = options.maxBytes ?? LOG_MAX_BYTES;
    this.rateLines = options.rateLines ?? LOG_RATE_LINES;
    this.rateWindowMs = options.rateWindowMs ?? LOG_RATE_WINDOW_MS;
    this.now = options.now ?? Date.now;
    this.windowStart = this.now();
    this.open();
  }

  /** Writes `text` (one or more lines) as it is: for the process's own messages. */
  write(text: string): void {
    for (const line of splitLines(text)) this.append(line);
  }

  /** Writes `text` line by line, each subject to the rate limit: for lines a guest can cause. */
  writeLimited(text: string): void {
    for (const line of splitLines(text)) {
      this.rollWindow();
      if (this.linesInWindow >= this.rateLines) {
        this.droppedInWindow++;
        this.droppedTotal++;
        // Said even when the guest falls silent: the summary comes at the window's end.
        this.summaryTimer ??= setTimeout(
          () => {
            this.summaryTimer = undefined;
            this.rollWindow();
          },
          this.windowStart + this.rateWindowMs - this.now(),
        ).unref();
        continue;
      }
      this.linesInWindow++;
      this.append(line);
    }
  }

  /** Writes the pending summary and closes the file. */
  close(): void {
    this.summarise();
    clearTimeout(this.summaryTimer);
    if (this.fd >= 0) closeSync(this.fd);
    this.fd = -1;
  }

  private rollWindow(): void {
    if (this.now() - this.windowStart < this.rateWindowMs) return;
    this.summarise();
    this.windowStart = this.now();
    this.linesInWindow = 0;
  }

  private summarise(): void {
    if (this.droppedInWindow === 0) return;
    this.append(
      `${new Date().toISOString()} ${this.droppedInWindow} lines dropped (more than ${this.rateLines} in ` +
        `${this.rateWindowMs / 1000} s; ${this.droppedTotal} dropped in all)`,
    );
    this.droppedInWindow = 0;
  }

  private append(line: string): void {
    let bytes = Buffer.from(`${line}\n`);
    if (bytes.length > LOG_MAX_LINE_BYTES)
      bytes = Buffer.concat([bytes.subarray(0, LOG_MAX_LINE_BYTES - 14), Buffer.from(" [line cut]\n")]);
    if (this.fd < 0) return;
    if (this.size > 0 && this.size + bytes.length > this.maxBytes) this.rotate();
    try {
      this.size += writeSync(this.fd, bytes);
    } catch {
      // A full disk: the line is lost, the process goes on (logging must never take a VM down).
    }
  }

  private open(): void {
    try {
      this.fd = openSync(this.path, "a", 0o600);
      this.size = fstatSync(this.fd).size;
    } catch {
      this.fd = -1;
    }
  }

  private rotate(): void {
    closeSync(this.fd);
    this.fd = -1;
    try {
      renameSync(this.path, `${this.path}.1`);
    } catch {
      // Could not rotate: reopening appends to the same file, and the cap is kept by not writing.
    }
    this.open();
    if (this.size + 1 > this.maxBytes) {
      if (this.fd >= 0) closeSync(this.fd);
      this.fd = -1;
    }
  }
}

function splitLines(text: string): string[] {
  const lines = text.split("\n");
  if (lines.at(-1) === "") lines.pop();
  return lines;
}

/**
 * When this process's stderr is the file at `path` (as the daemon opens vmm.log for a VMM, and the CLI
 * daemon.log for a daemon it starts), routes every write to stderr through a rate-limited BoundedLog on
 * that file, and returns the log (whose `write` is for the process's own lines); undefined when stderr is
 * something else (a terminal, a test's pipe). What Node writes to fd 2 itself (a fatal error's stack) still
 * lands in the file or, after a rotation, in its `.1`: one stack, bounded.
 */
export function boundStderr(path: string, options?: BoundedLogOptions): BoundedLog | undefined {
  try {
    const err = fstatSync(2);
    const file = statSync(path);
    if (err.ino !== file.ino || err.dev !== file.dev) return undefined;
  } catch {
    return undefined;
  }
  const log = new BoundedLog(path, options);
  const write = (chunk: unknown, encoding?: unknown, callback?: unknown): boolean => {
    log.writeLimited(typeof chunk === "string" ? chunk : Buffer.from(chunk as Uint8Array).toString("utf8"));
    const cb = typeof encoding === "function" ? encoding : callback;
    if (typeof cb === "function") process.nextTick(cb as () => void);
    return true;
  };
  process.stderr.write = write as typeof process.stderr.write;
  return log;
}
