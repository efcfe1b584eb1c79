import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleElf } from "../../engines/riscv/cross-assembler.ts";
import { MemoryBlockBackend } from "../devices/virtio/memory-block-backend.ts";
import type { BlockBackend, CharSink } from "../ports.ts";
import { type PowerEvent, RiscvVirtBoard, type RiscvVirtConfig } from "./riscv-virt.ts";

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

test("a hart in WFI with a timer armed makes the board idle until the CLINT deadline", () => {
  const run = boot(`
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
  j htif_exit`);
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

test("configuration errors read as messages for the user", () => {
  assert.throws(() => boot("j .", { harts: 0 }), /1 to 8 CPUs/);
  assert.throws(() => boot("j .", { memoryBytes: 1000 }), /whole number of MiB/);
  assert.throws(
    () => boot("j .", { kernel: { name: "junk.bin", bytes: new Uint8Array(100) } }),
    /junk\.bin is not a RISC-V Linux Image or ELF executable/,
  );
});
