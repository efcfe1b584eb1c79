// One open host file of a disk image, with whole-buffer positional reads and writes as promises: the one
// place the qcow2 code touches file descriptors, so every host I/O failure becomes a Qcow2Error naming it.

import { close, constants, fdatasync, fstat, open, read, write } from "node:fs";
import { Qcow2Error } from "./qcow2-error.ts";

export class DiskFile {
  private fd: number | null;

  private constructor(
    readonly path: string,
    fd: number,
    /** The file's length, kept up to date by our own writes (we are its only writer while it is open). */
    public size: number,
    readonly readOnly: boolean,
  ) {
    this.fd = fd;
  }

  static open(path: string, readOnly: boolean): Promise<DiskFile> {
    return new Promise((resolve, reject) => {
      // O_NONBLOCK: a hostile backing name may point at a FIFO, whose open would otherwise wait for ever
      // for a writer; the fstat below then refuses it. On a regular file the flag changes nothing.
      const flags = (readOnly ? constants.O_RDONLY : constants.O_RDWR) | constants.O_NONBLOCK;
      open(path, flags, (err, fd) => {
        if (err) {
          const code = err.code === "ENOENT" ? "disk-not-found" : "disk-io-failed";
          reject(new Qcow2Error(code, `cannot open disk image ${path}: ${err.message}`));
          return;
        }
        fstat(fd, (err2, st) => {
          const problem = err2
            ? `cannot stat it: ${err2.message}`
            : st.isFile()
              ? null
              : "not a regular file";
          if (problem !== null) {
            close(fd, () => reject(new Qcow2Error("bad-disk-image", `disk image ${path}: ${problem}`)));
            return;
          }
          resolve(new DiskFile(path, fd, st.size, readOnly));
        });
      });
    });
  }

  /** Fills `dst` from `pos`; bytes past the end of the file read as zeros (a short file is a sparse one). */
  read(pos: number, dst: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.readFrom(pos, dst, 0, resolve, reject));
  }

  private readFrom(pos: number, dst: Uint8Array, at: number, ok: () => void, fail: (e: Error) => void): void {
    if (at === dst.length) {
      ok();
      return;
    }
    if (this.fd === null) {
      fail(new Qcow2Error("disk-io-failed", `disk image ${this.path} is closed`));
      return;
    }
    read(this.fd, dst, at, dst.length - at, pos + at, (err, n) => {
      if (err)
        fail(new Qcow2Error("disk-io-failed", `read of disk image ${this.path} failed: ${err.message}`));
      else if (n === 0) {
        dst.fill(0, at);
        ok();
      } else this.readFrom(pos, dst, at + n, ok, fail);
    });
  }

  write(pos: number, src: Uint8Array): Promise<void> {
    return new Promise((resolve, reject) => this.writeTo(pos, src, 0, resolve, reject));
  }

  private writeTo(pos: number, src: Uint8Array, at: number, ok: () => void, fail: (e: Error) => void): void {
    if (at === src.length) {
      if (pos + src.length > this.size) this.size = pos + src.length;
      ok();
      return;
    }
    if (this.fd === null) {
      fail(new Qcow2Error("disk-io-failed", `disk image ${this.path} is closed`));
      return;
    }
    write(this.fd, src, at, src.length - at, pos + at, (err, n) => {
      if (err)
        fail(new Qcow2Error("disk-io-failed", `write to disk image ${this.path} failed: ${err.message}`));
      else this.writeTo(pos, src, at + n, ok, fail);
    });
  }

  sync(): Promise<void> {
    return new Promise((resolve, reject) => {
      if (this.fd === null || this.readOnly) {
        resolve();
        return;
      }
      fdatasync(this.fd, (err) =>
        err
          ? reject(
              new Qcow2Error("disk-io-failed", `flush of disk image ${this.path} failed: ${err.message}`),
            )
          : resolve(),
      );
    });
  }

  close(): Promise<void> {
    const fd = this.fd;
    this.fd = null;
    if (fd === null) return Promise.resolve();
    return new Promise((resolve, reject) =>
      close(fd, (err) =>
        err ? reject(new Qcow2Error("disk-io-failed", `closing ${this.path}: ${err.message}`)) : resolve(),
      ),
    );
  }
}
