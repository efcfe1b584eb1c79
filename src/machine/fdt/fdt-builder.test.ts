import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FdtBuilder } from "./fdt-builder.ts";

function sampleTree(): Uint8Array {
  const fdt = new FdtBuilder();
  fdt.root.u32("#address-cells", 2).u32("#size-cells", 2).string("compatible", "riscv-virtio");
  const intc = fdt.root.child("cpus").child("cpu@0").child("interrupt-controller");
  const intcPhandle = fdt.phandleOf(intc);
  intc.empty("interrupt-controller").u32("#interrupt-cells", 1);
  fdt.root.child("memory@80000000").string("device_type", "memory").u64("reg", 0x8000_0000, 0x1000_0000);
  fdt.root
    .child("clint@2000000")
    .strings("compatible", ["sifive,clint0", "riscv,clint0"])
    .u32("interrupts-extended", intcPhandle, 3, intcPhandle, 7);
  fdt.root
    .child("chosen")
    .string("bootargs", "console=ttyS0 earlycon=sbi")
    .bytes("blob", Uint8Array.of(1, 2, 3));
  fdt.reserve(0x8000_0000, 0x20_0000);
  return fdt.build();
}

function decompile(dtb: Uint8Array): string {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-fdt-"));
  try {
    const file = join(dir, "t.dtb");
    writeFileSync(file, dtb);
    return execFileSync("dtc", ["-q", "-I", "dtb", "-O", "dts", file], { encoding: "utf8" });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("header fields follow the DTB v17 layout", () => {
  const dtb = sampleTree();
  const v = new DataView(dtb.buffer);
  assert.equal(v.getUint32(0), 0xd00dfeed);
  assert.equal(v.getUint32(4), dtb.length);
  assert.equal(v.getUint32(20), 17);
  assert.equal(v.getUint32(24), 16);
  const offStruct = v.getUint32(8);
  const offStrings = v.getUint32(12);
  assert.equal(v.getUint32(16), 40, "reservation map right after the header");
  assert.equal(offStruct % 4, 0);
  assert.equal(offStruct + v.getUint32(36), offStrings, "strings follow the structure block");
  // First reservation entry, then the all-zero terminator.
  assert.equal(v.getUint32(40 + 4), 0x8000_0000);
  assert.equal(v.getUint32(40 + 12), 0x20_0000);
  assert.equal(v.getUint32(56) + v.getUint32(60) + v.getUint32(64) + v.getUint32(68), 0);
  assert.equal(v.getUint32(offStruct), 1, "struct block opens with FDT_BEGIN_NODE");
  assert.equal(v.getUint32(offStruct + v.getUint32(36) - 4), 9, "struct block ends with FDT_END");
});

test("dtc decompiles the blob to the tree that was built", () => {
  const dts = decompile(sampleTree());
  assert.match(dts, /\/memreserve\/\s+0x0*80000000 0x0*200000;/);
  assert.match(dts, /#address-cells = <0x02>;/);
  assert.match(dts, /compatible = "riscv-virtio";/);
  assert.match(dts, /reg = <0x00 0x80000000 0x00 0x10000000>;/);
  assert.match(dts, /compatible = "sifive,clint0\\0riscv,clint0";/);
  assert.match(dts, /interrupts-extended = <0x01 0x03 0x01 0x07>;/);
  assert.match(dts, /interrupt-controller;/);
  assert.match(dts, /phandle = <0x01>;/);
  assert.match(dts, /bootargs = "console=ttyS0 earlycon=sbi";/);
  assert.match(dts, /blob = \[01 02 03\];/);
  assert.match(dts, /cpus \{\s*cpu@0 \{\s*interrupt-controller \{/);
});

test("bad values are refused with a clear error", () => {
  const fdt = new FdtBuilder();
  assert.throws(() => fdt.root.u32("x", 2 ** 32), /not a 32-bit integer/);
  assert.throws(() => fdt.root.u64("x", -1), /not a 64-bit unsigned integer/);
  assert.throws(() => fdt.root.string("x", "a\0b"), /NUL/);
  fdt.root.child("a");
  assert.throws(() => fdt.root.child("a"), /already exists/);
});
