// Two harts of one machine on two threads (RiscvEngine's hartThreads), bare metal: after a start barrier both
// hammer the same doubleword with amoadd.d (carrying into the high half) and the same word with an LR/SC loop
// at the same time; not one update may be lost. Then a WFI'd hart is woken across threads by an IPI (CLINT
// msip written by hart 0) and a pause/resume in between changes nothing. Also: a 64-bit store is seen whole
// by a load on the other thread, and dirty-page tracking sees the worker hart's stores.
import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleElf } from "./cross-assembler.ts";
import { RiscvEngine } from "./riscv-engine.ts";

const ROUNDS = 200_000;

/** Both harts start, with s0 = mhartid, once both are here (a word `ready` in .data counts them). */
const START_BARRIER = `
.text
.globl _start
_start:
  csrr s0, mhartid
  li t2, 1
  la t0, ready
  amoadd.w zero, t2, (t0)
barrier:
  lw t3, 0(t0)
  li t4, 2
  bne t3, t4, barrier
`;

const PROGRAM = `
${START_BARRIER}  la t0, counter
  li t1, ${ROUNDS}
  li t2, 0xffffffff
amo_loop:
  amoadd.d zero, t2, (t0)
  addi t1, t1, -1
  bnez t1, amo_loop
  la t0, counter2
  li t1, ${ROUNDS}
sc_loop:
  lr.w t3, (t0)
  addi t3, t3, 1
  sc.w t4, t3, (t0)
  bnez t4, sc_loop
  addi t1, t1, -1
  bnez t1, sc_loop
  la t0, done
  li t2, 1
  amoadd.w zero, t2, (t0)
  bnez s0, sleeper
wait_done:
  lw t3, 0(t0)
  li t4, 2
  bne t3, t4, wait_done
  # wake hart 1 (in WFI) with a software interrupt: CLINT msip[1]
  li t0, 0x2000004
  li t1, 1
  sw t1, 0(t0)
  la t0, woken
wait_woken:
  lw t3, 0(t0)
  beqz t3, wait_woken
  la t0, counter
  ld a1, 0(t0)
  li a2, ${ROUNDS * 2 * 0xffffffff}
  bne a1, a2, bad
  la t0, counter2
  lw a1, 0(t0)
  li a2, ${ROUNDS * 2}
  bne a1, a2, bad2
  li a0, 0
  j htif_exit
bad:
  li a0, 1
  j htif_exit
bad2:
  li a0, 2
  j htif_exit
sleeper:
  li t0, 8            # mie.MSIE
  csrs mie, t0
sleep:
  wfi
  csrr t0, mip
  andi t0, t0, 8
  beqz t0, sleep
  la t0, woken
  li t1, 1
  sw t1, 0(t0)
park:
  wfi
  j park
htif_exit:
  slli a0, a0, 1
  ori a0, a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
.data
.balign 64
.globl tohost
tohost: .dword 0
.balign 8
counter: .dword 0
counter2: .word 0
ready: .word 0
done: .word 0
woken: .word 0
`;

/** A bare-metal `program` on two harts, hart 1 on a worker thread. */
function twoHartEngine(program = PROGRAM, jit = true): RiscvEngine {
  return new RiscvEngine({
    config: {
      harts: 2,
      memoryBytes: 16 * 1024 * 1024,
      firmware: null,
      kernel: { name: "t.elf", bytes: assembleElf(program) },
      initrd: null,
      bootargs: "",
      jit,
    },
    console: { write: () => {} },
    hartThreads: true,
  });
}

test("two harts on two threads: amoadd.d and LR/SC on shared words lose no update; an IPI wakes a WFI'd hart", async () => {
  const engine = twoHartEngine();
  await engine.start();
  // A pause while both harts run parks the second on its thread and hands its state over.
  await new Promise((r) => setTimeout(r, 200));
  if (engine.state === "running") {
    await engine.pause();
    const state = (await engine.saveState()).data as { components: Record<string, { instret: number }> };
    assert.equal(state.components.hart1!.instret, engine.stats().instret[1]);
    await engine.resume();
  }
  assert.deepEqual(await engine.exited, { kind: "htif-exit", code: 0 });
  assert.ok(engine.stats().instret[1]! > 4 * ROUNDS, `hart 1 ran ${engine.stats().instret[1]} instructions`);
});

test("reset() parks the second hart before RAM is loaded again; both run the program again from its start", async () => {
  const engine = twoHartEngine();
  await engine.start();
  // Mid-run (or at the latest once the first run ended): the counters start again from zero with RAM.
  const deadline = Date.now() + 30_000;
  while (engine.stats().instret[1]! < 100_000 && Date.now() < deadline && engine.state === "running")
    await new Promise((r) => setTimeout(r, 20));
  if (engine.state === "running") {
    await engine.reset();
    assert.equal(engine.stats().resets, 1);
  }
  assert.deepEqual(await engine.exited, { kind: "htif-exit", code: 0 });
});

