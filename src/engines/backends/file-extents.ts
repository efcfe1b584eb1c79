// Where a file's data lies, from lseek(2)'s SEEK_DATA and SEEK_HOLE through koffi (Node has no binding), so
// that a reader of a sparse file (a suspended guest's RAM, a disk image) skips its holes instead of reading
// them as zeros: the export of a 256 MiB guest holding 20 MiB read all 256 MiB to find its data.

import { constants } from "node:os";
import { koffiModule, libcFunction } from "./libc.ts";

/** From <unistd.h> (Linux). */
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const { ENXIO } = constants.errno;

interface Libc {
  lseek(fd: number, offset: number, whence: number): number | bigint;
  errno(): number;
}

let libc: Libc | undefined;

function loadLibc(): Libc {
  libc ??= {
    lseek: libcFunction<Libc["lseek"]>("int64_t lseek(int, int64_t, int)"),
    errno: () => koffiModule().errno(),
  };
  return libc;
}

/**
 * The [start, end) byte ranges of the first `size` bytes of the open file `fd` that may hold data (outside
 * them the file reads as zeros), or undefined when its filesystem cannot say (then read all of it). Moves
 * the file's offset: use positional reads.
 */
export function dataExtents(fd: number, size: number): Array<[number, number]> | undefined {
  const c = loadLibc();
  const extents: Array<[number, number]> = [];
  let at = 0;
  while (at < size) {
    const start = Number(c.lseek(fd, at, SEEK_DATA));
    if (start < 0) {
      // ENXIO: no data at or after `at`. Anything else (EINVAL: not supported here) says nothing.
      if (c.errno() === ENXIO) break;
      return undefined;
    }
    if (start >= size) break;
    const end = Number(c.lseek(fd, start, SEEK_HOLE));
    if (end < 0) return undefined;
    extents.push([start, Math.min(end, size)]);
    at = end;
  }
  return extents;
}
