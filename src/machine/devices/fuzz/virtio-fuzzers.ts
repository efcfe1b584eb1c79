// Fuzzers for the virtio stack: a Virtqueue driven directly (registers, descriptor tables, available ring,
// pops, copies and pushes) and each virtio device behind its virtio-mmio transport, driven by a hostile
// driver (malicious rings, descriptor loops, absurd indices, illegal status sequences, out-of-order host
// completions). Both check that RAM outside what the fuzzer names is never written.
//
// Guest RAM is split in two: an arena at its start, where every ring and every buffer the fuzzer names lies,
// and a canary after it. Every value anyone writes into the arena (the fuzzer, the devices, the disk, the
// host's input bytes) is an arena address, a small number or a value far above RAM, so not even arena bytes
// reinterpreted as descriptors can name the canary: a changed canary byte is a device writing where no
// descriptor pointed.

import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import type { AccessWidth } from "../../bus/mmio-device.ts";
import type { BlockBackend, Completion } from "../../ports.ts";
import { MemoryBlockBackend } from "../virtio/memory-block-backend.ts";
import {
  VIRTIO_BLK_T_DISCARD,
  VIRTIO_BLK_T_WRITE_ZEROES,
  VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP,
  VirtioBlk,
} from "../virtio/virtio-blk.ts";
import { VirtioConsole } from "../virtio/virtio-console.ts";
import type { VirtioDevice } from "../virtio/virtio-device.ts";
import { VirtioMmio } from "../virtio/virtio-mmio.ts";
import { VirtioRng } from "../virtio/virtio-rng.ts";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_STATUS,
} from "../virtio/virtio-spec.ts";
import { type TestQueue, VirtioTestDriver } from "../virtio/virtio-test-driver.ts";
import {
  DescriptorChain,
  VIRTQ_DESC_F_INDIRECT,
  VIRTQ_DESC_F_NEXT,
  VIRTQ_DESC_F_WRITE,
  Virtqueue,
} from "../virtio/virtqueue.ts";
import {
  checkStateRoundTrip,
  type DeviceFuzzer,
  type DeviceFuzzTarget,
  FuzzViolation,
  RamCanary,
} from "./device-fuzz-target.ts";
import type { SeededRandom } from "./seeded-random.ts";

const BASE = 0x8000_0000;
/** Lengths that reach past the end of RAM from anywhere in it, and are no arena address themselves. */
const HUGE_LENGTHS = [0xffffffff, 0xfffffff0, 0x7ffffff0, 0x10000000];

/** The byte the host's inputs carry (disk contents start as zeros, entropy and serial input are this). */
const HOST_BYTE = 0x5a;

/**
 * A buffer a hostile driver might describe: inside the arena [BASE + from, BASE + to) with a length that
 * stays inside it, or not in RAM at all: below it, straddling its end, beyond it, above 4 GiB, or huge.
 */
function hostileBuffer(
  r: SeededRandom,
  ramSize: number,
  from: number,
  to: number,
): [lo: number, hi: number, len: number] {
  if (r.chance(0.2)) {
    // Flush against the end of the arena: a device writing one byte too many hits the canary.
    const len = r.below(256);
    return [BASE + to - len, 0, len];
  }
  if (r.chance(0.5)) {
    const at = from + r.below(to - from - 16);
    const room = to - at;
    return [BASE + at, 0, r.pick([r.below(Math.min(64, room) + 1), r.below(room + 1), r.pick(HUGE_LENGTHS)])];
  }
  switch (r.below(6)) {
    case 0:
      return [BASE + ramSize - 16, 0, 17 + r.below(64)];
    case 1:
      return [r.below(BASE), 0, r.below(4096)];
    case 2:
      return [BASE + ramSize + r.below(1 << 20), 0, r.below(4096)];
    case 3:
      return [BASE + from + r.below(64), 1 + r.below(4), r.below(64)];
    case 4:
      return [0xfffffff0, 0xffffffff, 0x20];
    default:
      return [BASE + from, 0, r.pick(HUGE_LENGTHS)];
  }
}

