// A file mapped copy-on-write into this process (mmap(2) MAP_PRIVATE, through koffi) as an ArrayBuffer: the
// host kernel reads each page from the file when it is first touched, and writes to it stay in this process
// (they never reach the file). What restores a saved guest's RAM without reading it all first.
//
// The mapping lives as long as the process: a VMM maps a saved state once and runs its guest on it until it
// exits, so nothing ever unmaps it (koffi's views do not own their memory; V8 frees nothing here).
// The file must not change while mapped: a page not yet touched would show the new bytes, and a file cut
// shorter would kill the process (SIGBUS) when the guest touches a page past its end. Saved states are
// immutable (written once into a new directory, never rewritten in place), so this holds; unlinking a
// mapped file is fine (the kernel keeps its pages while the mapping lasts).

import { closeSync, fstatSync, openSync } from "node:fs";
import { koffiModule, libcFunction } from "./libc.ts";

/** From <sys/mman.h> (Linux, every architecture Node runs on). */
const PROT_READ = 1;
const PROT_WRITE = 2;
const MAP_PRIVATE = 2;
/** mmap's MAP_FAILED, (void *) -1, as koffi reports a pointer's address. */
const MAP_FAILED = 0xffff_ffff_ffff_ffffn;

export class MappedFileError extends Error {
  readonly code = "map-failed";
}

interface Mman {
  mmap(addr: null, length: number, prot: number, flags: number, fd: number, offset: number): unknown;
  address(pointer: unknown): bigint;
  view(pointer: unknown, length: number): ArrayBuffer;
  errno(): number;
}

let mman: Mman | undefined;

/** Loaded on first use (libc.ts). */
function loadMman(): Mman {
  if (!mman) {
    const koffi = koffiModule();
    mman = {
      mmap: libcFunction<Mman["mmap"]>(
        "void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)",
      ),
      address: (p) => koffi.address(p),
      view: (p, length) => koffi.view(p, length),
      errno: () => koffi.errno(),
    };
  }
  return mman;
}

/**
 * Maps the whole of the file at `path`, which must be exactly `byteLength` bytes, readable and writable
 * by this process only (copy-on-write), and returns it as an ArrayBuffer. Holes read as zeros. Throws
 * MappedFileError naming the file and the problem; ENOENT and other open errors as Node reports them.
 */
export function mapFilePrivate(path: string, byteLength: number): ArrayBuffer {
  if (!Number.isSafeInteger(byteLength) || byteLength < 0)
    throw new MappedFileError(`cannot map ${path}: ${byteLength} is not a byte length`);
  const fd = openSync(path, "r");
  try {
    // Checked on the descriptor that is mapped: the size of the file the mapping reads.
    const size = fstatSync(fd).size;
    if (size !== byteLength)
      throw new MappedFileError(`cannot map ${path}: it is ${size} bytes, expected ${byteLength}`);
    // mmap refuses a length of 0; an empty file maps to an empty buffer.
    if (byteLength === 0) return new ArrayBuffer(0);
    const m = loadMman();
    const pointer = m.mmap(null, byteLength, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
    if (pointer === null || m.address(pointer) === MAP_FAILED)
      throw new MappedFileError(
        `cannot map ${path} (${byteLength} bytes): mmap failed with errno ${m.errno()}`,
      );
    return m.view(pointer, byteLength);
  } finally {
    // The mapping keeps its own reference to the file.
    closeSync(fd);
  }
}
