// The riscv-virt board: QEMU's `virt` machine (hw/riscv/virt.c) — its memory map, interrupt wiring, device
// tree and boot protocol — with N RV64GC harts run round-robin in one thread, or harts 1… on threads of their
// own when the host offers them (smp/).

import { MachineError } from "../base/machine-error.ts";
import { GuestRam } from "../bus/guest-ram.ts";
import { CallbackIrqLine, type IrqLine } from "../bus/irq-line.ts";
import type { MmioDevice } from "../bus/mmio-device.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { Clint } from "../devices/clint.ts";
import { ClintRegisters } from "../devices/clint-registers.ts";
import { GoldfishRtc } from "../devices/goldfish-rtc.ts";
import { Plic } from "../devices/plic.ts";
import { SifiveTest } from "../devices/sifive-test.ts";
import { Uart16550 } from "../devices/uart16550.ts";
import { VirtioBlk } from "../devices/virtio/virtio-blk.ts";
import { VirtioConsole, type VirtioConsolePortConfig } from "../devices/virtio/virtio-console.ts";
import type { VirtioDevice } from "../devices/virtio/virtio-device.ts";
import { VirtioMmio } from "../devices/virtio/virtio-mmio.ts";
import { VirtioNet } from "../devices/virtio/virtio-net.ts";
import { VirtioRng } from "../devices/virtio/virtio-rng.ts";
import type { BlockBackend, CharSink, Clock, EntropySource, NetworkPort } from "../ports.ts";
import { Rv64Hart } from "../riscv/hart.ts";
import { type AwayHartSetup, type RemoteHart, RemoteHarts } from "../smp/remote-harts.ts";
import { type ComponentState, checkState, type Stateful } from "../state/stateful.ts";
import { type BootFile, type BootPlan, planBoot } from "./boot-plan.ts";
import { buildResetRom, MROM_BASE, MROM_SIZE } from "./boot-rom.ts";
import { EmptyVirtioSlot } from "./empty-virtio-slot.ts";
import { MaskRom } from "./mask-rom.ts";
import {
  buildVirtFdt,
  RTC_IRQ,
  UART0_IRQ,
  VIRT_CLINT,
  VIRT_DRAM_BASE,
  VIRT_PLIC,
  VIRT_RTC,
  VIRT_TEST,
  VIRT_UART0,
  VIRT_VIRTIO,
  VIRTIO_COUNT,
  VIRTIO_IRQ,
  type VirtFdtConfig,
} from "./riscv-virt-fdt.ts";

/** Fewest instructions hart 0 runs between looks at the remote harts' device accesses. */
const SERVE_PIECE_MIN = 1_000;

/** mip bit numbers (privileged spec §3.1.9). */
const MIP_MSIP = 3;
const MIP_MTIP = 7;
const MIP_SEIP = 9;
const MIP_MEIP = 11;

/** The board's limits: QEMU's virt allows 8 harts per socket; RAM must fit below 4 GiB + base here. */
export const VIRT_MAX_HARTS = 8;
export const VIRT_MIN_MEMORY = 16 * 1024 * 1024;
export const VIRT_MAX_MEMORY = 2048 * 1024 * 1024;

export interface RiscvVirtConfig {
  readonly harts: number;
  readonly memoryBytes: number;
  /** OpenSBI fw_dynamic (raw or ELF); null = `--bios none`: the kernel starts in M-mode. */
  readonly firmware: BootFile | null;
  /** Linux Image or ELF. */
  readonly kernel: BootFile | null;
  readonly initrd: BootFile | null;
  readonly bootargs: string;
  /** Device tree mmu-type; what the hart's MMU supports. */
  readonly mmuType?: string;
  /** Compile hot guest code to JavaScript (riscv/block-compiler.ts); default true. */
  readonly jit?: boolean;
  /** Executions of a block start before it is compiled (default JIT_THRESHOLD of riscv/block-cache.ts);
   * tests force compilation of nearly all code with 1 or 2. */
  readonly jitThreshold?: number;
}

