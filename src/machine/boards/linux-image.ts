// Recognizes a RISC-V Linux kernel "Image" by its boot header (Linux Documentation/riscv/boot-image-header.rst).

const HEADER_SIZE = 64;
/** boot-image-header.rst: `magic = "RISCV\0\0\0"` at offset 48 (deprecated but still written). */
const RISCV_IMAGE_MAGIC = [0x52, 0x49, 0x53, 0x43, 0x56, 0, 0, 0];
/** boot-image-header.rst: `magic2 = "RSC\x05"` at offset 56. */
const RISCV_IMAGE_MAGIC2 = [0x52, 0x53, 0x43, 0x05];

export interface LinuxImageHeader {
  /** Image load offset from the start of RAM (text_offset, little-endian). */
  readonly textOffset: number;
  /** Effective image size including bss (image_size); 0 in very old kernels. */
  readonly imageSize: number;
  readonly version: number;
}

/** The header of a RISC-V Linux Image, or null when `bytes` is not one. */
export function parseLinuxImage(bytes: Uint8Array): LinuxImageHeader | null {
  if (bytes.length < HEADER_SIZE) return null;
  for (let i = 0; i < 8; i++) if (bytes[48 + i] !== RISCV_IMAGE_MAGIC[i]) return null;
  for (let i = 0; i < 4; i++) if (bytes[56 + i] !== RISCV_IMAGE_MAGIC2[i]) return null;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u64 = (off: number): number =>
    view.getUint32(off + 4, true) * 0x1_0000_0000 + view.getUint32(off, true);
  return { textOffset: u64(8), imageSize: u64(16), version: view.getUint32(32, true) };
}