function writeDescriptor(
  ram: GuestRam,
  at: number,
  lo: number,
  hi: number,
  len: number,
  flags: number,
  next: number,
): void {
  const v = ram.view;
  v.setUint32(at, lo, true);
  v.setUint32(at + 4, hi, true);
  v.setUint32(at + 8, len, true);
  v.setUint16(at + 12, flags, true);
  v.setUint16(at + 14, next, true);
}

/** Zeroes the three ring areas of a queue of `size` entries (guest-physical addresses inside `ram`). */
function zeroRings(ram: GuestRam, desc: number, avail: number, used: number, size: number): void {
  ram.u8.fill(0, desc - BASE, desc - BASE + 16 * size);
  ram.u8.fill(0, avail - BASE, avail - BASE + 6 + 2 * size);
  ram.u8.fill(0, used - BASE, used - BASE + 6 + 8 * size);
}

// ---- Virtqueue on its own ----

const VQ_RAM = 64 * 1024;
const VQ_ARENA = 24 * 1024;
const VQ_MAX = 64;

class VirtqueueTarget implements DeviceFuzzTarget {
  readonly coverage: Record<string, number> = { enabled: 0, chains: 0, errors: 0, copies: 0 };
  private readonly ram = new GuestRam(BASE, VQ_RAM);
  private readonly canary: RamCanary;
  private readonly queue: Virtqueue;
  private readonly chain = new DescriptorChain(this.ram, VQ_MAX);
  private readonly scratch = new Uint8Array(256).fill(HOST_BYTE);
  private popped = false;
  private errorsSinceEnable = 0;

  constructor(private readonly r: SeededRandom) {
    this.canary = new RamCanary(this.ram, 0, VQ_ARENA);
    this.queue = new Virtqueue(this.ram, VQ_MAX, () => {
      this.coverage.errors!++;
      this.errorsSinceEnable++;
    });
  }

  /** A ring address: inside the arena with room for the largest ring, or unusable. */
  private ringAddress(): [lo: number, hi: number] {
    const r = this.r;
    if (r.chance(0.9)) return [BASE + r.below(VQ_ARENA - 2048), 0];
    return r.pick<[number, number]>([
      [BASE + VQ_RAM, 0], // the end of RAM, aligned however the fuzzer masks it
      [BASE, 1],
      [r.below(BASE), 0],
      [0xfffffff0, 0xffffffff],
    ]);
  }

  /** A well-formed chain of 1 to 3 arena buffers (readable first) made available: the path to the end. */
  private offerGoodChain(): void {
    const r = this.r;
    const q = this.queue;
    if (!q.enabled) return;
    const n = 1 + r.below(3);
    const ids = Array.from({ length: n }, (_, k) => (k + r.below(q.size)) % q.size);
    if (new Set(ids).size !== n) return;
    const writableFrom = r.below(n + 1);
    ids.forEach((id, k) => {
      const at = 2048 + r.below(VQ_ARENA - 4096);
      const flags = (k >= writableFrom ? VIRTQ_DESC_F_WRITE : 0) | (k < n - 1 ? VIRTQ_DESC_F_NEXT : 0);
      writeDescriptor(
        this.ram,
        q.descLo - BASE + 16 * id,
        BASE + at,
        0,
        r.below(1024),
        flags,
        ids[k + 1] ?? 0,
      );
    });
    const avail = q.driverLo - BASE;
    const idx = this.ram.view.getUint16(avail + 2, true);
    this.ram.view.setUint16(avail + 4 + 2 * (idx % q.size), ids[0]!, true);
    this.ram.view.setUint16(avail + 2, (idx + 1) & 0xffff, true);
  }

