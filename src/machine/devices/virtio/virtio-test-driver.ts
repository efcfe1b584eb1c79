// The driver side of virtio-mmio as Linux's virtio_mmio.c and virtio_ring.c drive it (VIRTIO 1.2 §3.1,
// §4.2.3, §2.7.13), small enough for tests: feature negotiation, split queues in a GuestRam, used rings.

import type { GuestRam } from "../../bus/guest-ram.ts";
import type { MmioDevice } from "../../bus/mmio-device.ts";
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_QUEUE_AVAIL_HIGH,
  VIRTIO_MMIO_QUEUE_AVAIL_LOW,
  VIRTIO_MMIO_QUEUE_DESC_HIGH,
  VIRTIO_MMIO_QUEUE_DESC_LOW,
  VIRTIO_MMIO_QUEUE_NOTIFY,
  VIRTIO_MMIO_QUEUE_NUM,
  VIRTIO_MMIO_QUEUE_NUM_MAX,
  VIRTIO_MMIO_QUEUE_READY,
  VIRTIO_MMIO_QUEUE_SEL,
  VIRTIO_MMIO_QUEUE_USED_HIGH,
  VIRTIO_MMIO_QUEUE_USED_LOW,
  VIRTIO_MMIO_STATUS,
} from "./virtio-spec.ts";
import { VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE } from "./virtqueue.ts";

/** One buffer of a chain: `data` for a device-readable buffer, `writable` bytes for a device-writable one. */
export type TestBuffer = { readonly data: Uint8Array } | { readonly writable: number };

/** A buffer the driver placed in guest RAM. */
export interface PlacedBuffer {
  readonly addr: number;
  readonly len: number;
  readonly write: boolean;
}

export interface TestQueue {
  readonly index: number;
  readonly size: number;
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx: number;
  lastUsed: number;
  readonly freeDesc: number[];
  /** Buffers of each outstanding chain, by head. */
  readonly chains: Map<number, PlacedBuffer[]>;
}

export interface UsedEntry {
  readonly id: number;
  readonly len: number;
  /** The chain's buffers, for reading what the device wrote. */
  readonly buffers: PlacedBuffer[];
}

export class VirtioTestDriver {
  /** Next free guest-physical address of the bump allocator. */
  private next: number;
  readonly queues: TestQueue[] = [];

  /** @param heapBase first guest-physical address this driver may allocate from
   *  @param heapEnd first address past what it may allocate (default: the end of RAM) */
  constructor(
    readonly dev: MmioDevice,
    readonly ram: GuestRam,
    readonly heapBase = ram.base,
    readonly heapEnd = ram.base + ram.size,
  ) {
    this.next = heapBase;
  }

  /** Forgets every allocation (the caller knows nothing in use lies in the heap any more). */
  resetHeap(at = this.heapBase): void {
    this.next = at;
  }

  r32(off: number): number {
    return this.dev.read(off, 4);
  }

  w32(off: number, v: number): void {
    this.dev.write(off, 4, v >>> 0);
  }

  /** Allocates `len` bytes of guest RAM aligned to `align`; returns the guest-physical address. */
  alloc(len: number, align = 16): number {
    const a = Math.ceil(this.next / align) * align;
    if (a + len > this.heapEnd) throw new Error("test driver ran out of guest RAM");
    this.next = a + len;
    return a;
  }

  put(addr: number, bytes: Uint8Array): void {
    this.ram.u8.set(bytes, addr - this.ram.base);
  }

  get(addr: number, len: number): Uint8Array {
    const o = addr - this.ram.base;
    return this.ram.u8.slice(o, o + len);
  }

