// The C library through koffi, for the system calls Node has no binding for (flock, fallocate, mmap).
// koffi is a native module: it and libc are loaded on the first call that needs them, once per process,
// so a process that never locks, trims or maps a file never loads either.

import { createRequire } from "node:module";

type Koffi = typeof import("koffi");

let koffi: Koffi | undefined;
let libc: ReturnType<Koffi["load"]> | undefined;

/** The koffi module (for errno, pointer addresses and views), loaded on first use. */
export function koffiModule(): Koffi {
  koffi ??= createRequire(import.meta.url)("koffi") as Koffi;
  return koffi;
}

/** The libc function declared by the C prototype `signature`, e.g. "int flock(int, int)". */
export function libcFunction<F>(signature: string): F {
  libc ??= koffiModule().load("libc.so.6");
  return libc.func(signature) as F;
}
