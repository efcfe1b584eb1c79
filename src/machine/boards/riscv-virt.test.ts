import assert from "node:assert/strict";
import { test } from "node:test";
import { isDeepStrictEqual } from "node:util";
import { assembleElf } from "../../engines/riscv/cross-assembler.ts";
import { MemoryBlockBackend } from "../devices/virtio/memory-block-backend.ts";
import type { BlockBackend, CharSink } from "../ports.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import {
  type PowerEvent,
  RiscvVirtBoard,
  type RiscvVirtBoardState,
  type RiscvVirtConfig,
} from "./riscv-virt.ts";

/** The tail every HTIF program shares: `exit(a0)` through tohost, and the tohost/fromhost words. */
const HTIF = `
htif_exit: slli a0, a0, 1
  ori a0, a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
.data
.balign 64
.globl tohost
tohost: .dword 0
.globl fromhost
fromhost: .dword 0
.text
`;

interface Run {
  board: RiscvVirtBoard;
  out: () => string;
  events: PowerEvent[];
}

function boot(
  source: string,
  config: Partial<RiscvVirtConfig> = {},
  disks: BlockBackend[] = [],
  withVirtioConsole = false,
): Run {
  let out = "";
  const console: CharSink = { write: (b) => (out += Buffer.from(b).toString("latin1")) };
  const board = new RiscvVirtBoard(
    {
      harts: 1,
      memoryBytes: 32 * 1024 * 1024,
      firmware: null,
      kernel: { name: "prog.elf", bytes: assembleElf(`.text\n.globl _start\n_start:\n${source}\n${HTIF}`) },
      initrd: null,
      bootargs: "console=ttyS0",
      ...config,
    },
    {
      clock: { nowMs: () => performance.now() },
      console,
      entropy: { fill: (d) => d.fill(4) },
      disks,
      virtioConsole: withVirtioConsole ? { sink: { write: () => {} } } : undefined,
    },
  );
  const events: PowerEvent[] = [];
  board.onPower = (e) => events.push(e);
  return { board, out: () => out, events };
}

/** Runs slices until a power event (or the limit). */
function runUntilEvent(run: Run, maxSlices = 2000): PowerEvent {
  for (let i = 0; i < maxSlices && run.events.length === 0; i++) run.board.runSlice(10_000);
  assert.ok(run.events.length > 0, `no power event; console: ${run.out()}`);
  return run.events[0]!;
}

test("boots through the reset ROM: a0 = hartid, a1 = the device tree, M-mode at the ELF entry", () => {
  const run = boot(`
  bnez a0, fail          # hart 0
  lwu t1, 0(a1)          # FDT magic 0xd00dfeed, big-endian in memory
  li t2, 0xedfe0dd0
  bne t1, t2, fail
  csrr t1, mhartid
  bnez t1, fail
  li a0, 42
  j htif_exit
fail: li a0, 1
  j htif_exit`);
  assert.deepEqual(runUntilEvent(run), { kind: "htif-exit", code: 42 });
});

test("the block compiler is on by default, `jit: false` turns it off, and both give the same result", () => {
  // 100,000 passes: enough for the loop's block to get hot and be compiled.
  const program = `
  li a0, 0
  li t0, 100000
1: addi a0, a0, 3
  andi a0, a0, 1023
  addi t0, t0, -1
  bnez t0, 1b
  j htif_exit`;
  const on = boot(program);
  const off = boot(program, { jit: false });
  const a = runUntilEvent(on, 20_000);
  assert.deepEqual(runUntilEvent(off, 20_000), a);
  assert.deepEqual(a, { kind: "htif-exit", code: (3 * 100000) & 1023 });
  assert.equal(on.board.harts[0]!.jitEnabled, true);
  assert.ok(on.board.harts[0]!.blockCache!.compiled > 0);
  assert.equal(off.board.harts[0]!.jitEnabled, false);
  assert.equal(on.board.harts[0]!.instret, off.board.harts[0]!.instret);
});

test("HTIF console output and UART output both reach the console sink", () => {
  const run = boot(`
  la s0, tohost
  li s1, 0x0101000000000000  # device 1 (console), command 1 (write)
  la s2, msg
next: lbu t0, 0(s2)
  beqz t0, uart
  or t1, s1, t0
  sd t1, 0(s0)
wait: ld t1, 0(s0)           # the host clears tohost once it has taken the byte
  bnez t1, wait
  addi s2, s2, 1
  j next
uart: li t0, 0x10000000
  li t1, 'U'
  sb t1, 0(t0)
  li a0, 0
  j htif_exit
.data
msg: .asciz "htif!"
.text`);
  assert.deepEqual(runUntilEvent(run), { kind: "htif-exit", code: 0 });
  assert.equal(run.out(), "htif!U");
});

