// fallocate(2) through koffi (Node has no binding): punching holes in, and zeroing ranges of, a disk image
// file. Called synchronously: both are metadata operations on the file's extents, a few microseconds to a
// few milliseconds however large the range, and koffi's asynchronous calls cannot report errno.

import { constants } from "node:os";
import { koffiModule, libcFunction } from "./libc.ts";

/** From <linux/falloc.h>. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

const { EINTR, EOPNOTSUPP, ENOSYS } = constants.errno;

interface Libc {
  fallocate(fd: number, mode: number, offset: number, length: number): number;
  errno(): number;
}

let libc: Libc | undefined;

/** koffi is a native module: loaded on first use, so a disk that is never trimmed costs nothing. */
function loadLibc(): Libc {
  if (!libc) {
    // off_t is 64-bit on every Linux Node supports (glibc's fallocate is fallocate64 there).
    const fallocate = libcFunction<Libc["fallocate"]>("int fallocate(int, int, int64_t, int64_t)");
    libc = { fallocate, errno: () => koffiModule().errno() };
  }
  return libc;
}

/** What a fallocate call came to: done, not supported by this file's filesystem, or failed with errno. */
export type FallocateResult = "ok" | "unsupported" | { readonly errno: number };

/** fallocate(fd, mode, offset, length), retried on EINTR. */
export function fallocate(fd: number, mode: number, offset: number, length: number): FallocateResult {
  const c = loadLibc();
  for (;;) {
    if (c.fallocate(fd, mode, offset, length) === 0) return "ok";
    const errno = c.errno();
    if (errno === EINTR) continue;
    return errno === EOPNOTSUPP || errno === ENOSYS ? "unsupported" : { errno };
  }
}

/** "EIO" for errno 5 (a message names the error as strace would), else the number. */
export function errnoName(errno: number): string {
  for (const [name, n] of Object.entries(constants.errno)) if (n === errno) return name;
  return `errno ${errno}`;
}
