import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildResetRom, MROM_SIZE } from "./boot-rom.ts";

test("the ROM disassembles to QEMU's reset vector and carries fw_dynamic_info", () => {
  const rom = buildResetRom({ startAddress: 0x8000_0000, fdtAddress: 0x8fe0_0000, nextAddress: 0x8020_0000 });
  assert.equal(rom.length, MROM_SIZE);
  const dir = mkdtempSync(join(tmpdir(), "tsvm-rom-"));
  let asm: string;
  try {
    writeFileSync(join(dir, "rom.bin"), rom.subarray(0, 24));
    asm = execFileSync(
      "riscv64-linux-gnu-objdump",
      ["-D", "-b", "binary", "-m", "riscv:rv64", "-M", "no-aliases", join(dir, "rom.bin")],
      { encoding: "utf8" },
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.match(asm, /auipc\s+t0,0x0/);
  assert.match(asm, /addi\s+a2,t0,40/);
  assert.match(asm, /csrrs\s+a0,mhartid,zero/);
  assert.match(asm, /ld\s+a1,32\(t0\)/);
  assert.match(asm, /ld\s+t0,24\(t0\)/);
  assert.match(asm, /jalr\s+zero,0\(t0\)/);
  const v = new DataView(rom.buffer);
  assert.equal(v.getUint32(0x18, true), 0x8000_0000);
  assert.equal(v.getUint32(0x20, true), 0x8fe0_0000);
  assert.equal(v.getUint32(0x28, true), 0x4942534f, "fw_dynamic_info.magic");
  assert.equal(v.getUint32(0x30, true), 2, "version");
  assert.equal(v.getUint32(0x38, true), 0x8020_0000, "next_addr");
  assert.equal(v.getUint32(0x40, true), 1, "next_mode = S");
  assert.equal(v.getUint32(0x50, true), 0, "boot_hart");
});
