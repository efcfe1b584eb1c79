import assert from "node:assert/strict";
import { test } from "node:test";
import { assembleElf } from "../../engines/riscv/cross-assembler.ts";
import { planBoot } from "./boot-plan.ts";

const MiB = 1024 * 1024;

function image(size: number, imageSize: number): Uint8Array {
  const h = new Uint8Array(size);
  new DataView(h.buffer).setUint32(16, imageSize, true);
  h.set([0x52, 0x49, 0x53, 0x43, 0x56, 0, 0, 0], 48);
  h.set([0x52, 0x53, 0x43, 0x05], 56);
  return h;
}

test("firmware, Image, initrd and FDT land where QEMU's virt board puts them", () => {
  const plan = planBoot({
    ramBase: 0x8000_0000,
    ramSize: 256 * MiB,
    firmware: { name: "fw_dynamic.bin", bytes: new Uint8Array(0x2_3456) },
    kernel: { name: "Image", bytes: image(8 * MiB, 10 * MiB) },
    initrd: { name: "initrd", bytes: new Uint8Array(3 * MiB) },
    fdtSize: 0x1800,
  });
  assert.equal(plan.startAddress, 0x8000_0000);
  assert.equal(plan.kernelEntry, 0x8020_0000, "next 2 MiB boundary after the firmware");
  assert.equal(plan.initrdStart, 0x8020_0000 + 128 * MiB, "kernel + min(RAM/2, 128 MiB)");
  assert.equal(plan.initrdEnd, plan.initrdStart + 3 * MiB);
  assert.equal(plan.fdtAddress, 0x8fe0_0000, "2 MiB aligned below the top of RAM");
  assert.equal(plan.tohost, null);
  assert.deepEqual(
    plan.chunks.map((c) => [c.address, c.size]),
    [
      [0x8000_0000, 0x2_3456],
      [0x8020_0000, 10 * MiB],
      [plan.initrdStart, 3 * MiB],
    ],
  );
});

test("with 64 MiB the initrd goes at kernel + RAM/2", () => {
  const plan = planBoot({
    ramBase: 0x8000_0000,
    ramSize: 64 * MiB,
    firmware: { name: "fw", bytes: new Uint8Array(4096) },
    kernel: { name: "Image", bytes: image(4 * MiB, 4 * MiB) },
    initrd: { name: "initrd", bytes: new Uint8Array(MiB) },
    fdtSize: 0x1000,
  });
  assert.equal(plan.initrdStart, 0x8020_0000 + 32 * MiB);
  assert.equal(plan.fdtAddress, 0x8000_0000 + 62 * MiB);
});

test("--bios none with an ELF starts at its entry and finds its HTIF tohost", () => {
  const elf = assembleElf(".text\n.globl _start\n_start: j _start\n.data\n.globl tohost\ntohost: .dword 0\n");
  const plan = planBoot({
    ramBase: 0x8000_0000,
    ramSize: 16 * MiB,
    firmware: null,
    kernel: { name: "prog.elf", bytes: elf },
    initrd: null,
    fdtSize: 0x1000,
  });
  assert.equal(plan.startAddress, 0x8000_0000);
  assert.equal(plan.tohost, 0x8000_1000);
  assert.equal(plan.initrdEnd, 0);
});

test("memory too small, a kernel that is neither Image nor ELF, and ELF segments outside RAM are refused", () => {
  assert.throws(
    () =>
      planBoot({
        ramBase: 0x8000_0000,
        ramSize: 16 * MiB,
        firmware: { name: "fw", bytes: new Uint8Array(4096) },
        kernel: { name: "Image", bytes: image(20 * MiB, 20 * MiB) },
        initrd: null,
        fdtSize: 0x1000,
      }),
    /memory too small|does not fit in RAM/,
  );
  assert.throws(
    () =>
      planBoot({
        ramBase: 0x8000_0000,
        ramSize: 16 * MiB,
        firmware: null,
        kernel: { name: "vmlinuz", bytes: new Uint8Array(4096) },
        initrd: null,
        fdtSize: 0x1000,
      }),
    /vmlinuz is not a RISC-V Linux Image or ELF executable/,
  );
  const low = assembleElf(".text\n.globl _start\n_start: j _start\n", 0x4000_0000);
  assert.throws(
    () =>
      planBoot({
        ramBase: 0x8000_0000,
        ramSize: 16 * MiB,
        firmware: null,
        kernel: { name: "low.elf", bytes: low },
        initrd: null,
        fdtSize: 0x1000,
      }),
    /kernel low\.elf \(0x40000000–.*\) does not fit in RAM/,
  );
});