  step(): void {
    const r = this.r;
    const q = this.queue;
    const v = this.ram.view;
    // A queue that broke is set up again soon, so that the inputs keep reaching the chain walk.
    const op = q.enabled && !q.ready && r.chance(0.3) ? 0 : r.below(10);
    switch (op) {
      case 0: {
        // Registers, then QueueReady; only a layout inside RAM may be accepted.
        if (r.chance(0.2)) q.reset();
        q.disable();
        q.size = r.chance(0.85) ? r.pick([1, 2, 4, 8, 16, 64]) : r.value32();
        [q.descLo, q.descHi] = this.ringAddress();
        [q.driverLo, q.driverHi] = this.ringAddress();
        [q.deviceLo, q.deviceHi] = this.ringAddress();
        if (r.chance(0.9)) {
          q.descLo = (q.descLo & ~15) >>> 0;
          q.driverLo = (q.driverLo & ~1) >>> 0;
          q.deviceLo = (q.deviceLo & ~3) >>> 0;
        }
        this.errorsSinceEnable = 0;
        if (q.enable()) {
          this.coverage.enabled!++;
          const inArena = (lo: number, hi: number, len: number) =>
            hi === 0 && lo >= BASE && lo + len <= BASE + VQ_ARENA;
          if (
            !inArena(q.descLo, q.descHi, 16 * q.size) ||
            !inArena(q.driverLo, q.driverHi, 6 + 2 * q.size) ||
            !inArena(q.deviceLo, q.deviceHi, 6 + 8 * q.size)
          )
            throw new FuzzViolation("enable() accepted rings the fuzzer placed outside RAM");
          // Mostly fresh rings, as a driver zeroes them; otherwise whatever the arena held.
          if (r.chance(0.8)) zeroRings(this.ram, q.descLo, q.driverLo, q.deviceLo, q.size);
        }
        return;
      }
      case 1:
      case 2: {
        // A descriptor anywhere in the current table (or in an indirect table in the arena).
        if (!q.enabled) return;
        const table = r.chance(0.8) ? q.descLo - BASE : 16 * r.below(VQ_ARENA / 16);
        const i = r.below(Math.min(q.size, VQ_MAX) + 1);
        const at = table + 16 * i;
        if (at + 16 > VQ_ARENA) return;
        const [lo, hi, len] = r.chance(0.1)
          ? [BASE + table, 0, r.pick([16, 32, 16 * VQ_MAX, 16 * (VQ_MAX + 1), 8])]
          : hostileBuffer(r, VQ_RAM, 0, VQ_ARENA);
        const flags = r.chance(0.1) ? VIRTQ_DESC_F_INDIRECT | r.below(8) : r.below(4);
        writeDescriptor(this.ram, at, lo, hi, len, flags, r.pick([r.below(q.size + 2), i, 0xffff]));
        return;
      }
      case 3: {
        // The available ring: idx (sometimes far ahead), flags, heads.
        if (!q.enabled) return;
        const avail = q.driverLo - BASE;
        if (r.chance(0.3))
          v.setUint16(
            avail + 2,
            r.pick([q.lastAvailIdx + 1, q.lastAvailIdx + q.size + 1, r.below(65536)]) & 0xffff,
            true,
          );
        else if (r.chance(0.2)) v.setUint16(avail, r.below(4), true);
        else v.setUint16(avail + 4 + 2 * r.below(q.size), r.pick([r.below(q.size), r.below(65536)]), true);
        return;
      }
      case 4:
      case 5: {
        if (r.chance(0.3)) this.offerGoodChain();
        this.popped = r.chance(0.1) ? q.readChain(r.below(q.size + 4), this.chain) : q.pop(this.chain);
        if (!this.popped) return;
        this.coverage.chains!++;
        const c = this.chain;
        let total = 0;
        for (let k = 0; k < c.writeCount; k++) {
          if (c.writeOff[k]! + c.writeLen[k]! > VQ_ARENA)
            throw new FuzzViolation(
              `a writable segment [0x${c.writeOff[k]!.toString(16)}, +${c.writeLen[k]}) leaves the arena`,
            );
          total += c.writeLen[k]!;
        }
        if (total !== c.writeTotal) throw new FuzzViolation("writeTotal is not the sum of the segments");
        return;
      }
      case 6: {
        // The device side: copy into and out of the last chain at any position, then return it.
        if (!this.popped) return;
        const c = this.chain;
        const pos = r.pick([0, r.below(c.writeTotal + 2), 0xffffffff]);
        const n = r.below(this.scratch.length + 8);
        const done = c.copyTo(pos, this.scratch, r.below(8), n);
        if (done > n) throw new FuzzViolation("copyTo copied more than asked");
        c.copyFrom(r.below(c.readTotal + 2), this.scratch, 0, r.below(this.scratch.length));
        this.scratch.fill(HOST_BYTE);
        this.coverage.copies!++;
        return;
      }
      case 7:
        if (this.popped) q.push(this.chain.head, r.pick([0, this.chain.writeTotal, r.below(65536)]));
        this.popped = false;
        return;
      case 8:
        if (r.chance(0.6)) this.offerGoodChain();
        q.hasAvailable();
        q.wantsInterrupt();
        if (this.errorsSinceEnable > 1)
          throw new FuzzViolation("a broken queue reported more than one error");
        return;
      default:
        if (r.chance(0.3)) q.disable();
        else if (r.chance(0.1)) q.reset();
    }
  }

