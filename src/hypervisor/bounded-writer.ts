// A writer that bounds what it queues on a stream for a slow reader, for output whose source cannot wait
// (a guest printing, a command's output): past `limit` queued bytes it drops what it is given and counts
// it; once the reader has caught up ('drain') a notice of how much was dropped goes out before anything
// newer, so the reader learns what it missed and where.

import type { Writable } from "node:stream";

export interface BoundedWriterOptions {
  /** Queued bytes past which new output is dropped; the queue holds at most this plus one write. */
  readonly limit: number;
  /** The in-band notice for `dropped` units missed (bytes of the source's output). */
  readonly notice: (dropped: number) => string | Uint8Array;
}

export class BoundedWriter {
  /** Units dropped since the last notice went out. */
  private pending = 0;
  /** Units dropped over the writer's life. */
  private droppedTotal = 0;

  constructor(
    private readonly stream: Writable,
    private readonly options: BoundedWriterOptions,
  ) {
    stream.on("drain", () => this.flush());
  }

  /**
   * Queues `chunk` unless the reader is `limit` bytes behind, in which case it is dropped and counted as
   * `units` (default: its length; exec output counts the command's bytes, not the encoded line's).
   * Returns whether it was queued.
   */
  write(
    chunk: string | Uint8Array,
    units = typeof chunk === "string" ? Buffer.byteLength(chunk) : chunk.length,
  ): boolean {
    if (!this.open) return false;
    if (this.stream.writableLength >= this.options.limit) {
      this.pending += units;
      this.droppedTotal += units;
      return false;
    }
    this.flush();
    this.stream.write(chunk);
    return true;
  }

  /** Writes the notice of what was dropped, if anything was, however full the queue (before a last line). */
  flush(): void {
    if (this.pending === 0 || !this.open) return;
    const dropped = this.pending;
    this.pending = 0;
    this.stream.write(this.options.notice(dropped));
  }

  /** Bytes queued on the stream, not yet taken by the reader (or the kernel). */
  get buffered(): number {
    return this.stream.writableLength;
  }

  get dropped(): number {
    return this.droppedTotal;
  }

  private get open(): boolean {
    return !this.stream.destroyed && this.stream.writable;
  }
}