/** What the board asks of its host. */
export interface RiscvVirtHost {
  readonly clock: Clock;
  /** The RTC's date: host wall time in ms since the Unix epoch (default Date.now); a test fixes it. */
  readonly wallClockMs?: () => number;
  /** UART0's output (the serial console). */
  readonly console: CharSink;
  readonly entropy: EntropySource;
  /** virtio-blk disks, in slot order. */
  readonly disks: readonly BlockBackend[];
  /** A virtio-console (port 0 → `sink`, plus named ports, e.g. a guest agent's); omitted = none. */
  readonly virtioConsole?: { readonly sink: CharSink; readonly ports?: readonly VirtioConsolePortConfig[] };
  /**
   * Network cards (virtio-net), eth0 first. They take the virtio slots after every other device, so the
   * states of machines without cards keep their slots (and keep loading).
   */
  readonly nics?: readonly { readonly mac: Uint8Array; readonly mtu?: number; readonly port: NetworkPort }[];
  /**
   * Guest RAM's memory, exactly `memoryBytes` (default: a new ArrayBuffer). A host restoring a saved state
   * passes the state's RAM here (e.g. mapped from its file, read by the host kernel on first touch) and
   * then `loadState` with that same array, which is not copied: resume time does not grow with RAM size.
   * The board keeps the buffer's contents until it is loaded or run: it powers on (clearing RAM, copying
   * the images in) at its first `runSlice` unless `loadState` came first.
   */
  readonly ram?: ArrayBuffer | SharedArrayBuffer;
  /**
   * Harts 1… run on other threads of the host, each from `awaySetup(i)` (smp/away-hart.ts); `ram` must be a
   * SharedArrayBuffer. The board then runs hart 0 and the devices, performs the other harts' device accesses
   * in `serveRemoteHarts()` (and in every slice), and leaves a guest reset to the host (`boot()` once it has
   * parked them). Default false: every hart runs in `runSlice`.
   */
  readonly threadedHarts?: boolean;
}

/** Why the machine stopped running on its own. */
export type PowerEvent =
  | { readonly kind: "poweroff"; readonly code: number }
  | { readonly kind: "reset" }
  | { readonly kind: "htif-exit"; readonly code: number };

/**
 * The whole machine's state: every component under its stable id, and guest RAM. The images are not in it:
 * they come from the configuration, which must match (same harts, RAM size and virtio devices).
 */
export interface RiscvVirtBoardState extends ComponentState {
  readonly version: 1;
  readonly harts: number;
  readonly memoryBytes: number;
  /** Instructions retired before the hart states' own counters began (earlier boots). */
  readonly instretBase: readonly number[];
  readonly components: {
    readonly [id: string]: ComponentState;
  };
  /** Guest RAM, memoryBytes long (a copy). */
  readonly ram: Uint8Array;
}

const BOARD_STATE_ID = "riscv-virt";

/** The engine name and version under which hosts store this board's state (the Node engine, the tab). */
export const BOARD_SNAPSHOT = { engine: "riscv", version: 1 } as const;

export interface BoardStats {
  /** Instructions retired per hart since power-on. */
  readonly instret: readonly number[];
}