  check(): void {
    this.canary.check();
    const fresh = new Virtqueue(this.ram, VQ_MAX, () => {});
    const s = this.queue.saveState();
    try {
      fresh.validateState(s, "fuzzed queue");
    } catch (e) {
      throw new FuzzViolation(`a state the guest produced does not load: ${(e as Error).message}`);
    }
    fresh.applyState(s);
  }
}

export const virtqueueFuzzer: DeviceFuzzer = {
  name: "Virtqueue",
  make: (r) => new VirtqueueTarget(r),
};

// ---- A device behind virtio-mmio ----

const MMIO_RAM = 256 * 1024;
/** Rings go in [0, RING_AREA), buffers and indirect tables in [RING_AREA, ARENA). */
const RING_AREA = 64 * 1024;
const ARENA = 128 * 1024;
const DISK_BYTES = 64 * 512;
/** Room for the largest ring's descriptor table (256 × 16 bytes). */
const LARGEST_RING = 4096;

/**
 * A disk whose completions the fuzzer releases when it likes (in any order, or at once), with errors. It
 * checks that discard and write-zeroes reach it only as the device promised: writable, whole sectors, inside
 * the disk, never empty.
 */
class HeldBlockBackend implements BlockBackend {
  readonly sizeBytes = DISK_BYTES;
  readonly readOnly: boolean;
  private readonly disk = new MemoryBlockBackend(DISK_BYTES);
  private readonly held: Array<() => void> = [];

  constructor(
    private readonly r: SeededRandom,
    readOnly: boolean,
    private readonly coverage: Record<string, number>,
  ) {
    this.readOnly = readOnly;
  }

  private hold(run: (done: Completion) => void, done: Completion): void {
    const go = () => (this.r.chance(0.05) ? done("injected I/O error") : run(done));
    if (this.r.chance(0.5)) go();
    else this.held.push(go);
  }

  read(offset: number, dst: Uint8Array, done: Completion): void {
    this.hold((d) => this.disk.read(offset, dst, d), done);
  }

  write(offset: number, src: Uint8Array, done: Completion): void {
    this.hold((d) => this.disk.write(offset, src, d), done);
  }

  flush(done: Completion): void {
    this.hold((d) => this.disk.flush(d), done);
  }

  discard(offset: number, length: number, done: Completion): void {
    this.checkRange("discard", offset, length);
    this.coverage.discards!++;
    this.hold((d) => this.disk.discard(offset, length, d), done);
  }

  writeZeroes(offset: number, length: number, unmap: boolean, done: Completion): void {
    this.checkRange("write-zeroes", offset, length);
    this.coverage.writeZeroes!++;
    this.hold((d) => this.disk.writeZeroes(offset, length, unmap, d), done);
  }

  private checkRange(what: string, offset: number, length: number): void {
    if (
      this.readOnly ||
      offset % 512 !== 0 ||
      length % 512 !== 0 ||
      length <= 0 ||
      offset < 0 ||
      offset + length > DISK_BYTES
    )
      throw new FuzzViolation(
        `${what} of ${length} bytes at ${offset} reached a ${this.readOnly ? "read-only " : ""}disk`,
      );
  }

