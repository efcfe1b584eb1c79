// The device tree of the riscv-virt board, node for node as QEMU's hw/riscv/virt.c (create_fdt*) writes it,
// following the Devicetree bindings Linux and OpenSBI read (riscv/cpus.yaml, sifive,plic-1.0.0, sifive,clint0).

import { FdtBuilder } from "../fdt/fdt-builder.ts";

/** The virt memory map (virt.c `virt_memmap`). */
export const VIRT_TEST = { base: 0x100000, size: 0x1000 };
export const VIRT_RTC = { base: 0x101000, size: 0x1000 };
export const VIRT_CLINT = { base: 0x2000000, size: 0x10000 };
export const VIRT_PLIC = { base: 0xc000000, size: 0x600000 };
export const VIRT_UART0 = { base: 0x10000000, size: 0x100 };
export const VIRT_VIRTIO = { base: 0x10001000, size: 0x1000 };
export const VIRT_DRAM_BASE = 0x80000000;

export const UART0_IRQ = 10;
export const RTC_IRQ = 11;
/** virtio-mmio slot i raises PLIC source VIRTIO_IRQ + i. */
export const VIRTIO_IRQ = 1;
export const VIRTIO_COUNT = 8;
/** PLIC sources 1..VIRTIO_NDEV (riscv,ndev), as the brief and QEMU's virt.h VIRT_IRQCHIP_NUM_SOURCES - 1 say. */
export const VIRT_PLIC_NDEV = 95;

/** riscv,cpu-intc local interrupt numbers used by interrupts-extended (mip bit positions). */
const IRQ_M_SOFT = 3;
const IRQ_M_TIMER = 7;
const IRQ_S_EXT = 9;
const IRQ_M_EXT = 11;

/** virt.c: the mtime counter ticks at 10 MHz (RISCV_ACLINT_DEFAULT_TIMEBASE_FREQ). */
export const VIRT_TIMEBASE_FREQUENCY = 10_000_000;
/** ns16550a input clock QEMU advertises (3.6864 MHz). */
const UART_CLOCK_FREQUENCY = 3686400;

export interface VirtFdtConfig {
  readonly harts: number;
  readonly ramSize: number;
  readonly bootargs: string;
  /** 0/0 when there is no initrd. */
  readonly initrdStart: number;
  readonly initrdEnd: number;
  /** "riscv,sv39" or "riscv,sv48": what the hart's MMU supports. */
  readonly mmuType: string;
  /** riscv,isa string, e.g. "rv64imafdc". */
  readonly isa: string;
}

const hex = (n: number): string => n.toString(16);