export class RiscvVirtBoard implements Stateful<RiscvVirtBoardState> {
  readonly ram: GuestRam;
  readonly bus: PhysBus;
  readonly harts: Rv64Hart[] = [];
  /** The harts run elsewhere (host.threadedHarts), null when all run here. */
  readonly remote: RemoteHarts | null = null;
  /** The harts runSlice runs. */
  private readonly localHarts: Rv64Hart[];
  readonly clint: Clint;
  readonly plic: Plic;
  readonly uart: Uart16550;
  readonly test: SifiveTest;
  readonly rtc: GoldfishRtc;
  readonly virtio: VirtioMmio[] = [];
  /** The virtio-console device when the host asked for one (input: `virtioConsole.receive(port, bytes)`). */
  readonly virtioConsole: VirtioConsole | null = null;
  /** The network cards, in the order of host.nics (receive: `nics[i].receive(frame)`). */
  readonly nics: VirtioNet[] = [];
  private readonly rom = new MaskRom("mrom@1000", MROM_SIZE);
  private readonly resettables: Array<{ reset(): void }> = [];
  private plan!: BootPlan;
  private fdt!: Uint8Array;
  /** Set when the guest powered off, reset or exited through HTIF; the host acts on it after the slice. */
  private pendingPower: PowerEvent | null = null;
  /** False until the first boot: RAM fresh from its ArrayBuffer needs no clearing. */
  private ramTouched = false;
  /** True while a board given its RAM (host.ram) has neither booted nor loaded a state. */
  private bootPending = false;
  /** Called once per power event, after the slice in which it happened. */
  onPower: (event: PowerEvent) => void = () => {};
  private readonly instretBase: number[];
  /** The lines into the harts' mip (CLINT, PLIC): loadState makes them pass on their next level. */
  private readonly hartLines: CallbackIrqLine[] = [];
  private tohostOffset = -1;
  private fromhostOffset = -1;
  private htifOut = new Uint8Array(1);

