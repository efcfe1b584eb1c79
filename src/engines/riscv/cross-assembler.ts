// Assembles bare-metal RV64GC test programs with Debian's cross toolchain (gcc-riscv64-linux-gnu), for tests
// that run real machine code on the board.

import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** True when riscv64-linux-gnu-gcc is installed. */
export function haveCrossAssembler(): boolean {
  try {
    execFileSync("riscv64-linux-gnu-gcc", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

/**
 * Assembles `source` (GNU as syntax, entry `_start`) into a static ELF linked at `base`: .text first, then
 * .data and .bss on the next page. Returns the ELF's bytes.
 */
export function assembleElf(source: string, base = 0x8000_0000): Uint8Array {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-asm-"));
  try {
    writeFileSync(join(dir, "prog.S"), source);
    writeFileSync(
      join(dir, "link.ld"),
      `ENTRY(_start)\nSECTIONS { . = 0x${base.toString(16)}; .text : { *(.text*) } . = ALIGN(4096);` +
        ` .data : { *(.data*) *(.sdata*) } .bss : { *(.bss*) *(.sbss*) } }\n`,
    );
    execFileSync(
      "riscv64-linux-gnu-gcc",
      [
        "-nostdlib",
        "-static",
        "-Wl,--build-id=none",
        "-march=rv64gc",
        "-mabi=lp64d",
        "-T",
        "link.ld",
        "-o",
        "prog.elf",
        "prog.S",
      ],
      { cwd: dir, stdio: ["ignore", "ignore", "pipe"] },
    );
    return new Uint8Array(readFileSync(join(dir, "prog.elf")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Assembles `source` and returns the raw bytes of its .text (objcopy -O binary), linked at `base`. */
export function assembleBinary(source: string, base = 0x8000_0000): Uint8Array {
  const elf = assembleElf(source, base);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-asm-"));
  try {
    writeFileSync(join(dir, "prog.elf"), elf);
    execFileSync("riscv64-linux-gnu-objcopy", ["-O", "binary", "prog.elf", "prog.bin"], { cwd: dir });
    return new Uint8Array(readFileSync(join(dir, "prog.bin")));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Assembles `body` as the code of `_start` (first in .text) and returns the flat image, linked at `base`. */
export function assembleStart(body: string, base = 0x8000_0000): Uint8Array {
  return assembleBinary(`.section .text.init\n.globl _start\n_start:\n${body}\n`, base);
}
