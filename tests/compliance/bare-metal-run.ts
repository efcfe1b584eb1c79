// Runs a bare-metal ELF (linked at 0x80000000, entered in M-mode as `tsvm run --bios none` does) on the
// riscv-virt board in this process until it powers off through the sifive_test finisher or HTIF, with the
// board options a test chooses (JIT threshold, harts). Cheaper than spawning `tsvm run` for every variant.
import { type PowerEvent, RiscvVirtBoard } from "../../src/machine/boards/riscv-virt.ts";
import { DM_MASK } from "../../src/machine/riscv/block-cache.ts";

/** riscv64-linux-gnu-gcc flags for a program linked at 0x80000000 with no C library (add -T and sources). */
export const BARE_METAL_GCC_FLAGS: readonly string[] = [
  "-march=rv64gc",
  "-mabi=lp64d",
  "-mcmodel=medany", // C companions run at 0x80000000
  "-nostdlib",
  "-nostartfiles",
  "-static",
  "-fno-pie",
  "-no-pie",
  "-ffreestanding",
  "-O2",
  "-Wl,--build-id=none,--no-warn-rwx-segments",
];

export interface BareMetalOptions {
  /** Executions of a block start before it is compiled; default the board's. */
  readonly jitThreshold?: number;
  readonly jit?: boolean;
  readonly harts?: number;
  readonly memoryBytes?: number;
  /** Past this many instructions (all harts) the program is taken to hang. */
  readonly maxInstructions?: number;
  /** Compile a block at every 2-byte offset of the ELF's executable sections the first time the hart looks
   * there, so from its first jump on the program runs compiled code wherever the block compiler can (a
   * threshold of 1 compiles a start only when reached again: code that runs once, most of a compliance
   * program, stays in the interpreter). */
  readonly compileFirstTime?: boolean;
  /** Guest RAM in a SharedArrayBuffer, as a board with harts on threads has it (one hart still). */
  readonly sharedRam?: boolean;
}

export interface BareMetalResult {
  /** The first power event, or null when the budget ran out first. */
  readonly event: PowerEvent | null;
  /** What the program wrote to the UART (and HTIF console). */
  readonly output: string;
  readonly executed: number;
  readonly board: RiscvVirtBoard;
}

const SLICE = 100_000;

export function runBareMetal(name: string, elf: Uint8Array, options: BareMetalOptions = {}): BareMetalResult {
  // Guest time moves 1 ms per slice: deterministic, and a program waiting for a timer gets there.
  const clock = { now: 0, nowMs: () => clock.now };
  const chunks: Uint8Array[] = [];
  const memoryBytes = options.memoryBytes ?? 128 * 1024 * 1024;
  const board = new RiscvVirtBoard(
    {
      harts: options.harts ?? 1,
      memoryBytes,
      firmware: null,
      kernel: { name, bytes: elf },
      initrd: null,
      bootargs: "",
      jit: options.jit,
      jitThreshold: options.jitThreshold,
    },
    {
      clock,
      console: { write: (bytes) => chunks.push(bytes.slice()) },
      entropy: { fill: (d) => d.fill(0x5a) },
      disks: [],
      ...(options.sharedRam ? { ram: new SharedArrayBuffer(memoryBytes) } : {}),
    },
  );
  let event: PowerEvent | null = null;
  board.onPower = (e) => {
    event ??= e;
  };
  const max = options.maxInstructions ?? 500_000_000;
  // Power-on (RAM cleared, the ELF copied in, compiled blocks dropped) happens in the first slice: one
  // instruction of the reset ROM, which is not RAM, so nothing is compiled or run from RAM before priming.
  let executed = board.runSlice(1);
  if (options.compileFirstTime) compileFirstTime(board, elf);
  while (event === null && executed < max) {
    executed += board.runSlice(SLICE);
    clock.now += 1;
  }
  const output = Buffer.concat(chunks).toString("latin1");
  return { event, output, executed, board };
}

const SHF_EXECINSTR = 4;
const SHT_NOBITS = 8;
const RAM_BASE = 0x8000_0000;

/**
 * Makes every 2-byte offset of the executable sections of `elf` (ELF64, little-endian) compile the first
 * time the hart looks a block up there: its start is entered in the cache's counters as already seen, one
 * execution short of a threshold of 1. Compiling lazily, only where the hart looks, costs far less than
 * compiling every offset up front and runs the same compiled code.
 */
function compileFirstTime(board: RiscvVirtBoard, elf: Uint8Array): void {
  const blocks = board.harts[0]!.blockCache;
  if (blocks === null) throw new Error("compileFirstTime needs the block compiler (jit) on");
  // No flush of the cache (its bound keeps guests from growing the heap; these are tests).
  blocks.maxBlocks = Number.MAX_SAFE_INTEGER;
  blocks.threshold = 1;
  const v = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const shoff = Number(v.getBigUint64(0x28, true));
  const shentsize = v.getUint16(0x3a, true);
  const shnum = v.getUint16(0x3c, true);
  for (let i = 0; i < shnum; i++) {
    const sh = shoff + i * shentsize;
    const type = v.getUint32(sh + 4, true);
    const flags = Number(v.getBigUint64(sh + 8, true));
    const addr = Number(v.getBigUint64(sh + 0x10, true));
    const size = Number(v.getBigUint64(sh + 0x20, true));
    if ((flags & SHF_EXECINSTR) === 0 || type === SHT_NOBITS || addr < RAM_BASE) continue;
    // Offsets sharing a slot of the direct-mapped counters (code over 32 KiB): the last one wins.
    for (let off = addr - RAM_BASE; off < addr - RAM_BASE + size; off += 2) {
      const k = (off >>> 1) & DM_MASK;
      blocks.hotTag[k] = off;
      blocks.hotCount[k] = 0;
    }
  }
}
