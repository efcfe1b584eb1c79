// A split virtqueue (VIRTIO 1.2 §2.7): descriptor table, available ring and used ring in guest RAM,
// walked with every guest-controlled value bounded before any buffer is touched.

import type { GuestRam } from "../../bus/guest-ram.ts";
import { checkState } from "../../state/stateful.ts";

// §2.7.5 descriptor flags and §2.7.6/§2.7.8 ring flags.
export const VIRTQ_DESC_F_NEXT = 1;
export const VIRTQ_DESC_F_WRITE = 2;
export const VIRTQ_DESC_F_INDIRECT = 4;
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
export const VIRTQ_USED_F_NO_NOTIFY = 1;

/** The largest QueueNumMax any device here offers; chains and indirect tables are bounded by it. */
export const VIRTQUEUE_MAX_SIZE = 256;

const DESC_SIZE = 16;

/**
 * One descriptor chain as the device sees it: the device-readable segments, then the device-writable ones,
 * each as an offset into `ram.u8` and a length, all already checked to lie inside RAM. Reused across
 * requests; a device that completes a request later keeps its own instance until then.
 */
export class DescriptorChain {
  /** Index of the head descriptor: the id the device returns in the used ring. */
  head = 0;
  readCount = 0;
  writeCount = 0;
  /** Total bytes of the readable segments and of the writable segments. */
  readTotal = 0;
  writeTotal = 0;
  readonly readOff: Uint32Array;
  readonly readLen: Uint32Array;
  readonly writeOff: Uint32Array;
  readonly writeLen: Uint32Array;

  constructor(
    readonly ram: GuestRam,
    readonly capacity = VIRTQUEUE_MAX_SIZE,
  ) {
    this.readOff = new Uint32Array(capacity);
    this.readLen = new Uint32Array(capacity);
    this.writeOff = new Uint32Array(capacity);
    this.writeLen = new Uint32Array(capacity);
  }

  clear(): void {
    this.readCount = this.writeCount = this.readTotal = this.writeTotal = 0;
  }

  /** Copies up to `n` bytes of the readable part, starting `pos` bytes into it, to `dst[dstOff…]`.
   *  Returns how many bytes it copied (fewer when the readable part ends first). */
  copyFrom(pos: number, dst: Uint8Array, dstOff: number, n: number): number {
    return this.copy(this.readOff, this.readLen, this.readCount, pos, dst, dstOff, n, false);
  }

  /** Copies up to `n` bytes of `src[srcOff…]` into the writable part, starting `pos` bytes into it.
   *  Returns how many bytes it copied (fewer when the writable part ends first). */
  copyTo(pos: number, src: Uint8Array, srcOff: number, n: number): number {
    return this.copy(this.writeOff, this.writeLen, this.writeCount, pos, src, srcOff, n, true);
  }

  private copy(
    offs: Uint32Array,
    lens: Uint32Array,
    count: number,
    pos: number,
    buf: Uint8Array,
    bufOff: number,
    n: number,
    toGuest: boolean,
  ): number {
    const u8 = this.ram.u8;
    let done = 0;
    n = Math.min(n, buf.length - bufOff);
    for (let i = 0; i < count && done < n; i++) {
      const len = lens[i]!;
      if (pos >= len) {
        pos -= len;
        continue;
      }
      const k = Math.min(len - pos, n - done);
      const at = offs[i]! + pos;
      if (toGuest) {
        u8.set(buf.subarray(bufOff + done, bufOff + done + k), at);
        this.ram.noteWrite(at, k);
      } else buf.set(u8.subarray(at, at + k), bufOff + done);
      done += k;
      pos = 0;
    }
    return done;
  }
}

/** The driver-written registers that place a queue in RAM. */
interface VirtqueueRegisters {
  readonly size: number;
  readonly descLo: number;
  readonly descHi: number;
  readonly driverLo: number;
  readonly driverHi: number;
  readonly deviceLo: number;
  readonly deviceHi: number;
}

interface RingOffsets {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
}

/** A virtqueue's saved registers and ring positions. */
export interface VirtqueueState extends VirtqueueRegisters {
  /** QueueReady as the driver last wrote it. */
  readonly ready: boolean;
  /** The device found the rings corrupt and stopped using them. */
  readonly broken: boolean;
  readonly lastAvailIdx: number;
  readonly usedIdx: number;
}

