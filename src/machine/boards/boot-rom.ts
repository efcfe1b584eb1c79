// The reset-vector ROM of QEMU's RISC-V boards (hw/riscv/boot.c riscv_setup_rom_reset_vec) followed by the
// OpenSBI `struct fw_dynamic_info` (OpenSBI include/sbi/fw_dynamic.h) that tells the firmware where to go next.

/** fw_dynamic.h: "Expected value of info magic ('OSBI' ascii string in hex)". */
export const FW_DYNAMIC_INFO_MAGIC_VALUE = 0x4942534f;
/** fw_dynamic.h: version 2 adds boot_hart. */
export const FW_DYNAMIC_INFO_VERSION_2 = 2;
/** fw_dynamic.h: "Possible next mode: Supervisor mode". */
export const FW_DYNAMIC_INFO_NEXT_MODE_S = 1;

/** Where the virt board maps its mask ROM (VIRT_MROM). */
export const MROM_BASE = 0x1000;
/** VIRT_MROM size. */
export const MROM_SIZE = 0xf000;

export interface ResetVectorConfig {
  /** Where every hart jumps (the firmware, or the kernel with --bios none). */
  readonly startAddress: number;
  /** Device tree address, handed over in a1. */
  readonly fdtAddress: number;
  /** fw_dynamic_info.next_addr: where the firmware continues (the kernel). */
  readonly nextAddress: number;
}

function putU64(view: DataView, off: number, value: number): void {
  view.setUint32(off, value >>> 0, true);
  view.setUint32(off + 4, Math.floor(value / 0x1_0000_0000) >>> 0, true);
}

/**
 * The ROM's bytes (MROM_SIZE long). Layout as QEMU writes it, so firmware sees the same thing on both:
 *   0x00 auipc t0, 0          0x04 addi a2, t0, 40 (a2 = &fw_dynamic_info)
 *   0x08 csrr a0, mhartid     0x0c ld a1, 32(t0)   (a1 = fdt)
 *   0x10 ld t0, 24(t0)        0x14 jr t0           (start)
 *   0x18 start address (u64)  0x20 fdt address (u64)
 *   0x28 fw_dynamic_info { magic, version, next_addr, next_mode, options, boot_hart } (u64 each)
 */
export function buildResetRom(config: ResetVectorConfig): Uint8Array {
  const rom = new Uint8Array(MROM_SIZE);
  const view = new DataView(rom.buffer);
  const code = [0x00000297, 0x02828613, 0xf1402573, 0x0202b583, 0x0182b283, 0x00028067];
  for (let i = 0; i < code.length; i++) view.setUint32(i * 4, code[i]!, true);
  putU64(view, 0x18, config.startAddress);
  putU64(view, 0x20, config.fdtAddress);
  putU64(view, 0x28, FW_DYNAMIC_INFO_MAGIC_VALUE);
  putU64(view, 0x30, FW_DYNAMIC_INFO_VERSION_2);
  putU64(view, 0x38, config.nextAddress);
  putU64(view, 0x40, FW_DYNAMIC_INFO_NEXT_MODE_S);
  putU64(view, 0x48, 0); // options
  putU64(view, 0x50, 0); // boot_hart
  return rom;
}