  constructor(
    readonly config: RiscvVirtConfig,
    private readonly host: RiscvVirtHost,
  ) {
    const { harts, memoryBytes } = config;
    if (!Number.isInteger(harts) || harts < 1 || harts > VIRT_MAX_HARTS)
      throw new MachineError("bad-config", `the virt board has 1 to ${VIRT_MAX_HARTS} CPUs, not ${harts}`);
    if (
      !Number.isInteger(memoryBytes) ||
      memoryBytes < VIRT_MIN_MEMORY ||
      memoryBytes > VIRT_MAX_MEMORY ||
      memoryBytes % (1024 * 1024) !== 0
    )
      throw new MachineError(
        "bad-config",
        `memory must be a whole number of MiB from ${VIRT_MIN_MEMORY / 2 ** 20}M to ${VIRT_MAX_MEMORY / 2 ** 20}M`,
      );
    const { jitThreshold } = config;
    if (jitThreshold !== undefined && !(Number.isSafeInteger(jitThreshold) && jitThreshold >= 1))
      throw new MachineError(
        "bad-config",
        `the JIT threshold must be a whole number from 1, not ${jitThreshold}`,
      );
    this.ram = new GuestRam(VIRT_DRAM_BASE, memoryBytes, host.ram);
    // A buffer from the host holds what the host put there, not zeros.
    this.ramTouched = host.ram !== undefined;
    this.bus = new PhysBus(this.ram);
    const threaded = host.threadedHarts === true && harts > 1;
    if (threaded && !(host.ram instanceof SharedArrayBuffer))
      throw new MachineError("bad-config", "harts on threads need guest RAM in a SharedArrayBuffer");
    for (let h = 0; h < harts; h++)
      this.harts.push(new Rv64Hart(h, this.bus, this, { jit: config.jit !== false, sharedRam: threaded }));
    this.localHarts = threaded ? this.harts.slice(0, 1) : this.harts;
    // "An SC must fail if a write from some other device to the bytes accessed by the LR can be observed to
    // occur between the LR and SC" (unprivileged ISA, Zalrsc): every DMA drops every reservation (an SC may
    // fail for no reason, so no address compare is needed). A device completing inside a hart's MMIO store
    // (a virtio notify) lands between that hart's LR and SC. A hart on another thread (smp/) is not reached
    // from here: its SC is a compare-and-swap, which fails when DMA changed the value.
    this.ram.addWriteListener({
      ramWritten: () => {
        for (const h of this.harts) h.clearReservation();
      },
      dirtyPagesReset: () => {
        for (const h of this.localHarts) h.dropAllWriteMappings();
        this.remote?.dropWriteMappings();
      },
    });
    const blocks = this.harts[0]!.blockCache;
    if (blocks !== null && jitThreshold !== undefined) blocks.threshold = jitThreshold;
    this.instretBase = new Array(harts).fill(0);

    const remoteOf = new Map<Rv64Hart, RemoteHart>();
    const line = (hart: Rv64Hart, bit: number): IrqLine => {
      const l = new CallbackIrqLine((level) => {
        const r = remoteOf.get(hart);
        if (r) r.setLine(bit, level);
        else hart.setPending(bit, level);
      });
      this.hartLines.push(l);
      return l;
    };
    // With harts on other threads the CLINT's registers are shared with their views of it (smp/away-hart.ts).
    this.clint = new Clint(
      host.clock,
      this.harts.map((h) => line(h, MIP_MSIP)),
      this.harts.map((h) => line(h, MIP_MTIP)),
      undefined,
      threaded
        ? {
            regs: new ClintRegisters(new SharedArrayBuffer(ClintRegisters.bytes(harts)), harts),
            onHartWritten: (h) => this.remote?.wakeHart(h),
          }
        : {},
    );
    if (threaded) {
      this.clint.reset();
      this.remote = new RemoteHarts(this.clint, this.bus);
      for (const h of this.harts.slice(1)) remoteOf.set(h, this.remote.add(h));
    }
    // PLIC context 2h drives hart h's MEIP, context 2h+1 its SEIP (the order of interrupts-extended).
    this.plic = new Plic(this.harts.flatMap((h) => [line(h, MIP_MEIP), line(h, MIP_SEIP)]));
    this.uart = new Uart16550(host.console, this.plic.sourceLine(UART0_IRQ));
    this.test = new SifiveTest((kind, code) => this.power(kind === "reset" ? { kind } : { kind, code }));
    this.rtc = new GoldfishRtc(host.clock, this.plic.sourceLine(RTC_IRQ), host.wallClockMs);

    this.bus.map(MROM_BASE, MROM_SIZE, this.rom);
    this.bus.map(VIRT_TEST.base, VIRT_TEST.size, this.test);
    this.bus.map(VIRT_RTC.base, VIRT_RTC.size, this.rtc);
    this.bus.map(VIRT_CLINT.base, VIRT_CLINT.size, this.clint);
    this.bus.map(VIRT_PLIC.base, VIRT_PLIC.size, this.plic);
    this.bus.map(VIRT_UART0.base, VIRT_UART0.size, this.uart);

    const devices: VirtioDevice[] = host.disks.map((d) => new VirtioBlk(d));
    devices.push(new VirtioRng(host.entropy));
    if (host.virtioConsole) {
      this.virtioConsole = new VirtioConsole(host.virtioConsole.sink, { ports: host.virtioConsole.ports });
      devices.push(this.virtioConsole);
    }
    for (const nic of host.nics ?? [])
      this.nics.push(
        new VirtioNet(nic.port, { mac: nic.mac, ...(nic.mtu !== undefined ? { mtu: nic.mtu } : {}) }),
      );
    devices.push(...this.nics);
    if (devices.length > VIRTIO_COUNT)
      throw new MachineError(
        "bad-config",
        `the virt board has ${VIRTIO_COUNT} virtio slots; too many disks and network cards`,
      );
    for (let i = 0; i < VIRTIO_COUNT; i++) {
      const base = VIRT_VIRTIO.base + i * VIRT_VIRTIO.size;
      const id = `virtio_mmio@${base.toString(16)}`;
      const device = devices[i];
      let window: MmioDevice;
      if (device) {
        const transport = new VirtioMmio(id, device, this.ram, this.plic.sourceLine(VIRTIO_IRQ + i));
        this.virtio.push(transport);
        this.resettables.push(transport);
        window = transport;
      } else window = new EmptyVirtioSlot(id);
      this.bus.map(base, VIRT_VIRTIO.size, window);
    }
    this.resettables.push(this.clint, this.plic, this.uart, this.rtc);

    this.prepareBoot();
    // Booting writes the images into RAM: into a buffer the host gave, only once we know it is not about
    // to be loaded with a state (whose RAM that buffer may be).
    if (host.ram) this.bootPending = true;
    else this.boot();
  }