/**
 * The device side of one split virtqueue. The transport writes the registers (size, ring addresses) and
 * calls `enable()`; the device then `pop`s chains and `push`es them back to the used ring. Any violation
 * of the ring rules by the guest is reported once through `onError` and the queue stops (the transport
 * then sets DEVICE_NEEDS_RESET); it never throws and never loops beyond the queue size.
 */
export class Virtqueue {
  /** QueueNum as the driver wrote it: any 32-bit value, a power of two ≤ maxSize once the queue is ready. */
  size: number;
  descLo = 0;
  descHi = 0;
  driverLo = 0;
  driverHi = 0;
  deviceLo = 0;
  deviceHi = 0;
  private isReady = false;
  private broken = false;
  /** Offsets into ram.u8 of the three areas, valid while ready. */
  private descOff = 0;
  private availOff = 0;
  private usedOff = 0;
  /** Next available-ring slot the device will read, and the device's used index (both mod 2^16). */
  lastAvailIdx = 0;
  usedIdx = 0;

  constructor(
    private readonly ram: GuestRam,
    readonly maxSize: number,
    private readonly onError: (reason: string) => void,
  ) {
    this.size = maxSize;
  }

  get ready(): boolean {
    return this.isReady && !this.broken;
  }

  /** Whether the registers still may change (the driver must not change them while the queue is ready). */
  get enabled(): boolean {
    return this.isReady;
  }

  /** Back to the state after device reset: not ready, no addresses, size = maxSize. */
  reset(): void {
    this.size = this.maxSize;
    this.descLo = this.descHi = this.driverLo = this.driverHi = this.deviceLo = this.deviceHi = 0;
    this.isReady = this.broken = false;
    this.lastAvailIdx = this.usedIdx = 0;
  }

  /**
   * QueueReady ← 1: checks size and ring placement and starts the rings at index 0. Returns false (and
   * stays not ready) when they are unusable.
   */
  enable(): boolean {
    if (!this.layout()) return false;
    this.isReady = true;
    this.broken = false;
    this.lastAvailIdx = this.usedIdx = 0;
    return true;
  }

  /** QueueReady ← 0. */
  disable(): void {
    this.isReady = false;
  }

  /** Offsets into ram.u8 of the three ring areas the registers `r` describe, or null when unusable. */
  private layoutOf(r: VirtqueueRegisters): RingOffsets | null {
    const n = r.size;
    // Guest-controlled: QueueNum. §2.7: "Queue Size value is always a power of 2", at most QueueNumMax.
    if (n < 1 || n > this.maxSize || (n & (n - 1)) !== 0) return null;
    // Guest-controlled: ring addresses. §2.7: alignment 16 (descriptors), 2 (available), 4 (used); the
    // whole of each area must lie in RAM (the available ring with used_event, the used ring with avail_event).
    if ((r.descLo & 15) !== 0 || (r.driverLo & 1) !== 0 || (r.deviceLo & 3) !== 0) return null;
    const desc = this.ram.offsetOf(r.descLo, r.descHi, DESC_SIZE * n);
    const avail = this.ram.offsetOf(r.driverLo, r.driverHi, 6 + 2 * n);
    const used = this.ram.offsetOf(r.deviceLo, r.deviceHi, 6 + 8 * n);
    if (desc < 0 || avail < 0 || used < 0) return null;
    return { desc, avail, used };
  }

  private layout(): boolean {
    const o = this.layoutOf(this);
    if (o === null) return false;
    this.descOff = o.desc;
    this.availOff = o.avail;
    this.usedOff = o.used;
    return true;
  }

  private fail(reason: string): false {
    if (!this.broken) {
      this.broken = true;
      this.onError(reason);
    }
    return false;
  }

  /** Whether the driver has made chains available that the device has not taken yet. */
  hasAvailable(): boolean {
    if (!this.ready) return false;
    return this.ram.view.getUint16(this.availOff + 2, true) !== this.lastAvailIdx;
  }

