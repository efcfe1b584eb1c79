// Dirty-page tracking of guest RAM (GuestRam.dirtyPages, live migration's pre-copy): the map sees a hart's
// stores in the interpreter and in compiled blocks, and device DMA, and every write after a take is in the
// next take, though the hart's store TLB still mapped the page before it.

import assert from "node:assert/strict";
import { test } from "node:test";
import { skipUnless } from "../../../tests/skip-unless.ts";
import { assembleStart as assemble, haveCrossAssembler } from "../../engines/riscv/cross-assembler.ts";
import { GuestRam } from "../bus/guest-ram.ts";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { VirtioMmio } from "../devices/virtio/virtio-mmio.ts";
import { VirtioRng } from "../devices/virtio/virtio-rng.ts";
import { VirtioTestDriver } from "../devices/virtio/virtio-test-driver.ts";
import { Rv64Hart } from "./hart.ts";

const RAM_BASE = 0x8000_0000;
const skip = skipUnless(haveCrossAssembler(), "riscv64-linux-gnu-gcc is not installed");

/**
 * Counts forever: a doubleword at RAM page 0x40 and a byte at page 0x41 each pass, through a loop that gets
 * compiled once hot (threshold 2) when the JIT is on.
 */
const COUNTER = `
  li s0, ${RAM_BASE + 0x40_000}
  li s1, ${RAM_BASE + 0x41_000}
  li a0, 0
loop:
  addi a0, a0, 1
  sd a0, 8(s0)
  sb a0, 100(s1)
  j loop
`;

function counterHart(jit: boolean): { hart: Rv64Hart; ram: GuestRam } {
  const ram = new GuestRam(RAM_BASE, 1 << 20);
  ram.u8.set(assemble(COUNTER), 0);
  const hart = new Rv64Hart(0, new PhysBus(ram), { mtime: () => 0 }, { jit });
  if (hart.blockCache !== null) hart.blockCache.threshold = 2;
  // As the board does: a take empties the hart's write TLBs.
  ram.addWriteListener({ ramWritten: () => {}, dirtyPagesReset: () => hart.dropAllWriteMappings() });
  hart.setPc(RAM_BASE, 0);
  return { hart, ram };
}

test("the map sees interpreter stores, also to a page the store TLB mapped before the take", { skip }, () => {
  const { hart, ram } = counterHart(false);
  hart.run(1000); // the store TLB maps both pages before tracking starts
  ram.startDirtyTracking();
  hart.run(1000);
  assert.deepEqual([...ram.takeDirtyPages()], [0x40, 0x41]);
  assert.deepEqual([...ram.takeDirtyPages()], [], "nothing written since the take");
  hart.run(1000);
  assert.deepEqual([...ram.takeDirtyPages()], [0x40, 0x41], "stores after a take are in the next take");
  ram.stopDirtyTracking();
  assert.equal(ram.dirtyPages, null);
  assert.throws(() => ram.takeDirtyPages(), /not on/);
});

test("the map sees stores of compiled blocks", { skip }, () => {
  const { hart, ram } = counterHart(true);
  hart.run(10_000);
  const cache = hart.blockCache!;
  assert.ok(cache.compiled > 0, "the loop was compiled");
  ram.startDirtyTracking();
  for (let round = 0; round < 3; round++) {
    const before = ram.u8[0x41_000 + 100];
    hart.run(10_000);
    assert.notEqual(ram.u8[0x41_000 + 100], before, "the compiled loop ran");
    assert.deepEqual([...ram.takeDirtyPages()], [0x40, 0x41], `round ${round}`);
  }
});

test("the map sees device DMA (a virtio-rng buffer and its used ring)", () => {
  const ram = new GuestRam(RAM_BASE, 1 << 20);
  const rng = new VirtioRng({ fill: (dst) => dst.fill(0x5a) });
  const mmio = new VirtioMmio("virtio_mmio@10008000", rng, ram, new CallbackIrqLine(() => {}));
  const drv = new VirtioTestDriver(mmio, ram, RAM_BASE + 0x10_000);
  assert.ok(drv.negotiate((1n << 64n) - 1n) !== null);
  const q = drv.setupQueue(0);
  drv.driverOk();
  drv.resetHeap(RAM_BASE + 0x80_000);
  ram.startDirtyTracking();
  drv.add(q, [{ writable: 5000 }]); // the driver's own writes are a hart's, not seen here
  assert.deepEqual([...ram.takeDirtyPages()], []);
  drv.kick(q);
  const [used] = drv.takeUsed(q);
  const buffer = used!.buffers[0]!;
  const first = (buffer.addr - RAM_BASE) >>> 12;
  const pages = [...ram.takeDirtyPages()];
  assert.ok(pages.includes(first) && pages.includes(first + 1), `buffer pages in ${pages}`);
  assert.ok(pages.includes((q.used - RAM_BASE) >>> 12), `used ring page in ${pages}`);
});