  /** Completes one held operation, chosen at random; false when none is held. */
  completeOne(): boolean {
    if (this.held.length === 0) return false;
    const i = this.r.below(this.held.length);
    const [op] = this.held.splice(i, 1);
    op!();
    return true;
  }
}

/** What a device under test brings beside itself: host-side inputs the fuzzer may apply. */
interface DeviceRig {
  readonly device: VirtioDevice;
  /** A host input (a disk completion, serial bytes, a port connecting), or null. */
  readonly hostInput: (() => void) | null;
  /** Another device configured as this one (its features depend on its host side), for the state check. */
  twin(): VirtioDevice;
}

/** Makes a rig; it may add coverage counters of its own to `coverage` (starting at 0). */
type MakeRig = (r: SeededRandom, coverage: Record<string, number>) => DeviceRig;

class VirtioMmioTarget implements DeviceFuzzTarget {
  readonly coverage: Record<string, number> = {
    setUps: 0,
    used: 0,
    needsReset: 0,
    hostInputs: 0,
    registerWrites: 0,
  };
  private readonly ram = new GuestRam(BASE, MMIO_RAM);
  private readonly canary: RamCanary;
  private readonly mmio: VirtioMmio;
  private readonly drv: VirtioTestDriver;
  private readonly rig: DeviceRig;
  private readonly queueCount: number;
  private readonly irq = new CallbackIrqLine(() => {});

  constructor(
    private readonly r: SeededRandom,
    makeRig: MakeRig,
  ) {
    // The canary: a pattern that is no arena address.
    this.ram.u8.fill(0xc3, ARENA);
    this.canary = new RamCanary(this.ram, 0, ARENA);
    this.rig = makeRig(r, this.coverage);
    this.mmio = new VirtioMmio("virtio-fuzz", this.rig.device, this.ram, this.irq);
    this.drv = new VirtioTestDriver(this.mmio, this.ram, BASE + RING_AREA, BASE + ARENA);
    this.queueCount = this.rig.device.queueMaxSizes.length;
    if (this.rig.hostInput === null) delete this.coverage.hostInputs;
  }

  private w32(offset: number, value: number): void {
    this.mmio.write(offset, 4, value >>> 0);
  }

  /** A ring address: in the ring area with room for the largest ring (rings may overlap), or unusable. */
  private ringAddress(): [lo: number, hi: number] {
    const r = this.r;
    if (r.chance(0.85)) return [BASE + 16 * r.below((RING_AREA - LARGEST_RING - 2048) / 16), 0];
    return r.pick<[number, number]>([
      [BASE + MMIO_RAM - 4, 0], // no ring fits in 4 bytes
      [BASE + 8, 1],
      [r.below(BASE) & ~15, 0],
      [0xfffffff0, 0xffffffff],
      [BASE + 2, 0],
    ]);
  }

  /** Places queue `index` as a driver would (or nearly), records it in the test driver and readies it. */
  private setUpQueue(index: number): void {
    const r = this.r;
    const max = this.rig.device.queueMaxSizes[index]!;
    const size = r.chance(0.9) ? Math.min(max, r.pick([1, 2, 4, 8, 64, 256])) : r.value32();
    const desc = this.ringAddress();
    const avail = this.ringAddress();
    const used = this.ringAddress();
    const q = this.drv.placeQueue(index, size >>> 0, desc, avail, used);
    if (q === null) return;
    // Fresh rings, as a driver zeroes them (before the first notification, which is all that matters here).
    zeroRings(this.ram, q.desc, q.avail, q.used, q.size);
  }

  private setUp(): void {
    const r = this.r;
    this.drv.queues.length = 0;
    if (this.drv.negotiate(r.chance(0.9) ? (1n << 64n) - 1n : BigInt(r.u32())) === null) return;
    for (let i = 0; i < this.queueCount; i++) if (r.chance(0.9)) this.setUpQueue(i);
    this.coverage.setUps!++;
    if (r.chance(0.9)) this.drv.driverOk();
  }