test("two harts run round-robin and both reach shared memory with AMOs", () => {
  const run = boot(
    `
  la t0, counter
  li t1, 1
  amoadd.w zero, t1, (t0)
  bnez a0, park
spin: lw t1, 0(t0)
  li t2, 2
  bne t1, t2, spin
  li a0, 7
  j htif_exit
park: wfi
  j park
.data
counter: .word 0
.text`,
    { harts: 2 },
  );
  assert.deepEqual(runUntilEvent(run), { kind: "htif-exit", code: 7 });
  const [i0, i1] = run.board.stats().instret;
  assert.ok(i0! > 0 && i1! > 0, "both harts executed");
});

/** Arms hart 0's timer 20 ms ahead, sleeps in WFI until MTIP, then exits with 5. */
const TIMER_SLEEP = `
  li t0, 0x200bff8           # mtime
  ld t1, 0(t0)
  li t2, 200000              # 20 ms at 10 MHz
  add t1, t1, t2
  li t0, 0x2004000           # mtimecmp hart 0
  sd t1, 0(t0)
  li t0, 0x80                # MTIE
  csrs mie, t0
sleep: wfi
  csrr t0, mip
  andi t0, t0, 0x80
  beqz t0, sleep
  li a0, 5
  j htif_exit`;

test("a hart in WFI with a timer armed makes the board idle until the CLINT deadline", () => {
  const run = boot(TIMER_SLEEP);
  const t0 = performance.now();
  for (let i = 0; i < 5 && !run.board.allWaiting; i++) run.board.runSlice(10_000);
  assert.equal(run.board.allWaiting, true);
  const deadline = run.board.nextDeadlineMs();
  assert.ok(deadline > t0 && deadline < t0 + 100, `deadline ${deadline - t0} ms away`);
  while (performance.now() < deadline + 1) {}
  assert.deepEqual(runUntilEvent(run), { kind: "htif-exit", code: 5 });
});

test("sifive_test: 0x5555 powers off, 0x7777 re-runs the whole boot", () => {
  const off = boot(`
  li t0, 0x100000
  li t1, 0x5555
  sw t1, 0(t0)
1: j 1b`);
  assert.deepEqual(runUntilEvent(off), { kind: "poweroff", code: 0 });

  const reset = boot(`
  la t0, flag                # RAM is cleared and the image reloaded at reset: flag is 0 again
  lw t1, 0(t0)
  bnez t1, bad
  li t1, 1
  sw t1, 0(t0)
  li t0, 0x81000000          # and RAM outside the image is zero again
  lw t1, 0(t0)
  bnez t1, bad
  li t1, 1
  sw t1, 0(t0)
  li t0, 0x10000000
  li t1, 'B'
  sb t1, 0(t0)
  li t0, 0x100000
  li t1, 0x7777
  sw t1, 0(t0)
1: j 1b
bad: li a0, 9
  j htif_exit
.data
flag: .word 0
.text`);
  for (let i = 0; i < 100 && reset.events.length < 3; i++) reset.board.runSlice(10_000);
  assert.deepEqual(reset.events.slice(0, 3), [{ kind: "reset" }, { kind: "reset" }, { kind: "reset" }]);
  assert.match(reset.out(), /^BBB/);
});

test("virtio-mmio slots: disks, virtio-rng, virtio-console, the rest empty (DeviceID 0) as on QEMU", () => {
  const run = boot(
    `
  li s0, 0x10001000
  li s1, 0x74726976          # "virt"
  li a0, 0
  li s2, 0                   # slot
slot: lw t0, 0(s0)             # MagicValue
  bne t0, s1, bad
  lw t0, 4(s0)               # Version 2 (modern)
  li t1, 2
  bne t0, t1, bad
  lw t0, 8(s0)               # DeviceID, 4 bits per slot
  slli t1, s2, 2
  sll t0, t0, t1
  or a0, a0, t0
  li t1, 0x1000
  add s0, s0, t1
  addi s2, s2, 1
  li t1, 8
  blt s2, t1, slot
  j htif_exit
bad: li a0, 0xfff
  j htif_exit`,
    {},
    [new MemoryBlockBackend(1024 * 1024)],
    true,
  );
  // Slot 0: block (2), slot 1: entropy (4), slot 2: console (3), slots 3..7: nothing.
  assert.deepEqual(runUntilEvent(run), { kind: "htif-exit", code: 0x342 });
});

/** Prints the digits 0..9 on the UART, one per pass of a delay loop, then exits through HTIF with 0. */
const COUNTER = `
  bnez a0, park              # hart 0 counts; the others sleep
  li s0, 0x10000000
  li s1, '0'
  li s2, '9' + 1
digit: sb s1, 0(s0)
  li t0, 20000
delay: addi t0, t0, -1
  bnez t0, delay
  addi s1, s1, 1
  blt s1, s2, digit
  li a0, 0
  j htif_exit
park: wfi
  j park`;