  /** The `time` source of every hart (hart.ts reads `mtime()` for the time CSR). */
  mtime(): number {
    return this.clint.mtime();
  }

  /** Lays out the images and builds the device tree once; `boot()` copies them in at every reset. */
  private prepareBoot(): void {
    const fdtConfig: VirtFdtConfig = {
      harts: this.config.harts,
      ramSize: this.config.memoryBytes,
      bootargs: this.config.bootargs,
      // Placeholders of the final size: the FDT's size decides where it goes, and so where the initrd may.
      initrdStart: this.config.initrd ? 0x8000_0000 : 0,
      initrdEnd: this.config.initrd ? 0x8000_1000 : 0,
      mmuType: this.config.mmuType ?? "riscv,sv48",
      isa: "rv64imafdc",
    };
    const sizeProbe = buildVirtFdt(fdtConfig).length;
    this.plan = planBoot({
      ramBase: VIRT_DRAM_BASE,
      ramSize: this.config.memoryBytes,
      firmware: this.config.firmware,
      kernel: this.config.kernel,
      initrd: this.config.initrd,
      fdtSize: sizeProbe,
    });
    this.fdt = buildVirtFdt({
      ...fdtConfig,
      initrdStart: this.plan.initrdStart,
      initrdEnd: this.plan.initrdEnd,
    });
    this.rom.program(
      buildResetRom({
        startAddress: this.plan.startAddress,
        fdtAddress: this.plan.fdtAddress,
        nextAddress: this.plan.kernelEntry,
      }),
    );
    this.tohostOffset = this.plan.tohost === null ? -1 : this.ram.offsetOf(this.plan.tohost, 0, 8);
    this.fromhostOffset = this.plan.fromhost === null ? -1 : this.ram.offsetOf(this.plan.fromhost, 0, 8);
  }

  /** Boots now if the board is still waiting for its first slice or state (a host about to start remote harts). */
  powerOnIfPending(): void {
    if (this.bootPending) this.boot();
  }

  /** What a thread needs to run remote hart `i` (an index into `remote.harts`). */
  awaySetup(i: number): AwayHartSetup {
    const remote = this.remote;
    if (remote === null || !remote.harts[i])
      throw new MachineError("bad-config", `there is no remote hart ${i}`);
    return remote.setupOf(remote.harts[i]!, this.config.jit !== false, this.config.jitThreshold);
  }

  /** Performs the device accesses the remote harts posted (a host calls it when the doorbell rings). */
  serveRemoteHarts(): void {
    this.remote?.serve();
  }

  /** Power-on: every device and hart reset, RAM cleared, images copied in, every hart at the reset ROM. */
  boot(): void {
    this.bootPending = false;
    this.pendingPower = null;
    for (const d of this.resettables) d.reset();
    // A new ArrayBuffer is already zero: clearing it would cost seconds and make all of RAM resident.
    if (this.ramTouched) this.ram.u8.fill(0);
    this.ramTouched = true;
    for (const c of this.plan.chunks) this.ram.u8.set(c.data, c.address - VIRT_DRAM_BASE);
    this.ram.u8.set(this.fdt, this.plan.fdtAddress - VIRT_DRAM_BASE);
    for (let h = 0; h < this.harts.length; h++) {
      const hart = this.harts[h]!;
      this.instretBase[h] = hart.instretCount() + this.instretBase[h]!;
      hart.reset();
      hart.setPc(MROM_BASE, 0);
    }
  }

  private power(event: PowerEvent): void {
    if (!this.pendingPower) this.pendingPower = event;
  }

  /** Input for the serial console (keyboard, pipe). */
  receiveConsole(bytes: Uint8Array): void {
    this.uart.receive(bytes);
  }

