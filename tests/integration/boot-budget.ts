// The time-to-usable budget: guest instructions from power-on until the default image's guest agent sends
// its first byte (HELLO) on its virtio-console port, counted on a boot made deterministic, and the budget
// in boot-budget.json that boot-budget.test.ts holds it to.
//
// A boot on the engine is not deterministic: the CLINT's mtime follows host time, so the timer interrupts
// (and the kernel code they run) come per host millisecond, and a slower run retires more instructions on
// the way (measured: 132.7–147.5 M as a boot took 16–45 s). Here the board runs in this process on a
// virtual clock that advances with the instructions retired (GUEST_INSTRUCTIONS_PER_MS) and jumps to the
// next timer deadline when every hart waits in WFI; the disk is in memory and completes at once; entropy
// is a constant, and the RTC's date starts at a fixed one. Run this file to boot N times and print the
// counts:
//
//   node --import ./node_modules/tsx/dist/loader.mjs tests/integration/boot-budget.ts 3
import { readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { GUEST_AGENT_PORT_NAME } from "../../src/engines/riscv/guest-agent-client.ts";
import type { ImageInfo } from "../../src/images/image-store.ts";
import { RiscvVirtBoard } from "../../src/machine/boards/riscv-virt.ts";
import { MemoryBlockBackend } from "../../src/machine/devices/virtio/memory-block-backend.ts";

export const BOOT_BUDGET_FILE = join(dirname(fileURLToPath(import.meta.url)), "boot-budget.json");

/** The virtual clock's speed: 50 MIPS, about what a boot runs at here when it is not waiting. */
export const GUEST_INSTRUCTIONS_PER_MS = 50_000;
const WALL_CLOCK_ORIGIN_MS = Date.UTC(2026, 0, 1);
/** Instructions per hart per slice: the timers are looked at between slices. */
const SLICE = 20_000;

export interface BootBudget {
  /** Most instructions (all harts) from power-on to the agent's first byte. */
  readonly instructions: number;
}

export function readBootBudget(): BootBudget {
  const raw = JSON.parse(readFileSync(BOOT_BUDGET_FILE, "utf8")) as { instructions?: unknown };
  if (!Number.isSafeInteger(raw.instructions) || (raw.instructions as number) <= 0)
    throw new Error(`${BOOT_BUDGET_FILE}: "instructions" is not a positive whole number`);
  return { instructions: raw.instructions as number };
}

export interface BootCount {
  /** Instructions retired (all harts) when the agent's first byte arrived. */
  readonly instructions: number;
  /** Guest time then, in virtual ms. */
  readonly guestMs: number;
  /** Host time the boot took. */
  readonly hostMs: number;
}

/**
 * Boots the default image (1 hart, 256 MiB, as the guest agent test does) on the virtual clock until the
 * agent's first byte, or throws past `maxInstructions`.
 */
export function countBootToAgent(img: ImageInfo, maxInstructions = 1_000_000_000, jit = true): BootCount {
  const file = (path: string) => ({ name: path, bytes: new Uint8Array(readFileSync(path)) });
  const clock = { now: 0, nowMs: () => clock.now };
  let helloAt: number | null = null;
  let executed = 0;
  const ignore = { write: () => {} };
  const board = new RiscvVirtBoard(
    {
      harts: 1,
      memoryBytes: 256 * 1024 * 1024,
      firmware: file(img.firmware),
      kernel: file(img.kernel),
      initrd: file(img.initrd),
      bootargs: "console=ttyS0",
      jit,
    },
    {
      clock,
      // The date matters: the kernel seeds its random state with it (a boot a few minutes later ran 76,000
      // instructions fewer). 2026-01-01T00:00:00Z plus guest time.
      wallClockMs: () => WALL_CLOCK_ORIGIN_MS + clock.now,
      console: ignore,
      entropy: { fill: (d) => d.fill(0x5a) },
      // A private copy: the guest writes to its disk.
      disks: [new MemoryBlockBackend(new Uint8Array(readFileSync(img.disk)))],
      virtioConsole: {
        sink: ignore,
        // Read inside the slice: exact to the hart's last write-back of its count, and as deterministic.
        ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: () => (helloAt ??= instret()) } }],
      },
    },
  );
  const instret = () => board.stats().instret.reduce((sum, n) => sum + n, 0);
  const started = performance.now();
  let idleMs = 0;
  while (helloAt === null) {
    if (executed > maxInstructions) throw new Error(`no agent byte within ${maxInstructions} instructions`);
    executed += board.runSlice(SLICE);
    if (board.allWaiting) {
      const next = board.nextDeadlineMs();
      if (!Number.isFinite(next)) throw new Error(`the guest sleeps with no timer armed at ${executed}`);
      idleMs = Math.max(idleMs, next - executed / GUEST_INSTRUCTIONS_PER_MS);
    }
    clock.now = executed / GUEST_INSTRUCTIONS_PER_MS + idleMs;
  }
  return { instructions: helloAt, guestMs: clock.now, hostMs: performance.now() - started };
}

async function main(): Promise<void> {
  const { loadavg } = await import("node:os");
  const { findImage } = await import("../../src/images/image-store.ts");
  const img = findImage("default");
  if (!img) throw new Error("no default image: run `tsvm image build` first");
  const boots = Number(process.argv[2] ?? 3);
  // --no-jit: the interpreter alone; the count must not change (the block compiler is exact).
  const jit = !process.argv.includes("--no-jit");
  console.log(`image ${img.dir}`);
  for (let i = 0; i < boots; i++) {
    const r = countBootToAgent(img, undefined, jit);
    console.log(
      `boot ${i + 1}: ${r.instructions} instructions, ${(r.guestMs / 1000).toFixed(2)} s of guest time, ` +
        `${(r.hostMs / 1000).toFixed(1)} s, load ${loadavg()[0]!.toFixed(1)}`,
    );
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) await main();