  /**
   * Takes the next available chain into `chain`. Returns false when none is available or the queue is
   * broken (in which case the error has been reported).
   */
  pop(chain: DescriptorChain): boolean {
    if (!this.ready) return false;
    const view = this.ram.view;
    const availIdx = view.getUint16(this.availOff + 2, true);
    const pending = (availIdx - this.lastAvailIdx) & 0xffff;
    if (pending === 0) return false;
    // Guest-controlled: avail idx. The driver can have at most QueueNum chains outstanding, so a larger jump
    // is a corrupt ring, not work to do.
    if (pending > this.size)
      return this.fail(`available index moved by ${pending}, more than the queue size ${this.size}`);
    const slot = this.lastAvailIdx & (this.size - 1);
    const head = view.getUint16(this.availOff + 4 + 2 * slot, true);
    this.lastAvailIdx = (this.lastAvailIdx + 1) & 0xffff;
    return this.readChain(head, chain);
  }

  /**
   * How many chains the driver has made available that the device has not taken (0 when the queue is not
   * ready). Breaks the queue and returns 0 when the available index moved by more than the queue size.
   */
  availableCount(): number {
    if (!this.ready) return 0;
    const pending = (this.ram.view.getUint16(this.availOff + 2, true) - this.lastAvailIdx) & 0xffff;
    // Guest-controlled: avail idx, as in pop.
    if (pending > this.size) {
      this.fail(`available index moved by ${pending}, more than the queue size ${this.size}`);
      return 0;
    }
    return pending;
  }

  /**
   * Reads the `k`-th available chain the device has not taken (0: the one `pop` would take) into `chain`
   * without taking it. The caller keeps `k < availableCount()`.
   */
  peek(k: number, chain: DescriptorChain): boolean {
    if (!this.ready) return false;
    const slot = (this.lastAvailIdx + k) & (this.size - 1);
    return this.readChain(this.ram.view.getUint16(this.availOff + 4 + 2 * slot, true), chain);
  }