  /**
   * Runs every hart for up to `budgetPerHart` instructions, round-robin, then updates the timers and polls
   * HTIF. Returns the instructions executed. A power event stops the slice early and is reported through
   * `onPower` before this returns; a reset has already re-booted the machine by then.
   */
  runSlice(budgetPerHart: number): number {
    if (this.bootPending) this.boot();
    let executed = 0;
    const harts = this.localHarts;
    const remote = this.remote;
    for (let h = 0; h < harts.length; h++) {
      const hart = harts[h]!;
      executed += remote === null ? hart.run(budgetPerHart) : this.runServing(hart, budgetPerHart, remote);
      // LR/SC: another hart runs next and may store to the reserved address; we do not track stores
      // across harts, so the reservation is dropped (the SC fails and the guest retries, as the spec allows).
      if (harts.length > 1) hart.clearReservation();
      if (this.pendingPower) break;
      this.clint.update();
    }
    if (remote !== null) remote.serve();
    this.clint.update();
    this.rtc.update();
    this.uart.flush();
    if (this.tohostOffset >= 0) this.pollHtif();
    const event = this.pendingPower;
    if (event) {
      // Remote harts must be parked before RAM is loaded again: their host boots the board then.
      if (event.kind === "reset" && remote === null) this.boot();
      this.pendingPower = null;
      this.onPower(event);
    }
    return executed;
  }

  /**
   * Runs `hart` for up to `budget` instructions in pieces, performing the device accesses harts on other
   * threads posted between them: such an access waits for a piece (an eighth of a slice), not a whole slice.
   */
  private runServing(hart: Rv64Hart, budget: number, remote: RemoteHarts): number {
    const piece = Math.max(SERVE_PIECE_MIN, budget >>> 3);
    let done = 0;
    while (done < budget) {
      const ask = Math.min(piece, budget - done);
      const ran = hart.run(ask);
      done += ran;
      remote.serve();
      // Fewer than asked: WFI, a power event, or the hart left its run early; a whole run would stop too.
      if (ran < ask) break;
    }
    return done;
  }

  /**
   * HTIF as spike and riscv-tests use it: the program stores a command in `tohost`; device 0 command 0 with
   * bit 0 set is "exit with code payload >> 1", device 1 command 1 writes the byte in the payload.
   */
  private pollHtif(): void {
    const v = this.ram.view;
    const lo = v.getUint32(this.tohostOffset, true);
    const hi = v.getUint32(this.tohostOffset + 4, true);
    if (lo === 0 && hi === 0) return;
    const device = hi >>> 24;
    const command = (hi >>> 16) & 0xff;
    v.setUint32(this.tohostOffset, 0, true);
    v.setUint32(this.tohostOffset + 4, 0, true);
    this.ram.noteWrite(this.tohostOffset, 8);
    if (device === 0 && command === 0 && (lo & 1) === 1) {
      const code = ((hi & 0xffff) * 0x8000_0000 + (lo >>> 1)) % 0x1_0000_0000;
      this.power({ kind: "htif-exit", code });
      return;
    }
    if (device === 1 && command === 1) {
      this.htifOut[0] = lo & 0xff;
      this.host.console.write(this.htifOut);
    }
    // Acknowledge as spike does: fromhost = device, command and response (0x100 | byte for the console).
    if (this.fromhostOffset >= 0) {
      v.setUint32(this.fromhostOffset, device === 1 ? 0x100 | (lo & 0xff) : 1, true);
      v.setUint32(this.fromhostOffset + 4, hi & 0xffff0000, true);
      this.ram.noteWrite(this.fromhostOffset, 8);
    }
  }

  /**
   * True when every hart runSlice runs sleeps in WFI with nothing pending: the host may sleep until
   * `nextDeadlineMs()` (remote harts sleep on their own threads; the doorbell wakes the host for them).
   */
  get allWaiting(): boolean {
    for (const h of this.localHarts) if (!h.waiting) return false;
    return true;
  }

  /** Host time (Clock ms) of the next timer event; Infinity when none is armed. */
  nextDeadlineMs(): number {
    // Harts on other threads wait for their own timers.
    return Math.min(this.clint.nextDeadlineMs(0, this.localHarts.length), this.rtc.nextDeadlineMs());
  }

