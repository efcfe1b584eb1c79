// Runs board-fuzz.c, a bare-metal guest that attacks every device of the riscv-virt board from inside (random
// MMIO writes and reads, unmapped space, malicious virtio queues), on the real board for several seeds: the
// machine must end only when the program asks, with the code it chose, within an instruction budget, with no
// host exception, with a snapshot taken mid-attack loading back equal, and with the sentinel (all RAM outside
// the program and its arena) and the program's code unchanged; and once more through `tsvm run`.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { isDeepStrictEqual } from "node:util";
import { haveCrossAssembler } from "../../src/engines/riscv/cross-assembler.ts";
import { type PowerEvent, RiscvVirtBoard } from "../../src/machine/boards/riscv-virt.ts";
import { MemoryBlockBackend } from "../../src/machine/devices/virtio/memory-block-backend.ts";
import type { Clock } from "../../src/machine/ports.ts";
import { BARE_METAL_GCC_FLAGS } from "../compliance/bare-metal-run.ts";
import { skipUnless } from "../skip-unless.ts";

const here = dirname(fileURLToPath(import.meta.url));
const GCC = "riscv64-linux-gnu-gcc";
const RAM_BASE = 0x8000_0000;
const RAM_BYTES = 16 * 1024 * 1024;
/** board-fuzz.c's arena: rings (256 KiB) then buffers (512 KiB); the devices may write only there. */
const ARENA = 0x8010_0000;
const ARENA_BYTES = 0xc0000;
const SEEDS = [1, 2, 3, 4, 5];
const OPS = 15_000;
/** Far more than OPS operations need (a few million instructions): past it the machine hangs. */
const INSTRUCTION_BUDGET = 300_000_000;
const SLICE = 200_000;
const skip = skipUnless(haveCrossAssembler(), `${GCC} is not installed (scripts/setup-host.sh installs it)`);

interface Program {
  elf: Uint8Array;
  symbols: Map<string, number>;
}

let built: Program | undefined;

/** Builds the program once with Debian's cross compiler (scripts/setup-host.sh installs it) and reads its
 *  symbols. */
function build(): Program {
  built ??= compile();
  return built;
}