/** Builds the board's device tree blob. */
export function buildVirtFdt(config: VirtFdtConfig): Uint8Array {
  const fdt = new FdtBuilder();
  const root = fdt.root;
  root
    .u32("#address-cells", 2)
    .u32("#size-cells", 2)
    .string("compatible", "riscv-virtio")
    .string("model", "riscv-virtio,qemu");

  const chosen = root.child("chosen");
  chosen.string("stdout-path", `/soc/serial@${hex(VIRT_UART0.base)}`);
  if (config.bootargs) chosen.string("bootargs", config.bootargs);
  if (config.initrdEnd > config.initrdStart) {
    chosen.u64("linux,initrd-start", config.initrdStart).u64("linux,initrd-end", config.initrdEnd);
  }

  root
    .child(`memory@${hex(VIRT_DRAM_BASE)}`)
    .string("device_type", "memory")
    .u64("reg", VIRT_DRAM_BASE, config.ramSize);

  const cpus = root.child("cpus");
  cpus.u32("#address-cells", 1).u32("#size-cells", 0).u32("timebase-frequency", VIRT_TIMEBASE_FREQUENCY);
  const cpuPhandles: number[] = [];
  const intcPhandles: number[] = [];
  for (let h = 0; h < config.harts; h++) {
    const cpu = cpus.child(`cpu@${h}`);
    cpuPhandles.push(fdt.phandleOf(cpu));
    cpu
      .string("device_type", "cpu")
      .u32("reg", h)
      .string("status", "okay")
      .string("compatible", "riscv")
      .string("riscv,isa", config.isa)
      .string("mmu-type", config.mmuType);
    const intc = cpu.child("interrupt-controller");
    intc.u32("#interrupt-cells", 1).empty("interrupt-controller").string("compatible", "riscv,cpu-intc");
    intcPhandles.push(fdt.phandleOf(intc));
  }
  const cluster = cpus.child("cpu-map").child("cluster0");
  for (let h = 0; h < config.harts; h++) cluster.child(`core${h}`).u32("cpu", cpuPhandles[h]!);

  const soc = root.child("soc");
  soc.u32("#address-cells", 2).u32("#size-cells", 2).string("compatible", "simple-bus").empty("ranges");

  soc
    .child(`clint@${hex(VIRT_CLINT.base)}`)
    .strings("compatible", ["sifive,clint0", "riscv,clint0"])
    .u64("reg", VIRT_CLINT.base, VIRT_CLINT.size)
    .u32("interrupts-extended", ...intcPhandles.flatMap((p) => [p, IRQ_M_SOFT, p, IRQ_M_TIMER]));

  const plic = soc.child(`plic@${hex(VIRT_PLIC.base)}`);
  const plicPhandle = fdt.phandleOf(plic);
  plic
    .u32("#interrupt-cells", 1)
    .u32("#address-cells", 0)
    .strings("compatible", ["sifive,plic-1.0.0", "riscv,plic0"])
    .empty("interrupt-controller")
    // Context 2h is hart h's M-mode external interrupt, 2h+1 its S-mode one.
    .u32("interrupts-extended", ...intcPhandles.flatMap((p) => [p, IRQ_M_EXT, p, IRQ_S_EXT]))
    .u64("reg", VIRT_PLIC.base, VIRT_PLIC.size)
    .u32("riscv,ndev", VIRT_PLIC_NDEV);

  for (let i = VIRTIO_COUNT - 1; i >= 0; i--) {
    const base = VIRT_VIRTIO.base + i * VIRT_VIRTIO.size;
    soc
      .child(`virtio_mmio@${hex(base)}`)
      .string("compatible", "virtio,mmio")
      .u64("reg", base, VIRT_VIRTIO.size)
      .u32("interrupt-parent", plicPhandle)
      .u32("interrupts", VIRTIO_IRQ + i);
  }

  const test = soc.child(`test@${hex(VIRT_TEST.base)}`);
  const testPhandle = fdt.phandleOf(test);
  test
    .strings("compatible", ["sifive,test1", "sifive,test0", "syscon"])
    .u64("reg", VIRT_TEST.base, VIRT_TEST.size);

  soc
    .child(`serial@${hex(VIRT_UART0.base)}`)
    .string("compatible", "ns16550a")
    .u64("reg", VIRT_UART0.base, VIRT_UART0.size)
    .u32("clock-frequency", UART_CLOCK_FREQUENCY)
    .u32("interrupt-parent", plicPhandle)
    .u32("interrupts", UART0_IRQ);

  soc
    .child(`rtc@${hex(VIRT_RTC.base)}`)
    .string("compatible", "google,goldfish-rtc")
    .u64("reg", VIRT_RTC.base, VIRT_RTC.size)
    .u32("interrupt-parent", plicPhandle)
    .u32("interrupts", RTC_IRQ);

  // sifive_test.h: FINISHER_PASS = 0x5555 powers off, FINISHER_RESET = 0x7777 resets.
  root
    .child("poweroff")
    .string("compatible", "syscon-poweroff")
    .u32("regmap", testPhandle)
    .u32("offset", 0)
    .u32("value", 0x5555);
  root
    .child("reboot")
    .string("compatible", "syscon-reboot")
    .u32("regmap", testPhandle)
    .u32("offset", 0)
    .u32("value", 0x7777);

  return fdt.build();
}
