// Parses ELF64 little-endian RISC-V executables (System V ABI "ELF-64 Object File Format" and the RISC-V ELF
// psABI: e_machine EM_RISCV = 243) into loadable segments, the entry point and the symbols a loader needs.

import { MachineError } from "../base/machine-error.ts";

const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const EM_RISCV = 243;
const ET_EXEC = 2;
const ET_DYN = 3;
const PT_LOAD = 1;
const SHT_SYMTAB = 2;

/** One PT_LOAD segment: `data` goes at `paddr`, the rest up to `memSize` is zero (bss). */
export interface ElfSegment {
  readonly paddr: number;
  readonly data: Uint8Array;
  readonly memSize: number;
}

export interface ElfImage {
  readonly entry: number;
  readonly segments: readonly ElfSegment[];
  /** Symbol addresses by name (only from .symtab; e.g. `tohost` for HTIF). */
  readonly symbols: ReadonlyMap<string, number>;
}

/** True when `bytes` open with the ELF magic "\x7fELF". */
export function isElf(bytes: Uint8Array): boolean {
  return (
    bytes.length >= 4 && bytes[0] === 0x7f && bytes[1] === 0x45 && bytes[2] === 0x4c && bytes[3] === 0x46
  );
}

/** Reads a little-endian u64 that must fit in a JS number (addresses, sizes, offsets). */
function u64(view: DataView, off: number, what: string, name: string): number {
  const lo = view.getUint32(off, true);
  const hi = view.getUint32(off + 4, true);
  if (hi >= 0x20_0000)
    throw new MachineError("bad-elf", `${name}: ELF ${what} 0x${hi.toString(16)}… is too large`);
  return hi * 0x1_0000_0000 + lo;
}

/**
 * Parses an ELF64 RISC-V executable. `name` is the file's name for error messages.
 * Throws MachineError("bad-elf") with a message a user can act on.
 */
export function parseElf(bytes: Uint8Array, name: string): ElfImage {
  const fail = (problem: string): never => {
    throw new MachineError("bad-elf", `${name}: ${problem}`);
  };
  if (!isElf(bytes)) fail("not an ELF file");
  if (bytes.length < 64) fail("ELF header is truncated");
  if (bytes[4] !== ELFCLASS64) fail("not a 64-bit ELF file (ELFCLASS64 expected)");
  if (bytes[5] !== ELFDATA2LSB) fail("not a little-endian ELF file");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const type = view.getUint16(16, true);
  const machine = view.getUint16(18, true);
  if (machine !== EM_RISCV) fail(`ELF machine is ${machine}, not RISC-V (${EM_RISCV})`);
  if (type !== ET_EXEC && type !== ET_DYN) fail("ELF file is not an executable");
  const entry = u64(view, 24, "entry", name);
  const phoff = u64(view, 32, "program header offset", name);
  const shoff = u64(view, 40, "section header offset", name);
  const phentsize = view.getUint16(54, true);
  const phnum = view.getUint16(56, true);
  const shentsize = view.getUint16(58, true);
  const shnum = view.getUint16(60, true);
  if (phentsize < 56 || phoff + phnum * phentsize > bytes.length)
    fail("program headers lie outside the file");

  const segments: ElfSegment[] = [];
  for (let i = 0; i < phnum; i++) {
    const ph = phoff + i * phentsize;
    if (view.getUint32(ph, true) !== PT_LOAD) continue;
    const offset = u64(view, ph + 8, "segment offset", name);
    const paddr = u64(view, ph + 24, "segment address", name);
    const fileSize = u64(view, ph + 32, "segment size", name);
    const memSize = u64(view, ph + 40, "segment size", name);
    if (offset + fileSize > bytes.length) fail(`segment ${i} lies outside the file`);
    if (fileSize > memSize) fail(`segment ${i} has a file size larger than its memory size`);
    if (memSize === 0) continue;
    segments.push({ paddr, data: bytes.subarray(offset, offset + fileSize), memSize });
  }
  if (segments.length === 0) fail("ELF file has no loadable segments");

  const symbols = new Map<string, number>();
  if (shoff !== 0 && shentsize >= 64 && shoff + shnum * shentsize <= bytes.length) {
    for (let i = 0; i < shnum; i++) {
      const sh = shoff + i * shentsize;
      if (view.getUint32(sh + 4, true) !== SHT_SYMTAB) continue;
      const symOff = u64(view, sh + 24, "symbol table offset", name);
      const symSize = u64(view, sh + 32, "symbol table size", name);
      const strIndex = view.getUint32(sh + 40, true);
      if (strIndex >= shnum || symOff + symSize > bytes.length) continue;
      const strSh = shoff + strIndex * shentsize;
      const strOff = u64(view, strSh + 24, "string table offset", name);
      const strSize = u64(view, strSh + 32, "string table size", name);
      if (strOff + strSize > bytes.length) continue;
      for (let s = symOff; s + 24 <= symOff + symSize; s += 24) {
        const nameOff = view.getUint32(s, true);
        if (nameOff === 0 || nameOff >= strSize) continue;
        let end = strOff + nameOff;
        while (end < strOff + strSize && bytes[end] !== 0) end++;
        let symName = "";
        for (let k = strOff + nameOff; k < end; k++) symName += String.fromCharCode(bytes[k]!);
        if (!symbols.has(symName)) symbols.set(symName, u64(view, s + 8, "symbol value", name));
      }
    }
  }
  return { entry, segments, symbols };
}