/** Two harts running COUNTER (prints 0…9 through HTIF, then exits) on 16 MiB. */
function counterConfig(): RiscvVirtConfig {
  return {
    harts: 2,
    memoryBytes: 16 * 1024 * 1024,
    firmware: null,
    kernel: { name: "counter.elf", bytes: assembleElf(`.text\n.globl _start\n_start:\n${COUNTER}\n${HTIF}`) },
    initrd: null,
    bootargs: "",
  };
}

test("saveState/loadState: the shared round trip, and a restored machine carries on where it was saved", () => {
  let now = 1000;
  const clock = { nowMs: () => now };
  let out = "";
  const config = counterConfig();
  const make = () =>
    new RiscvVirtBoard(config, {
      clock,
      console: { write: (b) => (out += Buffer.from(b).toString("latin1")) },
      entropy: { fill: () => {} },
      disks: [],
    });
  assertRoundTrip(assert, make, (board) => {
    board.runSlice(30_000);
    now += 1;
  });

  out = "";
  const original = make();
  while (out.length < 4) original.runSlice(5_000);
  const saved = original.saveState();
  const instretAtSave = original.stats().instret;
  const printedBeforeSave = out;
  let exits = 0;
  original.onPower = () => exits++;
  while (exits === 0) original.runSlice(5_000);
  assert.equal(out, "0123456789");

  out = "";
  const restored = make();
  restored.loadState(saved);
  assert.deepEqual(restored.stats().instret, instretAtSave);
  restored.onPower = () => exits++;
  while (exits === 1) restored.runSlice(5_000);
  assert.equal(printedBeforeSave + out, "0123456789", "the restored machine prints the rest, once");
});

test("a timer that comes due while the machine is saved interrupts the restored hart (its mip line is driven again)", () => {
  // The guest sleeps in WFI for a timer 20 ms away; the machine is paused, the timer comes due, the state
  // is saved and restored on a new board (whose CLINT, at power-on, already drives MTIP high). The hart
  // must see MTIP: a Linux guest restored so never had a timer tick on that hart again (issue 10).
  let now = 1000;
  const clock = { nowMs: () => now };
  const config: RiscvVirtConfig = {
    harts: 1,
    memoryBytes: 16 * 1024 * 1024,
    firmware: null,
    kernel: {
      name: "timer.elf",
      bytes: assembleElf(`.text\n.globl _start\n_start:\n${TIMER_SLEEP}\n${HTIF}`),
    },
    initrd: null,
    bootargs: "",
  };
  const make = () =>
    new RiscvVirtBoard(config, {
      clock,
      console: { write: () => {} },
      entropy: { fill: () => {} },
      disks: [],
    });
  const original = make();
  for (let i = 0; i < 10 && !original.allWaiting; i++) original.runSlice(10_000);
  assert.equal(original.allWaiting, true, "the guest sleeps before its timer is due");
  // Paused (no slices) while the timer comes due, then saved: the state's mtime is past mtimecmp, the
  // hart's mip does not have MTIP yet.
  now += 50;
  const saved = original.saveState();

  const restored = make();
  const events: PowerEvent[] = [];
  restored.onPower = (e) => events.push(e);
  restored.loadState(saved);
  assert.equal(restored.allWaiting, false, "the due timer wakes the hart at once");
  for (let i = 0; i < 100 && events.length === 0; i++) restored.runSlice(10_000);
  assert.deepEqual(events, [{ kind: "htif-exit", code: 5 }]);
});

test("a board given its RAM runs a state in place (no copy), or boots on it at its first slice", () => {
  let out = "";
  const config = counterConfig();
  const make = (ram?: ArrayBuffer) =>
    new RiscvVirtBoard(config, {
      clock: { nowMs: () => 5 },
      console: { write: (b) => (out += Buffer.from(b).toString("latin1")) },
      entropy: { fill: () => {} },
      disks: [],
      ram,
    });
  assert.throws(() => make(new ArrayBuffer(4096)), /the RAM buffer given is 4096 bytes, not the 16777216/);
  const original = make();
  while (out.length < 4) original.runSlice(5_000);
  const saved = original.saveState();
  const printedBeforeSave = out;
  const ramAtSave = saved.ram.slice();

  // The host hands the saved RAM's own buffer to the new board: untouched until loadState, then used as is.
  out = "";
  const restored = make(saved.ram.buffer as ArrayBuffer);
  assert.deepEqual(restored.ram.u8, ramAtSave, "constructing did not boot into the given RAM");
  restored.loadState(saved);
  assert.equal(restored.ram.buffer, saved.ram.buffer);
  let exits = 0;
  restored.onPower = () => exits++;
  while (exits === 0) restored.runSlice(5_000);
  assert.equal(printedBeforeSave + out, "0123456789", "the restored machine prints the rest, once");

  // Given RAM full of leftovers and no state, the board powers on at its first slice: cleared, images in.
  out = "";
  const junk = new Uint8Array(16 * 1024 * 1024).fill(0xa5);
  const fresh = make(junk.buffer);
  assert.equal(fresh.ram.u8[1 << 20], 0xa5);
  fresh.onPower = () => exits++;
  while (exits === 1) fresh.runSlice(5_000);
  assert.equal(out, "0123456789");
  assert.equal(fresh.ram.u8[12 << 20], 0, "RAM was cleared at power-on");
});