  /** Device features as one 64-bit bigint (test code only). */
  deviceFeatures(): bigint {
    this.w32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
    const hi = this.r32(VIRTIO_MMIO_DEVICE_FEATURES);
    this.w32(VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
    const lo = this.r32(VIRTIO_MMIO_DEVICE_FEATURES);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  /**
   * §3.1.1 steps 1–6: reset, ACKNOWLEDGE, DRIVER, accept `wanted ∩ offered`, FEATURES_OK, read it back.
   * Returns the accepted features, or null when the device refused them.
   */
  negotiate(wanted: bigint): bigint | null {
    this.w32(VIRTIO_MMIO_STATUS, 0);
    this.w32(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE);
    this.w32(VIRTIO_MMIO_STATUS, VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER);
    const accepted = this.deviceFeatures() & wanted;
    this.w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
    this.w32(VIRTIO_MMIO_DRIVER_FEATURES, Number(accepted >> 32n));
    this.w32(VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
    this.w32(VIRTIO_MMIO_DRIVER_FEATURES, Number(accepted & 0xffffffffn));
    const s = VIRTIO_CONFIG_S_ACKNOWLEDGE | VIRTIO_CONFIG_S_DRIVER | VIRTIO_CONFIG_S_FEATURES_OK;
    this.w32(VIRTIO_MMIO_STATUS, s);
    if ((this.r32(VIRTIO_MMIO_STATUS) & VIRTIO_CONFIG_S_FEATURES_OK) === 0) return null;
    return accepted;
  }

  /** As Linux's vm_setup_vq: select, check not ready, size ≤ QueueNumMax, place the rings, ready. */
  setupQueue(index: number, size?: number): TestQueue {
    this.w32(VIRTIO_MMIO_QUEUE_SEL, index);
    if (this.r32(VIRTIO_MMIO_QUEUE_READY) !== 0) throw new Error(`queue ${index} is already ready`);
    const max = this.r32(VIRTIO_MMIO_QUEUE_NUM_MAX);
    if (max === 0) throw new Error(`queue ${index} does not exist`);
    const n = size ?? max;
    const desc = this.alloc(16 * n, 16);
    const avail = this.alloc(6 + 2 * n, 2);
    const used = this.alloc(6 + 8 * n, 4);
    this.ram.u8.fill(0, desc - this.ram.base, used + 6 + 8 * n - this.ram.base);
    const q = this.placeQueue(index, n, [desc, 0], [avail, 0], [used, 0]);
    if (q === null) throw new Error(`queue ${index} was refused`);
    return q;
  }

  /**
   * Writes queue `index`'s QueueNum and ring addresses (each as its low and high 32 bits, whatever a hostile
   * driver likes), sets QueueReady and records the queue if the device took it; null when it refused.
   */
  placeQueue(
    index: number,
    n: number,
    [desc, descHi]: readonly [number, number],
    [avail, availHi]: readonly [number, number],
    [used, usedHi]: readonly [number, number],
  ): TestQueue | null {
    this.w32(VIRTIO_MMIO_QUEUE_SEL, index);
    this.w32(VIRTIO_MMIO_QUEUE_NUM, n);
    this.w32(VIRTIO_MMIO_QUEUE_DESC_LOW, desc);
    this.w32(VIRTIO_MMIO_QUEUE_DESC_HIGH, descHi);
    this.w32(VIRTIO_MMIO_QUEUE_AVAIL_LOW, avail);
    this.w32(VIRTIO_MMIO_QUEUE_AVAIL_HIGH, availHi);
    this.w32(VIRTIO_MMIO_QUEUE_USED_LOW, used);
    this.w32(VIRTIO_MMIO_QUEUE_USED_HIGH, usedHi);
    this.w32(VIRTIO_MMIO_QUEUE_READY, 1);
    if (this.r32(VIRTIO_MMIO_QUEUE_READY) !== 1) return null;
    const freeDesc: number[] = [];
    for (let i = n - 1; i >= 0; i--) freeDesc.push(i);
    const q: TestQueue = {
      index,
      size: n,
      desc,
      avail,
      used,
      availIdx: 0,
      lastUsed: 0,
      freeDesc,
      chains: new Map(),
    };
    this.queues[index] = q;
    return q;
  }

  driverOk(): void {
    this.w32(VIRTIO_MMIO_STATUS, this.r32(VIRTIO_MMIO_STATUS) | VIRTIO_CONFIG_S_DRIVER_OK);
  }

  private writeDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const v = this.ram.view;
    const d = table - this.ram.base + 16 * i;
    v.setUint32(d, addr, true);
    v.setUint32(d + 4, 0, true);
    v.setUint32(d + 8, len, true);
    v.setUint16(d + 12, flags, true);
    v.setUint16(d + 14, next, true);
  }

  /** Places the buffers in RAM, chains them (optionally through an indirect table), makes the chain
   *  available (without notifying) and returns its head. */
  add(q: TestQueue, buffers: readonly TestBuffer[], options: { indirect?: boolean } = {}): number {
    const placed: PlacedBuffer[] = buffers.map((b) => {
      if ("data" in b) {
        const addr = this.alloc(Math.max(b.data.length, 1), 8);
        this.put(addr, b.data);
        return { addr, len: b.data.length, write: false };
      }
      const addr = this.alloc(Math.max(b.writable, 1), 8);
      this.ram.u8.fill(0, addr - this.ram.base, addr - this.ram.base + b.writable);
      return { addr, len: b.writable, write: true };
    });
    let head: number;
    if (options.indirect) {
      const table = this.alloc(16 * placed.length, 16);
      placed.forEach((b, i) => {
        const last = i === placed.length - 1;
        const flags = (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
        this.writeDesc(table, i, b.addr, b.len, flags, last ? 0 : i + 1);
      });
      head = this.takeDesc(q);
      this.writeDesc(q.desc, head, table, 16 * placed.length, VIRTQ_DESC_F_INDIRECT, 0);
    } else {
      if (q.freeDesc.length < placed.length) throw new Error("test queue is full");
      const ids = placed.map(() => this.takeDesc(q));
      placed.forEach((b, i) => {
        const last = i === placed.length - 1;
        const flags = (b.write ? VIRTQ_DESC_F_WRITE : 0) | (last ? 0 : VIRTQ_DESC_F_NEXT);
        this.writeDesc(q.desc, ids[i]!, b.addr, b.len, flags, last ? 0 : ids[i + 1]!);
      });
      head = ids[0]!;
    }
    q.chains.set(head, placed);
    this.offer(q, head);
    return head;
  }

  /** Puts `head` in the next available-ring slot and publishes it (no notification). */
  offer(q: TestQueue, head: number): void {
    const v = this.ram.view;
    v.setUint16(q.avail - this.ram.base + 4 + 2 * (q.availIdx % q.size), head, true);
    q.availIdx = (q.availIdx + 1) & 0xffff;
    v.setUint16(q.avail - this.ram.base + 2, q.availIdx, true);
  }

  private takeDesc(q: TestQueue): number {
    const d = q.freeDesc.pop();
    if (d === undefined) throw new Error("test queue is out of descriptors");
    return d;
  }

  kick(q: TestQueue): void {
    this.w32(VIRTIO_MMIO_QUEUE_NOTIFY, q.index);
  }

  /** New used-ring entries since the last call; their descriptors go back to the free list. */
  takeUsed(q: TestQueue): UsedEntry[] {
    const v = this.ram.view;
    const out: UsedEntry[] = [];
    const usedIdx = v.getUint16(q.used - this.ram.base + 2, true);
    while (q.lastUsed !== usedIdx) {
      const e = q.used - this.ram.base + 4 + 8 * (q.lastUsed % q.size);
      const id = v.getUint32(e, true);
      const len = v.getUint32(e + 4, true);
      q.lastUsed = (q.lastUsed + 1) & 0xffff;
      const buffers = q.chains.get(id) ?? [];
      q.chains.delete(id);
      this.freeChain(q, id);
      out.push({ id, len, buffers });
    }
    return out;
  }

  private freeChain(q: TestQueue, head: number): void {
    const v = this.ram.view;
    let i = head;
    // Tests also write hostile chains; walk them as carefully as a device would.
    for (let n = 0; n < q.size && i < q.size && !q.freeDesc.includes(i); n++) {
      q.freeDesc.push(i);
      const d = q.desc - this.ram.base + 16 * i;
      if ((v.getUint16(d + 12, true) & VIRTQ_DESC_F_NEXT) === 0) return;
      i = v.getUint16(d + 14, true);
    }
  }

  /** As Linux's vm_interrupt: read InterruptStatus, acknowledge it, return it. */
  interrupt(): number {
    const s = this.r32(VIRTIO_MMIO_INTERRUPT_STATUS);
    this.w32(VIRTIO_MMIO_INTERRUPT_ACK, s);
    return s;
  }

  status(): number {
    return this.r32(VIRTIO_MMIO_STATUS);
  }

  config8(off: number): number {
    return this.dev.read(VIRTIO_MMIO_CONFIG + off, 1);
  }

  config16(off: number): number {
    return this.dev.read(VIRTIO_MMIO_CONFIG + off, 2);
  }

  config32(off: number): number {
    return this.dev.read(VIRTIO_MMIO_CONFIG + off, 4);
  }
}
