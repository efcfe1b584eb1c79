// Places firmware, kernel, initrd and device tree in RAM the way QEMU's virt board does (hw/riscv/boot.c:
// riscv_calc_kernel_start_addr, riscv_load_initrd, riscv_load_fdt), so guests find everything where they would.

import { MachineError } from "../base/machine-error.ts";
import { isElf, parseElf } from "./elf-loader.ts";
import { parseLinuxImage } from "./linux-image.ts";

const MiB = 1024 * 1024;
/** boot.c: RV64 kernels start at the first 2 MiB boundary after the firmware. */
const KERNEL_ALIGN = 2 * MiB;
/** boot.c riscv_load_fdt: the FDT goes 2 MiB-aligned below min(end of RAM, 3 GiB). */
const FDT_ALIGN = 2 * MiB;
const FDT_CEILING = 3072 * MiB;

/** A named file given to the board. */
export interface BootFile {
  readonly name: string;
  readonly bytes: Uint8Array;
}

export interface BootInputs {
  readonly ramBase: number;
  readonly ramSize: number;
  /** null = `--bios none`: the kernel runs first, in M-mode. */
  readonly firmware: BootFile | null;
  readonly kernel: BootFile | null;
  readonly initrd: BootFile | null;
  /** Size of the device tree that will be written (an upper bound is fine). */
  readonly fdtSize: number;
}

/** One contiguous copy into RAM. */
export interface BootChunk {
  readonly address: number;
  readonly data: Uint8Array;
  /** Bytes the chunk occupies including its zero-filled tail (bss, Image image_size). */
  readonly size: number;
  readonly what: string;
}

export interface BootPlan {
  readonly chunks: readonly BootChunk[];
  /** Where the reset ROM jumps: the firmware, or the kernel when there is none. */
  readonly startAddress: number;
  /** fw_dynamic_info.next_addr: the kernel's entry (or the RAM base when there is no kernel). */
  readonly kernelEntry: number;
  readonly initrdStart: number;
  readonly initrdEnd: number;
  readonly fdtAddress: number;
  /** Address of the HTIF `tohost` word when an ELF defined one (riscv-tests style programs). */
  readonly tohost: number | null;
  readonly fromhost: number | null;
}

const hex = (n: number): string => `0x${n.toString(16)}`;

/** Loads a file as ELF segments, or as one raw blob at `rawAddress`. */
function chunksOf(file: BootFile, rawAddress: number, what: string): { chunks: BootChunk[]; entry: number } {
  if (isElf(file.bytes)) {
    const elf = parseElf(file.bytes, file.name);
    return {
      chunks: elf.segments.map((s) => ({ address: s.paddr, data: s.data, size: s.memSize, what })),
      entry: elf.entry,
    };
  }
  return {
    chunks: [{ address: rawAddress, data: file.bytes, size: file.bytes.length, what }],
    entry: rawAddress,
  };
}