function compile(): Program {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-board-fuzz-"));
  try {
    const out = join(dir, "board-fuzz.elf");
    execFileSync(
      GCC,
      [
        ...BARE_METAL_GCC_FLAGS,
        "-Wall",
        "-Werror",
        "-T",
        join(here, "board-fuzz.ld"),
        "-o",
        out,
        join(here, "board-fuzz-start.S"),
        join(here, "board-fuzz.c"),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    const nm = execFileSync("riscv64-linux-gnu-nm", [out], { encoding: "utf8" });
    const symbols = new Map<string, number>();
    for (const line of nm.split("\n")) {
      const [addr, , name] = line.trim().split(/\s+/);
      if (addr && name) symbols.set(name, Number.parseInt(addr, 16));
    }
    return { elf: new Uint8Array(readFileSync(out)), symbols };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

function symbol(p: Program, name: string): number {
  const a = p.symbols.get(name);
  assert.ok(a !== undefined, `board-fuzz.elf has no symbol ${name}`);
  return a;
}

/** The sentinel's bytes: a pseudo-random tile of a prime length, so a device that writes zeros, or copies
 *  sentinel bytes to another place in it, shows up too. */
const PATTERN = (() => {
  const tile = new Uint8Array(65521);
  let x = 0x2545f491;
  for (let i = 0; i < tile.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    tile[i] = x & 0xff;
  }
  return tile;
})();

function fillPattern(u8: Uint8Array, from: number, to: number): void {
  for (let at = from; at < to; at += PATTERN.length)
    u8.set(PATTERN.subarray(0, Math.min(PATTERN.length, to - at)), at);
}

/** The board the program runs on: one hart, a 64 KiB disk (slot 0), virtio-rng (1), virtio-console (2). */
function makeBoard(p: Program, clock: Clock): RiscvVirtBoard {
  const sink = { write() {} };
  return new RiscvVirtBoard(
    {
      harts: 1,
      memoryBytes: RAM_BYTES,
      firmware: null,
      kernel: { name: "board-fuzz.elf", bytes: p.elf },
      initrd: null,
      bootargs: "",
    },
    {
      clock,
      console: sink,
      entropy: { fill: (d) => d.fill(0x5a) },
      disks: [new MemoryBlockBackend(64 * 1024)],
      virtioConsole: { sink, ports: [{ name: "agent", sink }] },
    },
  );
}

interface Outcome {
  events: PowerEvent[];
  executed: number;
  report: { opsDone: number; faults: number; usedSeen: number; queuesReady: number; unexpectedCause: number };
}

function runSeed(p: Program, seed: number): Outcome {
  // Guest time moves 1 ms per slice, and not at all between a save and the load that checks it.
  const clock = { now: 0, nowMs: () => clock.now };
  const board = makeBoard(p, clock);
  const u8 = board.ram.u8;
  const view = board.ram.view;
  const off = (addr: number) => addr - RAM_BASE;
  view.setBigUint64(off(symbol(p, "fuzz_params")), BigInt(seed), true);
  view.setBigUint64(off(symbol(p, "fuzz_params")) + 8, BigInt(OPS), true);
  const end = off(symbol(p, "_end"));
  assert.ok(end <= off(ARENA), "the program overlaps its arena");
  fillPattern(u8, end, off(ARENA));
  fillPattern(u8, off(ARENA + ARENA_BYTES), RAM_BYTES);
  const sentinelLow = u8.slice(end, off(ARENA));
  const sentinelHigh = u8.slice(off(ARENA + ARENA_BYTES), RAM_BYTES);
  const text = u8.slice(0, off(symbol(p, "_text_end")));

  const events: PowerEvent[] = [];
  board.onPower = (e) => events.push(e);
  let executed = 0;
  for (let slice = 0; events.length === 0 && executed < INSTRUCTION_BUDGET; slice++) {
    executed += board.runSlice(SLICE);
    clock.now += 1;
    // Whatever the guest did to its devices, a snapshot of the machine loads back (suspend, migration).
    if (slice === 8) {
      const saved = board.saveState();
      const copy = makeBoard(p, clock);
      copy.loadState(saved);
      const again = copy.saveState();
      assert.ok(
        Buffer.from(again.ram).equals(saved.ram) &&
          isDeepStrictEqual({ ...again, ram: 0 }, { ...saved, ram: 0 }),
        `seed ${seed}: save → load → save differs`,
      );
    }
    // Host input for the virtio console's ports, delivered when the guest has posted receive buffers.
    if (slice % 4 === 0) board.virtioConsole!.receive(slice % 8 === 0 ? 0 : 1, new Uint8Array(33).fill(0x5a));
  }

  const firstChange = (now: Uint8Array, was: Uint8Array, base: number) => {
    for (let i = 0; i < was.length; i++) if (now[i] !== was[i]) return `0x${(base + i).toString(16)}`;
    return "none";
  };
  const lowNow = u8.subarray(end, off(ARENA));
  const highNow = u8.subarray(off(ARENA + ARENA_BYTES), RAM_BYTES);
  assert.ok(
    Buffer.from(lowNow).equals(sentinelLow) && Buffer.from(highNow).equals(sentinelHigh),
    `seed ${seed}: the sentinel changed (first at ${firstChange(lowNow, sentinelLow, RAM_BASE + end)}, ` +
      `${firstChange(highNow, sentinelHigh, ARENA + ARENA_BYTES)})`,
  );
  assert.ok(
    Buffer.from(u8.subarray(0, text.length)).equals(text),
    `seed ${seed}: the program's code changed`,
  );
  const r = off(symbol(p, "fuzz_report"));
  const field = (i: number) => Number(view.getBigUint64(r + 8 * i, true));
  return {
    events,
    executed,
    report: {
      opsDone: field(0),
      faults: field(1),
      usedSeen: field(2),
      queuesReady: field(3),
      unexpectedCause: field(4),
    },
  };
}

test("the board fuzzer program: its code has no 16-byte slot a device could read as a descriptor naming RAM", {
  skip,
}, () => {
  // board-fuzz.c places descriptor tables over its own .text; a slot there whose address is in RAM (high word
  // 0) could name the sentinel, and the check below would blame the device for the program's choice.
  const p = build();
  const start = symbol(p, "_text_start");
  const textEnd = symbol(p, "_text_end");
  const board = new RiscvVirtBoard(
    {
      harts: 1,
      memoryBytes: RAM_BYTES,
      firmware: null,
      kernel: { name: "x", bytes: p.elf },
      initrd: null,
      bootargs: "",
    },
    { clock: { nowMs: () => 0 }, console: { write() {} }, entropy: { fill() {} }, disks: [] },
  );
  const v = board.ram.view;
  for (let a = start; a + 8 <= textEnd; a += 16) {
    const lo = v.getUint32(a - RAM_BASE, true);
    const hi = v.getUint32(a - RAM_BASE + 4, true);
    assert.ok(hi !== 0 || lo < RAM_BASE || lo >= RAM_BASE + RAM_BYTES, `slot 0x${a.toString(16)} names RAM`);
  }
});

test(`hostile bare-metal guest, seeds ${SEEDS.join(", ")}: ends only when it asks, sentinel untouched`, {
  skip,
}, () => {
  const p = build();
  for (const seed of SEEDS) {
    const { events, executed, report } = runSeed(p, seed);
    assert.equal(
      report.unexpectedCause,
      0,
      `seed ${seed}: unexpected trap, mcause ${report.unexpectedCause}`,
    );
    assert.ok(executed < INSTRUCTION_BUDGET, `seed ${seed}: still running after ${executed} instructions`);
    assert.deepEqual(events, [{ kind: "poweroff", code: 0x20 + (seed % 0xc0) }], `seed ${seed}`);
    assert.equal(report.opsDone, OPS, `seed ${seed}: the program did not finish its operations`);
    // The attack went deep: accesses faulted, queues were accepted, devices completed requests.
    assert.ok(report.faults > 0 && report.queuesReady > 0 && report.usedSeen > 0, JSON.stringify(report));
  }
});

test("`tsvm run --bios none --kernel board-fuzz.elf` attacks the devices and exits with the program's code", {
  skip,
}, () => {
  // Without the test writing them, the program's parameters are its defaults: seed 1, 3000 operations.
  const p = build();
  const dir = mkdtempSync(join(tmpdir(), "tsvm-board-fuzz-"));
  try {
    const elf = join(dir, "board-fuzz.elf");
    writeFileSync(elf, p.elf);
    const r = spawnSync(resolve(here, "../../bin/tsvm"), ["run", "--bios", "none", "--kernel", elf], {
      encoding: "latin1",
      timeout: 120_000,
      stdio: ["ignore", "pipe", "pipe"],
    });
    assert.equal(r.error, undefined);
    assert.equal(r.status, 0x20 + 1, `tsvm run ended with ${r.status} (signal ${r.signal}): ${r.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