  /**
   * Walks the chain starting at descriptor `head` into `chain`, validating all of it (indices, cycles,
   * indirect tables, order, addresses and lengths) before the device may touch any buffer.
   */
  readChain(head: number, chain: DescriptorChain): boolean {
    chain.clear();
    chain.head = head;
    if (!this.ready) return false;
    const view = this.ram.view;
    const size = this.size;
    let table = this.descOff;
    let tableLen = size;
    let indirect = false;
    let i = head;
    // Guest-controlled: every `next` index. Visiting more descriptors than the table holds means a cycle.
    let budget = size;
    for (;;) {
      if (i >= tableLen) return this.fail(`descriptor index ${i} is outside a table of ${tableLen}`);
      if (budget-- === 0) return this.fail("descriptor chain is longer than its table (a loop)");
      const d = table + DESC_SIZE * i;
      const addrLo = view.getUint32(d, true);
      const addrHi = view.getUint32(d + 4, true);
      const len = view.getUint32(d + 8, true);
      const flags = view.getUint16(d + 12, true);
      const next = view.getUint16(d + 14, true);
      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // Guest-controlled: indirect descriptor. §2.7.5.3.1: "The driver MUST NOT set the
        // VIRTQ_DESC_F_INDIRECT flag within an indirect descriptor" and "MUST NOT set both
        // VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT"; its table holds whole descriptors, bounded here.
        if (indirect) return this.fail("indirect descriptor inside an indirect table");
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) return this.fail("indirect descriptor with NEXT set");
        if (len === 0 || len % DESC_SIZE !== 0 || len / DESC_SIZE > chain.capacity)
          return this.fail(`indirect table length ${len} is not 1..${chain.capacity} descriptors`);
        const off = this.ram.offsetOf(addrLo, addrHi, len);
        if (off < 0) return this.fail("indirect table lies outside RAM");
        table = off;
        tableLen = len / DESC_SIZE;
        budget = tableLen;
        indirect = true;
        i = 0;
        continue;
      }
      // Guest-controlled: buffer address and length, which must lie wholly inside RAM.
      const off = this.ram.offsetOf(addrLo, addrHi, len);
      if (off < 0)
        return this.fail(
          `buffer of ${len} bytes at 0x${addrHi.toString(16)}_${addrLo.toString(16)} lies outside RAM`,
        );
      if ((flags & VIRTQ_DESC_F_WRITE) !== 0) {
        if (chain.writeCount === chain.capacity) return this.fail("descriptor chain has too many buffers");
        chain.writeOff[chain.writeCount] = off;
        chain.writeLen[chain.writeCount++] = len;
        chain.writeTotal += len;
      } else {
        // §2.7.4.2: "The driver MUST place any device-writable descriptor elements after any device-readable
        // descriptor elements."
        if (chain.writeCount > 0) return this.fail("device-readable buffer after a device-writable one");
        if (chain.readCount === chain.capacity) return this.fail("descriptor chain has too many buffers");
        chain.readOff[chain.readCount] = off;
        chain.readLen[chain.readCount++] = len;
        chain.readTotal += len;
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) return true;
      i = next;
    }
  }

  /** Returns chain `head` to the driver with `written` bytes written into its writable part. */
  push(head: number, written: number): void {
    if (!this.ready) return;
    const view = this.ram.view;
    const slot = this.usedOff + 4 + 8 * (this.usedIdx & (this.size - 1));
    view.setUint32(slot, head, true);
    view.setUint32(slot + 4, written, true);
    this.usedIdx = (this.usedIdx + 1) & 0xffff;
    // §2.7.8: the ring entry must be visible before idx; JavaScript on one thread keeps program order.
    view.setUint16(this.usedOff + 2, this.usedIdx, true);
    // The used ring is guest RAM like any other: a hostile driver may place it over code.
    this.ram.noteWrite(slot, 8);
    this.ram.noteWrite(this.usedOff + 2, 2);
  }

  /** §2.7.7: without VIRTIO_F_EVENT_IDX, the device SHOULD NOT notify when avail flags has NO_INTERRUPT. */
  wantsInterrupt(): boolean {
    if (!this.ready) return false;
    return (this.ram.view.getUint16(this.availOff, true) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  saveState(): VirtqueueState {
    return {
      size: this.size,
      ready: this.isReady,
      broken: this.broken,
      descLo: this.descLo,
      descHi: this.descHi,
      driverLo: this.driverLo,
      driverHi: this.driverHi,
      deviceLo: this.deviceLo,
      deviceHi: this.deviceHi,
      lastAvailIdx: this.lastAvailIdx,
      usedIdx: this.usedIdx,
    };
  }

  /** Throws StateError (naming `component`) when `s` cannot be loaded; changes nothing then. */
  validateState(s: VirtqueueState, component: string): void {
    const u32 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
    const u16 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffff;
    checkState(typeof s === "object" && s !== null, component, "queue is not an object");
    // Guest-controlled: QueueNum holds whatever the driver wrote until it sets QueueReady, which is where
    // the size is checked (layoutOf); a not-ready queue with a bad size is a state a guest can save.
    checkState(u32(s.size), component, `queue size ${s.size} is not a 32-bit value`);
    checkState(typeof s.ready === "boolean", component, "queue ready is not a boolean");
    for (const f of ["descLo", "descHi", "driverLo", "driverHi", "deviceLo", "deviceHi"] as const)
      checkState(u32(s[f]), component, `queue ${f} is not a 32-bit value`);
    checkState(u16(s.lastAvailIdx) && u16(s.usedIdx), component, "queue indices are not 16-bit values");
    checkState(typeof s.broken === "boolean", component, "queue broken is not a boolean");
    checkState(!s.ready || this.layoutOf(s) !== null, component, "a ready queue's rings do not fit in RAM");
  }

  /** Loads a state that validateState accepted. */
  applyState(s: VirtqueueState): void {
    this.applyRegisters(s);
    this.isReady = s.ready;
    this.broken = s.broken;
    this.lastAvailIdx = s.lastAvailIdx;
    this.usedIdx = s.usedIdx;
    if (s.ready) this.layout();
  }

  private applyRegisters(s: VirtqueueState): void {
    this.size = s.size;
    this.descLo = s.descLo;
    this.descHi = s.descHi;
    this.driverLo = s.driverLo;
    this.driverHi = s.driverHi;
    this.deviceLo = s.deviceLo;
    this.deviceHi = s.deviceHi;
  }
}
