import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildVirtFdt } from "./riscv-virt-fdt.ts";

function dts(dtb: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-virt-fdt-"));
  try {
    writeFileSync(join(dir, "x.dtb"), dtb);
    return execFileSync("dtc", ["-q", "-I", "dtb", "-O", "dts", join(dir, "x.dtb")], { encoding: "utf8" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Node paths of a decompiled tree, e.g. "/soc/plic@c000000". */
function nodePaths(text: string): string[] {
  const paths: string[] = [];
  const stack: string[] = [];
  for (const line of text.split("\n")) {
    const open = line.match(/^\s*([\w,@.-]+|\/) \{$/);
    if (open) {
      stack.push(open[1] === "/" ? "" : open[1]!);
      paths.push(stack.join("/") || "/");
    } else if (/^\s*\};$/.test(line)) stack.pop();
  }
  return paths;
}

const config = {
  harts: 2,
  ramSize: 256 * 1024 * 1024,
  bootargs: "console=ttyS0 earlycon=sbi",
  initrdStart: 0x8820_0000,
  initrdEnd: 0x8850_0000,
  mmuType: "riscv,sv39",
  isa: "rv64imafdc",
};

test("the tree has every node QEMU's virt board has for the devices we model", () => {
  const ours = new Set(nodePaths(dts(buildVirtFdt(config))));
  const dir = mkdtempSync(join(tmpdir(), "tsvm-qemu-dtb-"));
  let qemu: string[];
  try {
    execFileSync(
      "qemu-system-riscv64",
      ["-M", `virt,dumpdtb=${join(dir, "virt.dtb")}`, "-smp", "2", "-m", "256M", "-nographic"],
      { stdio: "ignore", timeout: 20_000 },
    );
    qemu = nodePaths(dts(new Uint8Array(readFileSync(join(dir, "virt.dtb")))));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  // Devices this board does not model.
  const notModelled = /pmu|fw-cfg|flash|platform-bus|pci@/;
  const missing = qemu.filter((p) => !notModelled.test(p) && !ours.has(p));
  assert.deepEqual(missing, []);
});

test("properties Linux and OpenSBI read are present with QEMU's values", () => {
  const text = dts(buildVirtFdt(config));
  for (const re of [
    /bootargs = "console=ttyS0 earlycon=sbi";/,
    /stdout-path = "\/soc\/serial@10000000";/,
    /linux,initrd-start = <0x00 0x88200000>;/,
    /linux,initrd-end = <0x00 0x88500000>;/,
    /reg = <0x00 0x80000000 0x00 0x10000000>;/,
    /timebase-frequency = <0x989680>;/,
    /riscv,isa = "rv64imafdc";/,
    /mmu-type = "riscv,sv39";/,
    /compatible = "riscv,cpu-intc";/,
    /compatible = "sifive,clint0\\0riscv,clint0";/,
    /compatible = "sifive,plic-1.0.0\\0riscv,plic0";/,
    /riscv,ndev = <0x5f>;/,
    /reg = <0x00 0xc000000 0x00 0x600000>;/,
    /compatible = "ns16550a";/,
    // 3686400 = 00 38 40 00, which dtc prints as a string (as it does for QEMU's tree).
    /clock-frequency = "\\08@";/,
    /compatible = "sifive,test1\\0sifive,test0\\0syscon";/,
    /compatible = "google,goldfish-rtc";/,
    /compatible = "syscon-poweroff";\s*regmap = <0x\w+>;\s*offset = <0x00>;\s*value = <0x5555>;/,
    /value = <0x7777>;/,
  ])
    assert.match(text, re);
  assert.equal(text.match(/compatible = "virtio,mmio";/g)?.length, 8);
  // Each virtio slot i (base 0x10001000 + 0x1000·i) raises PLIC source 1 + i.
  assert.match(text, /virtio_mmio@10008000 \{[^}]*interrupts = <0x08>;/);
  assert.match(text, /virtio_mmio@10001000 \{[^}]*interrupts = <0x01>;/);
  // Per-hart interrupt wiring: CLINT (MSIP 3, MTIP 7) and PLIC contexts (M ext 11, S ext 9).
  const intc = [...text.matchAll(/interrupt-controller \{[^}]*phandle = <(0x\w+)>;/g)].map((m) => m[1]);
  assert.equal(intc.length, 2);
  assert.match(
    text,
    new RegExp(`interrupts-extended = <${intc[0]} 0x03 ${intc[0]} 0x07 ${intc[1]} 0x03 ${intc[1]} 0x07>;`),
  );
  assert.match(
    text,
    new RegExp(`interrupts-extended = <${intc[0]} 0x0b ${intc[0]} 0x09 ${intc[1]} 0x0b ${intc[1]} 0x09>;`),
  );
});

test("without an initrd there are no initrd properties", () => {
  const text = dts(buildVirtFdt({ ...config, harts: 1, initrdStart: 0, initrdEnd: 0 }));
  assert.doesNotMatch(text, /initrd/);
  assert.doesNotMatch(text, /cpu@1/);
});