  /** A status write from the illegal sequences a driver must not use (and a few legal ones). */
  private statusWrite(): void {
    const r = this.r;
    const bits = [
      VIRTIO_CONFIG_S_ACKNOWLEDGE,
      VIRTIO_CONFIG_S_DRIVER,
      VIRTIO_CONFIG_S_FEATURES_OK,
      VIRTIO_CONFIG_S_DRIVER_OK,
      VIRTIO_CONFIG_S_NEEDS_RESET,
      VIRTIO_CONFIG_S_FAILED,
    ];
    let value = 0;
    for (const b of bits) if (r.chance(0.4)) value |= b;
    this.w32(VIRTIO_MMIO_STATUS, r.chance(0.1) ? 0 : r.chance(0.1) ? r.value32() : value);
  }

  private randomRegisterWrite(): void {
    const r = this.r;
    const offsets = [
      0x10, 0x14, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x64, 0x70, 0x80, 0x84, 0x90, 0x94, 0xa0, 0xa4, 0xac,
      0xc0, 0xfc, 0x100, 0x104, 0x10c, 0x114,
    ];
    const offset = r.chance(0.9) ? r.pick(offsets) : r.below(0x1000 + 8) - 4;
    const width = r.pick<AccessWidth>([4, 4, 4, 2, 1]);
    let value = r.chance(0.5) ? r.pick([0, 1, 2, 3, 8, 0xff, 0xffffffff]) : r.value32();
    // Ring addresses from a register write stay where they could not name the canary.
    if (offset >= 0x80 && offset < 0xb0)
      value = (offset & 4) === 0 ? this.ringAddress()[0] : r.pick([0, 0, 1]);
    this.mmio.write(offset, width, value % 2 ** (8 * width));
    this.mmio.read(r.below(0x1000), width);
    this.coverage.registerWrites!++;
  }