const TEAR_ROUNDS = 3_000_000;

/** Hart 0 stores 0 and all-ones in turn into one doubleword while hart 1 loads it; exits with the count of
 * loads that saw neither (half of one store and half of the other). */
const TEAR_PROGRAM = `
${START_BARRIER}  la t0, shared
  la t2, stop
  li t5, -1
  bnez s0, reader
writer:
  # (the load between the stores keeps a compiler from dropping the first as overwritten)
  sd zero, 0(t0)
  lw t3, 0(t2)
  sd t5, 0(t0)
  beqz t3, writer
  fence rw, rw
  la t0, torn
  ld a0, 0(t0)
  slli a0, a0, 1
  ori a0, a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
reader:
  li t1, ${TEAR_ROUNDS}
  li t4, 0
read:
  ld t3, 0(t0)
  beqz t3, whole
  beq t3, t5, whole
  addi t4, t4, 1
whole:
  addi t1, t1, -1
  bnez t1, read
  la t0, torn
  sd t4, 0(t0)
  fence rw, rw
  li t3, 1
  sw t3, 0(t2)
park:
  wfi
  j park
.data
.balign 64
.globl tohost
tohost: .dword 0
.balign 8
shared: .dword 0
torn: .dword 0
ready: .word 0
stop: .word 0
`;

for (const jit of [true, false])
  test(`an aligned 64-bit store is seen whole by a load on another thread (RVWMO single-copy atomicity), JIT ${jit ? "on" : "off"}`, async () => {
    const engine = twoHartEngine(TEAR_PROGRAM, jit);
    await engine.start();
    // The exit code is how many of hart 1's loads saw half of one store and half of the other.
    assert.deepEqual(await engine.exited, { kind: "htif-exit", code: 0 });
  });

/** Both harts write forever: a doubleword into each of 32 pages of their own in turn, at an offset that
 * moves with the pass, so every pass changes every page. */
const WRITERS_PROGRAM = `
.text
.globl _start
_start:
  csrr s0, mhartid
  la s1, area
  slli t0, s0, 17          # hart h writes pages [32h, 32h + 32) of the area
  add s1, s1, t0
  li a0, 0
pass:
  addi a0, a0, 1
  andi t1, a0, 511
  slli t1, t1, 3           # offset in the page: (pass mod 512) * 8
  add t2, s1, t1
  li t3, 32
page:
  sd a0, 0(t2)
  li t4, 4096
  add t2, t2, t4
  addi t3, t3, -1
  bnez t3, page
  j pass
.data
.balign 4096
area: .space ${64 * 4096}
`;

test("dirty-page tracking sees the stores of a hart on another thread: a pre-copy of RAM while both harts write ends equal to RAM", async () => {
  const engine = twoHartEngine(WRITERS_PROGRAM);
  assert.equal(engine.capabilities.dirtyPageTracking, true);
  const ram = engine.board.ram.u8;
  await engine.start();
  try {
    // Hart 1's thread takes a while to start (it loads the machine's code).
    const deadline = Date.now() + 60_000;
    while (engine.stats().instret[1]! < 100_000 && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    // Live migration's pre-copy: all of RAM once, then the pages dirtied since, round after round, while
    // both harts write; then paused, the last dirty pages. The copy must then be RAM exactly.
    engine.startDirtyPageTracking();
    const copy = ram.slice();
    const copied = new Set<number>();
    for (let round = 0; round < 12; round++) {
      await new Promise((r) => setTimeout(r, 15));
      for (const p of engine.takeDirtyPages()) {
        copy.set(ram.subarray(p * 4096, (p + 1) * 4096), p * 4096);
        copied.add(p);
      }
    }
    await engine.pause();
    for (const p of engine.takeDirtyPages()) copy.set(ram.subarray(p * 4096, (p + 1) * 4096), p * 4096);
    const [ran0, ran1] = engine.stats().instret;
    assert.ok(ran0! > 100_000 && ran1! > 100_000, `both harts ran (${ran0}, ${ran1})`);
    // Pages of both harts' halves of the area were seen dirty while running.
    const areaPage = [...copied].sort((a, b) => a - b);
    assert.ok(areaPage.length >= 64, `${areaPage.length} pages seen dirty while running`);
    let firstDiff = -1;
    for (let i = 0; i < ram.length && firstDiff < 0; i++) if (copy[i] !== ram[i]) firstDiff = i;
    assert.equal(firstDiff, -1, `the copy differs from RAM at page ${firstDiff >> 12}`);
  } finally {
    await engine.stop();
  }
});
