// An exclusive kernel lock on a file (flock(2), through koffi): held while its descriptor is open and
// dropped by the kernel when the holder ends, however it ends — so a lock can neither outlive its holder
// nor be mistaken for one held by a process that merely reused a dead holder's pid.

import { closeSync, constants, openSync, readFileSync, statSync } from "node:fs";
import { koffiModule, libcFunction } from "./libc.ts";

/** flock(2) operations, from <sys/file.h>. */
const LOCK_EX = 2;
const LOCK_NB = 4;
/** EWOULDBLOCK (= EAGAIN on Linux): another open file holds the lock. */
const EWOULDBLOCK = 11;
const EINTR = 4;

interface Libc {
  flock(fd: number, operation: number): number;
  errno(): number;
}

let libc: Libc | undefined;

/** koffi is a native module: it is loaded on first use, so that reading a holder costs a CLI nothing. */
function loadLibc(): Libc {
  if (!libc) {
    const flock = libcFunction<Libc["flock"]>("int flock(int, int)");
    libc = { flock, errno: () => koffiModule().errno() };
  }
  return libc;
}

export class FileLockError extends Error {
  readonly code = "lock-failed";
}

export interface FileLockOptions {
  /** Create the file (mode 0600) when missing; else a missing file is an ENOENT error. */
  readonly create?: boolean;
  /** Open read-write (needed to fdatasync a disk through the lock's descriptor); default read-only. */
  readonly write?: boolean;
}

export class FileLock {
  private open: boolean;

  private constructor(
    readonly path: string,
    /** The descriptor the lock lives on; closing it (release) drops the lock. */
    readonly fd: number,
  ) {
    this.open = true;
  }

  /**
   * Takes the exclusive lock without waiting. Resolves undefined when another open file holds it
   * (`holderOf` names the process); throws for any other failure (a missing file, a filesystem without
   * flock).
   */
  static tryTake(path: string, options: FileLockOptions = {}): FileLock | undefined {
    const flags =
      (options.write || options.create ? constants.O_RDWR : constants.O_RDONLY) |
      (options.create ? constants.O_CREAT : 0);
    // libuv opens with O_CLOEXEC: a child process (a VMM) never inherits the lock.
    const fd = openSync(path, flags, 0o600);
    try {
      const c = loadLibc();
      for (;;) {
        if (c.flock(fd, LOCK_EX | LOCK_NB) === 0) return new FileLock(path, fd);
        const errno = c.errno();
        if (errno === EINTR) continue;
        closeSync(fd);
        if (errno === EWOULDBLOCK) return undefined;
        throw new FileLockError(`cannot lock ${path}: flock failed with errno ${errno}`);
      }
    } catch (e) {
      try {
        closeSync(fd);
      } catch {}
      throw e;
    }
  }

  /** Drops the lock (closes its descriptor). Runs once. */
  release(): void {
    if (!this.open) return;
    this.open = false;
    closeSync(this.fd);
  }
}

/**
 * The pids holding a flock on `path`'s file, from /proc/locks (empty when none, or without procfs). The
 * kernel reports the pid that took the lock; it is dropped when that process's descriptor closes.
 */
export function lockHolders(path: string): number[] {
  let st: { dev: number; ino: number };
  let table: string;
  try {
    st = statSync(path);
    table = readFileSync("/proc/locks", "utf8");
  } catch {
    return [];
  }
  // glibc's dev_t encoding; /proc/locks prints major:minor in hex and the inode in decimal.
  const major = ((st.dev >>> 8) & 0xfff) | (Math.floor(st.dev / 2 ** 32) & ~0xfff);
  const minor = (st.dev & 0xff) | ((st.dev >>> 12) & 0xfff00);
  const holders: number[] = [];
  // e.g. "1: FLOCK  ADVISORY  WRITE 12345 fe:00:260072 0 EOF"; a waiter's line has "->" and is skipped.
  for (const line of table.split("\n")) {
    const m = /^\d+:\s+FLOCK\s+\S+\s+WRITE\s+(\d+)\s+([0-9a-f]+):([0-9a-f]+):(\d+)\s/.exec(line);
    if (!m) continue;
    if (
      Number.parseInt(m[2]!, 16) === major &&
      Number.parseInt(m[3]!, 16) === minor &&
      Number(m[4]) === st.ino
    )
      holders.push(Number(m[1]));
  }
  return holders;
}

/** "held by pid N" for a message, or "held by another process" when the kernel does not say which. */
export function describeHolder(path: string): string {
  const pids = lockHolders(path);
  return pids.length > 0 ? `held by pid ${pids.join(", ")}` : "held by another process";
}