  /** A chain the device is sure to walk: a plausible request header, then buffers of every kind. */
  private hostileChain(q: TestQueue): void {
    const r = this.r;
    const hdr = BASE + RING_AREA + 64 * r.below(64);
    const hv = new DataView(this.ram.u8.buffer, hdr - BASE, 16);
    hv.setUint32(0, r.pick([0, 0, 1, 4, 8, VIRTIO_BLK_T_DISCARD, VIRTIO_BLK_T_WRITE_ZEROES, 99]), true);
    hv.setUint32(4, 0, true);
    hv.setUint32(8, r.pick([0, r.below(DISK_BYTES / 512 + 2), 0xffffffff]), true);
    hv.setUint32(12, r.pick([0, 0, 0xffffffff]), true);
    const n = 1 + r.below(5);
    const ids = Array.from({ length: n }, () => r.below(q.size));
    ids.forEach((id, k) => {
      // The last link sometimes goes on (back into the chain: a loop); a readable buffer sometimes follows a
      // writable one; now and then a descriptor is indirect.
      const last = k === n - 1 && r.chance(0.7);
      const [lo, hi, len] =
        k === 0 ? [hdr, 0, r.pick([16, 8, 64])] : hostileBuffer(r, MMIO_RAM, RING_AREA + 4096, ARENA);
      const write = k === 0 ? r.chance(0.1) : r.chance(0.85);
      const flags = (write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
      writeDescriptor(
        this.ram,
        q.desc - BASE + 16 * id,
        lo,
        hi,
        len,
        r.chance(0.05) ? VIRTQ_DESC_F_INDIRECT : flags,
        k === n - 1 ? r.below(q.size + 2) : ids[k + 1]!,
      );
    });
    this.drv.offer(q, ids[0]!);
    this.drv.kick(q);
  }

  /** An indirect table of hostile descriptors (perhaps naming itself) behind a descriptor of the ring. */
  private indirectTable(q: TestQueue): void {
    const r = this.r;
    const n = 1 + r.below(6);
    const table = BASE + RING_AREA + 16 * r.below((ARENA - RING_AREA - 16 * 8) / 16);
    for (let k = 0; k < n; k++) {
      const [lo, hi, len] = r.chance(0.2)
        ? [table, 0, 16 * n]
        : hostileBuffer(r, MMIO_RAM, RING_AREA + 4096, ARENA);
      writeDescriptor(this.ram, table - BASE + 16 * k, lo, hi, len, r.below(8), r.below(n + 2));
    }
    const i = r.below(q.size);
    writeDescriptor(
      this.ram,
      q.desc - BASE + 16 * i,
      table,
      0,
      r.pick([16 * n, 16 * n + 8, 0, 16 * 300, 0xfffffff0]),
      VIRTQ_DESC_F_INDIRECT | (r.chance(0.2) ? VIRTQ_DESC_F_NEXT : 0),
      r.below(q.size),
    );
    this.drv.offer(q, i);
    if (r.chance(0.7)) this.drv.kick(q);
  }

  /** A well-formed request, so the devices' request paths run to the end too. */
  private goodRequest(q: TestQueue): void {
    const r = this.r;
    let data: Uint8Array;
    if (r.chance(0.3)) data = this.segmentRequest();
    else {
      data = new Uint8Array(16 + r.below(3) * 512);
      const dv = new DataView(data.buffer);
      dv.setUint32(0, r.pick([0, 1, 4, 8]), true);
      dv.setUint32(8, r.below(DISK_BYTES / 512), true);
    }
    if (q.freeDesc.length < 2) return;
    this.drv.resetHeap(BASE + RING_AREA + 4096 + 16 * r.below(1024));
    this.drv.add(q, [{ data }, { writable: r.pick([1, 513, 8, 64, 1025]) }], { indirect: r.chance(0.5) });
    this.drv.kick(q);
  }

  /**
   * A discard or write-zeroes request: header and segments, mostly inside the disk with the flags the type
   * allows; now and then a reserved flag, unmap on a discard, a range past the end, or a partial segment.
   */
  private segmentRequest(): Uint8Array {
    const r = this.r;
    const n = r.chance(0.05) ? 257 : 1 + r.below(4);
    const sectors = DISK_BYTES / 512;
    const data = new Uint8Array(16 + 16 * n - (r.chance(0.05) ? 4 : 0));
    const dv = new DataView(data.buffer);
    const discard = r.chance(0.5);
    dv.setUint32(0, discard ? VIRTIO_BLK_T_DISCARD : VIRTIO_BLK_T_WRITE_ZEROES, true);
    for (let i = 0; i < n && 16 + 16 * i + 16 <= data.length; i++) {
      const at = 16 + 16 * i;
      const sector = r.chance(0.9) ? r.below(sectors) : r.pick([sectors, 0xffffffff]);
      dv.setUint32(at, sector, true);
      dv.setUint32(at + 4, r.chance(0.97) ? 0 : r.value32(), true);
      const room = sectors - Math.min(sector, sectors);
      const count = r.chance(0.85) ? r.below(room + 1) : r.pick([room + 1 + r.below(8), r.value32()]);
      dv.setUint32(at + 8, count, true);
      const flags = r.chance(0.9)
        ? discard
          ? 0
          : r.below(2) * VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
        : r.pick([VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP, 2, 0x8000_0000, r.value32()]);
      dv.setUint32(at + 12, flags, true);
    }
    return data;
  }

  step(): void {
    const r = this.r;
    const queues = this.drv.queues.filter((q) => q !== undefined);
    const q = queues.length > 0 ? r.pick(queues) : undefined;
    // A device that gave up on the driver (DEVICE_NEEDS_RESET) is set up again soon, so that the inputs keep
    // reaching the request paths rather than a dead queue.
    const dead = (this.mmio.read(VIRTIO_MMIO_STATUS, 4) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0;
    const op = dead && r.chance(0.3) ? 0 : r.below(16);
    if (op === 0) this.setUp();
    else if (op === 1) this.statusWrite();
    else if (op <= 3) this.randomRegisterWrite();
    else if (op === 4 && this.rig.hostInput !== null) {
      this.rig.hostInput();
      this.coverage.hostInputs!++;
    } else if (q === undefined) this.setUp();
    else if (op <= 7) this.hostileChain(q);
    else if (op === 8) this.indirectTable(q);
    else if (op <= 10) this.goodRequest(q);
    else if (op === 11) {
      // Random descriptor contents in the queue's own table.
      const [lo, hi, len] = hostileBuffer(r, MMIO_RAM, RING_AREA + 4096, ARENA);
      const i = r.below(q.size);
      writeDescriptor(
        this.ram,
        q.desc - BASE + 16 * i,
        lo,
        hi,
        len,
        r.below(8),
        r.pick([r.below(q.size + 4), i, 0xffff]),
      );
    } else if (op === 12) {
      // Available index jumps (by more than the queue size, too) and heads out of range.
      const v = this.ram.view;
      v.setUint16(
        q.avail - BASE + 2,
        r.pick([q.availIdx + 1, q.availIdx + q.size, q.availIdx + q.size + 1, r.below(65536)]) & 0xffff,
        true,
      );
      v.setUint16(q.avail - BASE + 4 + 2 * r.below(q.size), r.pick([0, r.below(q.size), 0xffff]), true);
      if (r.chance(0.5)) this.drv.kick(q);
    } else if (op === 13) {
      this.ram.view.setUint16(q.avail - BASE, r.below(4), true);
      this.w32(0x50, r.chance(0.9) ? q.index : r.value32());
    } else {
      this.drv.kick(q);
      this.coverage.used! += this.drv.takeUsed(q).length;
      this.drv.interrupt();
      if (this.drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET) this.coverage.needsReset!++;
    }
  }

  check(): void {
    // §4.2.2: the interrupt is asserted exactly while InterruptStatus has a bit set.
    if (this.irq.high !== (this.mmio.read(VIRTIO_MMIO_INTERRUPT_STATUS, 4) !== 0))
      throw new FuzzViolation("the interrupt line does not follow InterruptStatus");
    this.canary.check();
    const copy = new GuestRam(BASE, MMIO_RAM);
    copy.u8.set(this.ram.u8);
    // The copy's own device: its disk (if any) answers at once, and its host inputs are never used.
    const fresh = new VirtioMmio("virtio-fuzz", this.rig.twin(), copy, new CallbackIrqLine(() => {}));
    checkStateRoundTrip(this.mmio, fresh);
  }
}

/** A virtio-blk whose disk completes now or later, in any order, sometimes with an error. */
function blkRig(r: SeededRandom, coverage: Record<string, number>): DeviceRig {
  const readOnly = r.chance(0.2);
  coverage.discards = 0;
  coverage.writeZeroes = 0;
  const backend = new HeldBlockBackend(r, readOnly, coverage);
  return {
    device: new VirtioBlk(backend, { serial: "fuzz-disk" }),
    hostInput: () => {
      if (!backend.completeOne()) backend.completeOne();
    },
    twin: () => new VirtioBlk(new HeldBlockBackend(r, readOnly, {}), { serial: "fuzz-disk" }),
  };
}

function consoleRig(r: SeededRandom): DeviceRig {
  const make = () => {
    const sink = { write() {} };
    return new VirtioConsole(sink, { ports: [{ name: "agent", sink, hostConnected: r.chance(0.5) }] });
  };
  const device = make();
  return {
    device,
    hostInput: () => {
      const port = r.below(3);
      if (r.chance(0.7)) device.receive(port, new Uint8Array(r.pick([1, 7, 100, 5000])).fill(HOST_BYTE));
      else device.setHostConnected(port, r.chance(0.5));
    },
    twin: make,
  };
}

function rngRig(): DeviceRig {
  const make = () => new VirtioRng({ fill: (d) => d.fill(HOST_BYTE) });
  return { device: make(), hostInput: null, twin: make };
}

export const virtioBlkFuzzer: DeviceFuzzer = {
  name: "VirtioMmio+VirtioBlk",
  make: (r) => new VirtioMmioTarget(r, blkRig),
};

export const virtioConsoleFuzzer: DeviceFuzzer = {
  name: "VirtioMmio+VirtioConsole",
  make: (r) => new VirtioMmioTarget(r, consoleRig),
};

export const virtioRngFuzzer: DeviceFuzzer = {
  name: "VirtioMmio+VirtioRng",
  make: (r) => new VirtioMmioTarget(r, rngRig),
};
