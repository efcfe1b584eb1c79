import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleElf } from "./cross-assembler.ts";
import { RiscvEngine } from "./riscv-engine.ts";

const HTIF_EXIT = `
htif_exit: slli a0, a0, 1
  ori a0, a0, 1
  la t0, tohost
  sd a0, 0(t0)
1: j 1b
.data
.balign 64
.globl tohost
tohost: .dword 0
.text
`;

function engineFor(source: string, console = { write: (_b: Uint8Array) => {} }): RiscvEngine {
  return new RiscvEngine({
    config: {
      harts: 1,
      memoryBytes: 16 * 1024 * 1024,
      firmware: null,
      kernel: { name: "t.elf", bytes: assembleElf(`.text\n.globl _start\n_start:\n${source}\n${HTIF_EXIT}`) },
      initrd: null,
      bootargs: "",
    },
    console,
  });
}

test("a program's HTIF exit code becomes the engine's exit reason", async () => {
  const engine = engineFor("li a0, 3\n j htif_exit");
  await engine.start();
  assert.deepEqual(await engine.exited, { kind: "htif-exit", code: 3 });
  assert.equal(engine.state, "exited");
  assert.ok(engine.stats().instret[0]! > 5);
});

test("an idle guest (WFI until a timer 300 ms away) costs almost no host CPU", async () => {
  const engine = engineFor(`
  li t0, 0x200bff8
  ld t1, 0(t0)
  li t2, 3000000             # 300 ms at 10 MHz
  add t1, t1, t2
  li t0, 0x2004000
  sd t1, 0(t0)
  li t0, 0x80
  csrs mie, t0
sleep: wfi
  csrr t0, mip
  andi t0, t0, 0x80
  beqz t0, sleep
  li a0, 0
  j htif_exit`);
  const t0 = performance.now();
  await engine.start();
  // CPU is counted from 100 ms in: the first moments belong to V8 (its background threads still optimize
  // the interpreter and compiled blocks of the test before), not to the sleeping guest.
  await new Promise((r) => setTimeout(r, 100));
  const cpu0 = process.cpuUsage();
  const t1 = performance.now();
  assert.deepEqual(await engine.exited, { kind: "htif-exit", code: 0 });
  const wall = performance.now() - t0;
  const window = performance.now() - t1;
  const cpu = process.cpuUsage(cpu0);
  assert.ok(wall >= 290, `the timer fired after ${wall} ms, not about 300`);
  const cpuMs = (cpu.user + cpu.system) / 1000;
  assert.ok(cpuMs < window * 0.25, `${cpuMs.toFixed(0)} ms of CPU in ${window.toFixed(0)} ms of sleep`);
  // busyMs is wall time inside turns (stretched when the host is loaded); most of the wait is spent asleep.
  assert.ok(engine.stats().busyMs < wall / 2, `busy ${engine.stats().busyMs} ms of ${wall} ms`);
});

test("console input wakes a guest sleeping in WFI (UART RX interrupt through the PLIC)", async () => {
  const engine = engineFor(`
  li t0, 0xc000000 + 4*10    # PLIC priority of source 10 (UART0) = 1
  li t1, 1
  sw t1, 0(t0)
  li t0, 0xc002000           # context 0 (hart 0, M) enables source 10
  li t1, 1 << 10
  sw t1, 0(t0)
  li t0, 0xc200000           # context 0 threshold 0
  sw zero, 0(t0)
  li t0, 0x10000001          # UART IER: received data available
  li t1, 1
  sb t1, 0(t0)
  li t0, 0x800               # MEIE
  csrs mie, t0
sleep: wfi
  li t0, 0x10000005          # LSR.DR?
  lbu t1, 0(t0)
  andi t1, t1, 1
  beqz t1, sleep
  li t0, 0x10000000
  lbu a0, 0(t0)
  j htif_exit`);
  await engine.start();
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(engine.state, "running", "still waiting for input");
  assert.ok(engine.board.allWaiting, "asleep in WFI");
  engine.sendConsole(Uint8Array.of(0x41));
  const reason = await Promise.race([
    engine.exited,
    new Promise((r) => setTimeout(() => r("timeout"), 2000)),
  ]);
  assert.deepEqual(reason, { kind: "htif-exit", code: 0x41 });
});

test("pause parks the machine, resume continues, stop ends it; illegal transitions throw", async () => {
  const engine = engineFor("1: j 1b");
  await assert.rejects(engine.resume(), /cannot resume a VM that is created/);
  await engine.start();
  await new Promise((r) => setTimeout(r, 20));
  await engine.pause();
  const before = engine.stats().instret[0]!;
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(engine.stats().instret[0], before, "no instruction runs while paused");
  await engine.resume();
  await new Promise((r) => setTimeout(r, 30));
  assert.ok(engine.stats().instret[0]! > before);
  await engine.stop();
  assert.deepEqual(await engine.exited, { kind: "stopped" });
  await assert.rejects(engine.start(), /cannot start a VM that is exited/);
});

test("reset() reboots the guest in place; saveState/restoreState move a paused machine to a new engine", async () => {
  let out = "";
  const program = `
  li s0, 0x10000000
  la t0, boots               # RAM is reloaded at reset, so this counts runs of the image, not resets
  lw t1, 0(t0)
  addi t1, t1, 1
  sw t1, 0(t0)
  addi t1, t1, '0'
  sb t1, 0(s0)
  li s1, 0
count: addi s1, s1, 1          # long enough to outlast the test's waits with compiled blocks (~0.3 s)
  li t0, 100000000
  blt s1, t0, count
  li a0, 6
  j htif_exit
.data
boots: .word 0
.text`;
  const sink = { write: (b: Uint8Array) => (out += Buffer.from(b).toString()) };
  const first = engineFor(program, sink);
  await first.start();
  await new Promise((r) => setTimeout(r, 20));
  await first.reset();
  assert.equal(first.stats().resets, 1);
  await new Promise((r) => setTimeout(r, 20));
  await assert.rejects(first.saveState(), /cannot save the state of a VM that is running/);
  await first.pause();
  const snapshot = await first.saveState();
  assert.equal(snapshot.engine, "riscv");
  const savedInstret = first.stats().instret[0]!;
  await first.stop();
  assert.equal(out, "11", "the reset booted the image again");

  const second = engineFor(program, sink);
  await second.restoreState(snapshot);
  assert.equal(second.stats().instret[0], savedInstret);
  await second.start();
  assert.deepEqual(await second.exited, { kind: "htif-exit", code: 6 });
  assert.equal(out, "11", "the restored guest continued instead of booting again");
  assert.ok(second.stats().instret[0]! > savedInstret);
  await assert.rejects(
    second.restoreState({ engine: "kvm", version: 1, data: {} }),
    /cannot restore the state of a VM that is exited/,
  );
  const third = engineFor(program, sink);
  await assert.rejects(third.restoreState({ engine: "kvm", version: 1, data: {} }), /written by engine kvm/);
});