  /** Every stateful component by its stable id (hart0…, clint@2000000, virtio_mmio@10001000, …). */
  private components(): Array<[string, Stateful<ComponentState>]> {
    const list: Array<[string, Stateful<ComponentState>]> = this.harts.map((h, i) => [`hart${i}`, h]);
    for (const d of [this.clint, this.plic, this.uart, this.rtc, this.test, ...this.virtio])
      list.push([d.id, d]);
    return list;
  }

  /**
   * The machine's state, between slices (the host calls it while paused). RAM is copied, unless `shareRam`:
   * then the state holds the live RAM, which stays true only while the machine stays paused (a suspend
   * writes it out before anything runs again, and spares the copy of all of RAM).
   */
  saveState(options: { readonly shareRam?: boolean } = {}): RiscvVirtBoardState {
    if (this.bootPending) this.boot();
    this.uart.flush();
    const components: Record<string, ComponentState> = {};
    for (const [id, c] of this.components()) components[id] = c.saveState();
    return {
      version: 1,
      harts: this.harts.length,
      memoryBytes: this.ram.size,
      instretBase: this.instretBase.slice(),
      components,
      ram: options.shareRam === true ? this.ram.u8 : this.ram.copy(),
    };
  }

  /**
   * Loads a state saved by a board of the same configuration. All or nothing: when any component refuses
   * its part, those already loaded are put back as they were and StateError names the culprit.
   */
  loadState(state: RiscvVirtBoardState): void {
    const id = BOARD_STATE_ID;
    checkState(typeof state === "object" && state !== null, id, "not an object");
    checkState(state.version === 1, id, `version ${state.version} is not 1`);
    checkState(
      state.harts === this.harts.length,
      id,
      `it has ${state.harts} harts, this machine ${this.harts.length}`,
    );
    checkState(
      state.memoryBytes === this.ram.size &&
        state.ram instanceof Uint8Array &&
        state.ram.length === this.ram.size,
      id,
      `its RAM is not ${this.ram.size} bytes like this machine's`,
    );
    checkState(
      Array.isArray(state.instretBase) &&
        state.instretBase.length === this.harts.length &&
        state.instretBase.every((n) => Number.isSafeInteger(n) && n >= 0),
      id,
      "instretBase is not one count per hart",
    );
    const parts = this.components();
    checkState(typeof state.components === "object" && state.components !== null, id, "components missing");
    const names = Object.keys(state.components).sort();
    const ours = parts.map(([n]) => n).sort();
    checkState(
      names.length === ours.length && names.every((n, i) => n === ours[i]),
      id,
      `its devices (${names.join(", ")}) are not this machine's (${ours.join(", ")})`,
    );
    const before = parts.map(([, c]) => c.saveState());
    let loaded = 0;
    // The harts load their mip from the state, the CLINT and the PLIC then drive every line again from
    // theirs: each line must pass that level on even when it was already at it before the load (a timer
    // that came due after the save would otherwise never interrupt its hart again).
    for (const l of this.hartLines) l.forget();
    try {
      for (const [name, c] of parts) {
        c.loadState(state.components[name]!);
        loaded++;
      }
    } catch (e) {
      for (const l of this.hartLines) l.forget();
      for (let i = 0; i < loaded; i++) parts[i]![1].loadState(before[i]!);
      throw e;
    }
    // A state whose RAM is this machine's own buffer (the host built the board on it) is there already.
    if (state.ram.buffer !== this.ram.buffer || state.ram.byteOffset !== 0) this.ram.u8.set(state.ram);
    this.ramTouched = true;
    this.bootPending = false;
    for (let i = 0; i < this.instretBase.length; i++) this.instretBase[i] = state.instretBase[i]!;
    this.pendingPower = null;
  }

  stats(): BoardStats {
    const remote = this.remote;
    return {
      instret: this.harts.map(
        (h, i) =>
          (i > 0 && remote !== null ? remote.harts[i - 1]!.instretCount() : h.instretCount()) +
          this.instretBase[i]!,
      ),
    };
  }
}