/** Plans the boot; throws MachineError with a message for the user when something does not fit. */
export function planBoot(inputs: BootInputs): BootPlan {
  const { ramBase, ramSize } = inputs;
  const ramEnd = ramBase + ramSize;
  const chunks: BootChunk[] = [];
  let tohost: number | null = null;
  let fromhost: number | null = null;
  const noteHtif = (file: BootFile): void => {
    if (!isElf(file.bytes)) return;
    const symbols = parseElf(file.bytes, file.name).symbols;
    if (symbols.has("tohost")) {
      tohost = symbols.get("tohost")!;
      fromhost = symbols.get("fromhost") ?? null;
    }
  };

  let firmwareEnd = ramBase;
  let startAddress = ramBase;
  if (inputs.firmware) {
    const fw = chunksOf(inputs.firmware, ramBase, `firmware ${inputs.firmware.name}`);
    chunks.push(...fw.chunks);
    startAddress = fw.entry;
    firmwareEnd = Math.max(...fw.chunks.map((c) => c.address + c.size));
    noteHtif(inputs.firmware);
  }

  let kernelEntry = ramBase;
  let kernelEnd = firmwareEnd;
  if (inputs.kernel) {
    const kernelStart = inputs.firmware ? Math.ceil(firmwareEnd / KERNEL_ALIGN) * KERNEL_ALIGN : ramBase;
    const image = parseLinuxImage(inputs.kernel.bytes);
    if (image) {
      const size = Math.max(inputs.kernel.bytes.length, image.imageSize);
      chunks.push({
        address: kernelStart,
        data: inputs.kernel.bytes,
        size,
        what: `kernel ${inputs.kernel.name}`,
      });
      kernelEntry = kernelStart;
      kernelEnd = kernelStart + size;
    } else if (isElf(inputs.kernel.bytes)) {
      const k = chunksOf(inputs.kernel, kernelStart, `kernel ${inputs.kernel.name}`);
      chunks.push(...k.chunks);
      kernelEntry = k.entry;
      kernelEnd = Math.max(...k.chunks.map((c) => c.address + c.size));
      noteHtif(inputs.kernel);
    } else {
      throw new MachineError(
        "bad-kernel",
        `${inputs.kernel.name} is not a RISC-V Linux Image or ELF executable`,
      );
    }
    if (!inputs.firmware) startAddress = kernelEntry;
  }

  // boot.c riscv_load_fdt: below min(RAM end, 3 GiB), 2 MiB aligned.
  const fdtCeiling = ramBase < FDT_CEILING ? Math.min(ramEnd, FDT_CEILING) : ramEnd;
  const fdtAddress = Math.floor((fdtCeiling - inputs.fdtSize) / FDT_ALIGN) * FDT_ALIGN;

  let initrdStart = 0;
  let initrdEnd = 0;
  if (inputs.initrd) {
    // boot.c riscv_load_initrd: "put the initrd far enough into RAM that when the kernel is uncompressed it
    // will not clobber the initrd": kernel entry + min(RAM size / 2, 128 MiB).
    initrdStart = kernelEntry + Math.min(ramSize / 2, 128 * MiB);
    if (initrdStart < kernelEnd) initrdStart = Math.ceil(kernelEnd / 4096) * 4096;
    initrdEnd = initrdStart + inputs.initrd.bytes.length;
    chunks.push({
      address: initrdStart,
      data: inputs.initrd.bytes,
      size: inputs.initrd.bytes.length,
      what: `initrd ${inputs.initrd.name}`,
    });
  }

  // Everything must lie inside RAM (the mask ROM is the board's, not the guest's), without overlaps,
  // and below the device tree.
  const sorted = [...chunks].sort((a, b) => a.address - b.address);
  const needMiB = Math.ceil((sorted.reduce((n, c) => n + c.size, 0) + inputs.fdtSize) / MiB) + 1;
  for (const c of sorted) {
    if (c.address < ramBase || c.address + c.size > ramEnd)
      throw new MachineError(
        "image-outside-ram",
        `${c.what} (${hex(c.address)}–${hex(c.address + c.size)}) does not fit in RAM ${hex(ramBase)}–${hex(ramEnd)}; ` +
          `give the machine more memory (about ${needMiB * 2}M or more)`,
      );
    if (c.address + c.size > fdtAddress || fdtAddress < ramBase)
      throw new MachineError(
        "memory-too-small",
        `memory too small: ${c.what} ends at ${hex(c.address + c.size)}, past the device tree at ${hex(fdtAddress)}; ` +
          `give the machine more memory (about ${needMiB * 2}M or more)`,
      );
  }
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!;
    const b = sorted[i]!;
    if (a.address + a.size > b.address)
      throw new MachineError(
        "memory-too-small",
        `memory too small: ${a.what} overlaps ${b.what}; give the machine more memory`,
      );
  }
  return { chunks, startAddress, kernelEntry, initrdStart, initrdEnd, fdtAddress, tohost, fromhost };
}
