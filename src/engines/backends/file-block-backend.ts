// A disk backed by a raw image file on the host: the machine's BlockBackend port (src/machine/ports.ts)
// over node:fs, with every read and write asynchronous so the guest keeps running while the host disk works.
// Discard and write-zeroes punch holes in the file or zero its ranges (fallocate(2)), so space the guest
// frees (fstrim) goes back to the host.

import { close, fdatasync, fstat, open, read, write } from "node:fs";
import { MachineError } from "../../machine/base/machine-error.ts";
import type { BlockBackend, Completion } from "../../machine/ports.ts";
import {
  errnoName,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  fallocate,
} from "./fallocate.ts";

/** Zeros written where the filesystem can zero no range itself (never written to: shared by every disk). */
const ZEROS = new Uint8Array(1 << 20);

export interface FileBlockBackendOptions {
  /** Open the image read-only; the guest sees VIRTIO_BLK_F_RO and writes fail. */
  readonly readOnly?: boolean;
}

export class FileBlockBackend implements BlockBackend {
  private fd: number | null;
  /** The file's filesystem refused a mode once (EOPNOTSUPP): it is not asked again. */
  private canPunch = true;
  private canZeroRange = true;

  private constructor(
    readonly path: string,
    fd: number,
    readonly sizeBytes: number,
    readonly readOnly: boolean,
  ) {
    this.fd = fd;
  }

  /** Opens the raw image at `path`. Its size must be a multiple of 512 bytes (whole sectors). */
  static open(path: string, options: FileBlockBackendOptions = {}): Promise<FileBlockBackend> {
    const readOnly = options.readOnly ?? false;
    return new Promise((resolve, reject) => {
      open(path, readOnly ? "r" : "r+", (err, fd) => {
        if (err) {
          reject(new MachineError("disk-open-failed", `cannot open disk image ${path}: ${err.message}`));
          return;
        }
        fstat(fd, (err2, st) => {
          const problem = err2
            ? `cannot stat disk image ${path}: ${err2.message}`
            : !st.isFile()
              ? `disk image ${path} is not a regular file`
              : st.size % 512 !== 0
                ? `disk image ${path} is ${st.size} bytes, not a whole number of 512-byte sectors`
                : null;
          if (problem !== null) {
            close(fd, () => reject(new MachineError("bad-disk-image", problem)));
            return;
          }
          resolve(new FileBlockBackend(path, fd, st.size, readOnly));
        });
      });
    });
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    const problem = this.check(offset, dst.length);
    if (problem !== null) {
      done(problem);
      return;
    }
    this.readFrom(this.fd!, offset, dst, 0, done);
  }

  /** Reads until `dst` is full: fs.read may return fewer bytes than asked. */
  private readFrom(fd: number, offset: number, dst: Uint8Array, at: number, done: Completion): void {
    if (at === dst.length) {
      done(null);
      return;
    }
    read(fd, dst, at, dst.length - at, offset + at, (err, n) => {
      if (err) done(`read of disk image ${this.path} failed: ${err.message}`);
      else if (n === 0) done(`disk image ${this.path} ended early (was it truncated?)`);
      else this.readFrom(fd, offset, dst, at + n, done);
    });
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    const problem = this.checkWrite(offset, src.length);
    if (problem !== null) {
      done(problem);
      return;
    }
    this.writeTo(this.fd!, offset, src, 0, done);
  }

  private writeTo(fd: number, offset: number, src: Uint8Array, at: number, done: Completion): void {
    if (at === src.length) {
      done(null);
      return;
    }
    write(fd, src, at, src.length - at, offset + at, (err, n) => {
      if (err) done(`write to disk image ${this.path} failed: ${err.message}`);
      else this.writeTo(fd, offset, src, at + n, done);
    });
  }

  /**
   * Punches a hole (the file keeps its size): the host frees the blocks and the range reads as zeros. On a
   * filesystem without holes nothing happens, which the port allows.
   */
  discard(offset: number, length: number, done: Completion): void {
    const problem = this.checkWrite(offset, length);
    if (problem !== null) done(problem);
    else done(this.punch(offset, length, "discard") ?? null);
  }

  /**
   * Makes the range read as zeros: with `unmap` by punching a hole, without it (or where holes are refused)
   * by FALLOC_FL_ZERO_RANGE, which keeps the blocks allocated, and where that is refused too by writing
   * zeros.
   */
  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void {
    const problem = this.checkWrite(offset, length);
    if (problem !== null) {
      done(problem);
      return;
    }
    const punched = unmap ? this.punch(offset, length, "write-zeroes") : "unsupported";
    if (punched !== "unsupported") {
      done(punched ?? null);
      return;
    }
    if (this.canZeroRange) {
      const r = fallocate(this.fd!, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, offset, length);
      if (r === "ok") {
        done(null);
        return;
      }
      if (r !== "unsupported") {
        done(this.failed("write-zeroes", offset, length, r.errno));
        return;
      }
      this.canZeroRange = false;
    }
    this.writeZeros(this.fd!, offset, offset + length, done);
  }

  /** Punches [offset, offset + length): undefined once done, "unsupported", or the failure's message. */
  private punch(offset: number, length: number, what: string): string | "unsupported" | undefined {
    if (!this.canPunch) return "unsupported";
    const r = fallocate(this.fd!, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, offset, length);
    if (r === "ok") return undefined;
    if (r !== "unsupported") return this.failed(what, offset, length, r.errno);
    this.canPunch = false;
    return "unsupported";
  }

  private failed(what: string, offset: number, length: number, errno: number): string {
    return `${what} of ${length} bytes at ${offset} in disk image ${this.path} failed: fallocate: ${errnoName(errno)}`;
  }

  /** Writes zeros over [at, end) a megabyte at a time. */
  private writeZeros(fd: number, at: number, end: number, done: Completion): void {
    if (at === end) {
      done(null);
      return;
    }
    write(fd, ZEROS, 0, Math.min(ZEROS.length, end - at), at, (err, n) => {
      if (err) done(`write-zeroes to disk image ${this.path} failed: ${err.message}`);
      else this.writeZeros(fd, at + n, end, done);
    });
  }

  /** fdatasync: the guest's flush means its writes must survive a host crash. */
  flush(done: Completion): void {
    if (this.fd === null) {
      done(`disk image ${this.path} is closed`);
      return;
    }
    if (this.readOnly) {
      done(null);
      return;
    }
    fdatasync(this.fd, (err) => done(err ? `flush of disk image ${this.path} failed: ${err.message}` : null));
  }

  /** Closes the file; later requests fail. Wait for outstanding requests first. */
  close(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    if (fd === null) return Promise.resolve();
    return new Promise((resolve, reject) =>
      close(fd, (err) =>
        err
          ? reject(new MachineError("disk-close-failed", `closing ${this.path}: ${err.message}`))
          : resolve(),
      ),
    );
  }

  private checkWrite(offset: number, len: number): string | null {
    return this.readOnly ? `disk image ${this.path} is read-only` : this.check(offset, len);
  }

  private check(offset: number, len: number): string | null {
    if (this.fd === null) return `disk image ${this.path} is closed`;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 512 !== 0 || len % 512 !== 0)
      return `unaligned access of ${len} bytes at ${offset} to disk image ${this.path}`;
    if (offset + len > this.sizeBytes)
      return `access of ${len} bytes at ${offset} is beyond the end of disk image ${this.path}`;
    return null;
  }
}
