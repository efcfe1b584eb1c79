// A disk backed by a raw image file on the host: the machine's BlockBackend port (src/machine/ports.ts)
// over node:fs, with every read and write asynchronous so the guest keeps running while the host disk works.

import { close, fdatasync, fstat, open, read, write } from "node:fs";
import { MachineError } from "../../machine/base/machine-error.ts";
import type { BlockBackend, Completion } from "../../machine/ports.ts";

export interface FileBlockBackendOptions {
  /** Open the image read-only; the guest sees VIRTIO_BLK_F_RO and writes fail. */
  readonly readOnly?: boolean;
}

export class FileBlockBackend implements BlockBackend {
  private fd: number | null;

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
    if (this.readOnly) {
      done(`disk image ${this.path} is read-only`);
      return;
    }
    const problem = this.check(offset, src.length);
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

  private check(offset: number, len: number): string | null {
    if (this.fd === null) return `disk image ${this.path} is closed`;
    if (!Number.isSafeInteger(offset) || offset < 0 || offset % 512 !== 0 || len % 512 !== 0)
      return `unaligned access of ${len} bytes at ${offset} to disk image ${this.path}`;
    if (offset + len > this.sizeBytes)
      return `access of ${len} bytes at ${offset} is beyond the end of disk image ${this.path}`;
    return null;
  }
}
