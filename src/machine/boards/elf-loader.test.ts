import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleElf } from "../../engines/riscv/cross-assembler.ts";
import { isElf, parseElf } from "./elf-loader.ts";

const PROGRAM = `
.text
.globl _start
_start: li a0, 1
  j _start
.data
.globl tohost
tohost: .dword 0
.globl fromhost
fromhost: .dword 0
.bss
buf: .space 8192
`;

test("a real RISC-V ELF yields its entry, PT_LOAD segments (with bss) and symbols", () => {
  const elf = parseElf(assembleElf(PROGRAM), "prog.elf");
  assert.equal(elf.entry, 0x8000_0000);
  assert.equal(elf.segments.length, 2);
  assert.equal(elf.segments[0]!.paddr, 0x8000_0000);
  assert.equal(elf.segments[1]!.paddr, 0x8000_1000);
  assert.ok(elf.segments[1]!.memSize >= 8192 + 16, "bss counted in memSize");
  assert.equal(elf.segments[1]!.data.length, 16, "only .data is in the file");
  assert.equal(elf.symbols.get("tohost"), 0x8000_1000);
  assert.equal(elf.symbols.get("fromhost"), 0x8000_1008);
});

test("non-RISC-V, 32-bit, truncated and non-ELF files are refused with clear errors", () => {
  const good = assembleElf(PROGRAM);
  const wrongMachine = good.slice();
  wrongMachine[18] = 62; // EM_X86_64
  assert.throws(() => parseElf(wrongMachine, "x.elf"), /x\.elf: ELF machine is 62, not RISC-V/);
  const elf32 = good.slice();
  elf32[4] = 1;
  assert.throws(() => parseElf(elf32, "y.elf"), /not a 64-bit ELF/);
  assert.throws(() => parseElf(good.subarray(0, 40), "z.elf"), /truncated/);
  const badPh = good.slice();
  new DataView(badPh.buffer).setUint32(32, 0x7fff_0000, true); // e_phoff far past the end
  assert.throws(() => parseElf(badPh, "p.elf"), /program headers lie outside the file/);
  assert.equal(isElf(Uint8Array.of(1, 2, 3, 4)), false);
  assert.throws(() => parseElf(Uint8Array.of(1, 2, 3, 4), "n"), /not an ELF file/);
});