test("loadState refuses a state of another configuration and changes nothing", () => {
  const elf = assembleElf(`.text\n.globl _start\n_start:\n${COUNTER}\n${HTIF}`);
  const clock = { nowMs: () => 5 };
  const make = (harts: number) =>
    new RiscvVirtBoard(
      {
        harts,
        memoryBytes: 16 * 1024 * 1024,
        firmware: null,
        kernel: { name: "c", bytes: elf },
        initrd: null,
        bootargs: "",
      },
      { clock, console: { write: () => {} }, entropy: { fill: () => {} }, disks: [] },
    );
  const a = make(1);
  a.runSlice(1000);
  const before = a.saveState();
  const same = (x: RiscvVirtBoardState, y: RiscvVirtBoardState) =>
    Buffer.compare(x.ram, y.ram) === 0 && isDeepStrictEqual(x.components, y.components);
  assert.throws(
    () => a.loadState(make(2).saveState()),
    (e) => e instanceof StateError && /2 harts/.test(e.message),
  );
  // A bad component (here the PLIC, loaded after the hart) rolls back the parts already loaded.
  const other = make(1);
  other.runSlice(3000);
  const otherState = other.saveState();
  const bad = {
    ...otherState,
    components: {
      ...otherState.components,
      "plic@c000000": { ...otherState.components["plic@c000000"]!, version: 99 },
    },
  };
  assert.throws(() => a.loadState(bad), StateError);
  assert.ok(same(a.saveState(), before), "a refused state leaves the machine as it was");
});

test("configuration errors read as messages for the user", () => {
  assert.throws(() => boot("j .", { harts: 0 }), /1 to 8 CPUs/);
  assert.throws(() => boot("j .", { memoryBytes: 1000 }), /whole number of MiB/);
  assert.throws(() => boot("j .", { jitThreshold: 0 }), /JIT threshold must be a whole number from 1, not 0/);
  assert.equal(boot("j .", { jitThreshold: 7 }).board.harts[0]!.blockCache!.threshold, 7);
  assert.throws(
    () => boot("j .", { kernel: { name: "junk.bin", bytes: new Uint8Array(100) } }),
    /junk\.bin is not a RISC-V Linux Image or ELF executable/,
  );
});

test("network cards take the virtio slots after disks, rng and console; too many devices is an error", () => {
  const elf = assembleElf(`.text\n.globl _start\n_start:\nj _start\n`);
  const config: RiscvVirtConfig = {
    harts: 1,
    memoryBytes: 16 * 1024 * 1024,
    firmware: null,
    kernel: { name: "loop.elf", bytes: elf },
    initrd: null,
    bootargs: "",
  };
  const mac = (n: number) => new Uint8Array([2, 0, 0, 0, 0, n]);
  const make = (disks: number, nics: number) =>
    new RiscvVirtBoard(config, {
      clock: { nowMs: () => 0 },
      console: { write: () => {} },
      entropy: { fill: () => {} },
      disks: Array.from({ length: disks }, () => new MemoryBlockBackend(1 << 20)),
      virtioConsole: { sink: { write: () => {} } },
      nics: Array.from({ length: nics }, (_, i) => ({ mac: mac(i + 1), port: { send: () => {} } })),
    });
  const board = make(2, 2);
  // DeviceID of each used slot: block, block, entropy, console, net, net.
  assert.deepEqual(
    board.virtio.map((t) => t.read(8, 4)),
    [2, 2, 4, 3, 1, 1],
  );
  assert.equal(board.nics.length, 2);
  assert.deepEqual(board.nics[1]!.mac, mac(2));
  // A machine without cards keeps the slot ids it always had, so its saved states still load.
  const without = make(2, 0).saveState();
  const withCards = board.saveState();
  for (const id of Object.keys(without.components)) assert.ok(id in withCards.components, id);
  make(2, 0).loadState(without);
  assert.throws(() => make(4, 3), /too many disks and network cards/);
});
