// The virtio-mmio transport, version 2 (VIRTIO 1.2 §4.2 "Virtio Over MMIO"): the register window a driver
// uses to negotiate features, place virtqueues, notify, and acknowledge interrupts of one virtio device.

import { MachineError } from "../../base/machine-error.ts";
import type { GuestRam } from "../../bus/guest-ram.ts";
import type { IrqLine } from "../../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../../bus/mmio-device.ts";
import { type ComponentState, checkState, type Stateful } from "../../state/stateful.ts";
import type { VirtioDevice, VirtioTransport } from "./virtio-device.ts";
import {
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_MMIO_CONFIG,
  VIRTIO_MMIO_CONFIG_GENERATION,
  VIRTIO_MMIO_DEVICE_FEATURES,
  VIRTIO_MMIO_DEVICE_FEATURES_SEL,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_DRIVER_FEATURES,
  VIRTIO_MMIO_DRIVER_FEATURES_SEL,
  VIRTIO_MMIO_INT_CONFIG,
  VIRTIO_MMIO_INT_VRING,
  VIRTIO_MMIO_INTERRUPT_ACK,
  VIRTIO_MMIO_INTERRUPT_STATUS,
  VIRTIO_MMIO_MAGIC,
  VIRTIO_MMIO_MAGIC_VALUE,
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
  VIRTIO_MMIO_SHM_BASE_HIGH,
  VIRTIO_MMIO_SHM_BASE_LOW,
  VIRTIO_MMIO_SHM_LEN_HIGH,
  VIRTIO_MMIO_SHM_LEN_LOW,
  VIRTIO_MMIO_STATUS,
  VIRTIO_MMIO_VENDOR_ID,
  VIRTIO_MMIO_VENDOR_ID_REG,
  VIRTIO_MMIO_VERSION,
  VIRTIO_MMIO_VERSION_REG,
} from "./virtio-spec.ts";
import { VIRTQUEUE_MAX_SIZE, Virtqueue, type VirtqueueState } from "./virtqueue.ts";

/** Size of one virtio-mmio window on the virt board. */
export const VIRTIO_MMIO_WINDOW = 0x1000;

export interface VirtioMmioState extends ComponentState {
  readonly version: 1;
  readonly status: number;
  readonly deviceFeaturesSel: number;
  readonly driverFeaturesSel: number;
  readonly driverFeaturesLo: number;
  readonly driverFeaturesHi: number;
  readonly queueSel: number;
  readonly interruptStatus: number;
  readonly configGeneration: number;
  readonly queues: readonly VirtqueueState[];
  readonly device: ComponentState;
}

/** Transport features offered on top of the device's own: modern-only, indirect descriptors. */
const TRANSPORT_FEATURES_LO = (1 << VIRTIO_F_INDIRECT_DESC) >>> 0;
const TRANSPORT_FEATURES_HI = 1 << (VIRTIO_F_VERSION_1 - 32);

export class VirtioMmio implements MmioDevice, VirtioTransport, Stateful<VirtioMmioState> {
  private status = 0;
  private deviceFeaturesSel = 0;
  private driverFeaturesSel = 0;
  private driverFeaturesLo = 0;
  private driverFeaturesHi = 0;
  private queueSel = 0;
  private interruptStatus = 0;
  private configGeneration = 0;
  private readonly queues: Virtqueue[];
  private readonly offeredLo: number;
  private readonly offeredHi: number;
  /** The last guest error that set DEVICE_NEEDS_RESET, for logs and tests; "" when none. */
  lastError = "";

  constructor(
    readonly id: string,
    readonly device: VirtioDevice,
    readonly ram: GuestRam,
    private readonly irq: IrqLine,
  ) {
    for (const n of device.queueMaxSizes)
      if (!Number.isInteger(n) || n < 1 || n > VIRTQUEUE_MAX_SIZE || (n & (n - 1)) !== 0)
        throw new MachineError("bad-virtio-device", `virtio device ${id} offers an invalid queue size ${n}`);
    const onError = (reason: string) => this.deviceError(reason);
    this.queues = device.queueMaxSizes.map((n) => new Virtqueue(ram, n, onError));
    this.offeredLo = (device.featuresLo | TRANSPORT_FEATURES_LO) >>> 0;
    this.offeredHi = (device.featuresHi | TRANSPORT_FEATURES_HI) >>> 0;
    device.attach(this);
  }

  // ---- VirtioTransport ----

  queue(index: number): Virtqueue {
    return this.queues[index]!;
  }

  negotiated(bit: number): boolean {
    if ((this.status & VIRTIO_CONFIG_S_FEATURES_OK) === 0) return false;
    const word = bit < 32 ? this.driverFeaturesLo : this.driverFeaturesHi;
    return ((word >>> (bit & 31)) & 1) === 1;
  }

  get active(): boolean {
    return (
      (this.status & (VIRTIO_CONFIG_S_DRIVER_OK | VIRTIO_CONFIG_S_NEEDS_RESET)) === VIRTIO_CONFIG_S_DRIVER_OK
    );
  }

  usedBuffers(index: number): void {
    if (!this.active) return;
    const q = this.queues[index];
    if (q === undefined || !q.wantsInterrupt()) return;
    this.raise(VIRTIO_MMIO_INT_VRING);
  }

  configChanged(): void {
    this.configGeneration = (this.configGeneration + 1) >>> 0;
    if ((this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  deviceError(reason: string): void {
    if ((this.status & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) return;
    this.lastError = reason;
    this.status |= VIRTIO_CONFIG_S_NEEDS_RESET;
    // §2.1.2: "If DRIVER_OK is set, after it sets DEVICE_NEEDS_RESET, the device MUST send a device
    // configuration change notification to the driver."
    if ((this.status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0) this.raise(VIRTIO_MMIO_INT_CONFIG);
  }

  private raise(bits: number): void {
    this.interruptStatus |= bits;
    this.irq.set(true);
  }

  // ---- MmioDevice ----

  read(offset: number, width: AccessWidth): number {
    if (offset >= VIRTIO_MMIO_CONFIG) return this.device.readConfig(offset - VIRTIO_MMIO_CONFIG, width);
    // §4.2.2.2: "The driver MUST only use 32 bit wide and aligned reads and writes to access the control
    // registers"; anything else reads as 0.
    if (width !== 4 || (offset & 3) !== 0) return 0;
    const q = this.queues[this.queueSel];
    switch (offset) {
      case VIRTIO_MMIO_MAGIC_VALUE:
        return VIRTIO_MMIO_MAGIC;
      case VIRTIO_MMIO_VERSION_REG:
        return VIRTIO_MMIO_VERSION;
      case VIRTIO_MMIO_DEVICE_ID:
        return this.device.deviceId;
      case VIRTIO_MMIO_VENDOR_ID_REG:
        return VIRTIO_MMIO_VENDOR_ID;
      case VIRTIO_MMIO_DEVICE_FEATURES:
        return this.deviceFeaturesSel === 0
          ? this.offeredLo
          : this.deviceFeaturesSel === 1
            ? this.offeredHi
            : 0;
      case VIRTIO_MMIO_QUEUE_NUM_MAX:
        return q === undefined ? 0 : q.maxSize;
      case VIRTIO_MMIO_QUEUE_READY:
        return q?.enabled ? 1 : 0;
      case VIRTIO_MMIO_INTERRUPT_STATUS:
        return this.interruptStatus;
      case VIRTIO_MMIO_STATUS:
        return this.status;
      case VIRTIO_MMIO_SHM_LEN_LOW:
      case VIRTIO_MMIO_SHM_LEN_HIGH:
      case VIRTIO_MMIO_SHM_BASE_LOW:
      case VIRTIO_MMIO_SHM_BASE_HIGH:
        // No shared memory regions: Linux takes a length of all ones as "region absent".
        return 0xffffffff;
      case VIRTIO_MMIO_CONFIG_GENERATION:
        return this.configGeneration;
      default:
        return 0;
    }
  }

  write(offset: number, width: AccessWidth, value: number): void {
    if (offset >= VIRTIO_MMIO_CONFIG) {
      this.device.writeConfig(offset - VIRTIO_MMIO_CONFIG, width, value);
      return;
    }
    if (width !== 4 || (offset & 3) !== 0) return;
    value >>>= 0;
    // Guest-controlled: QueueSel may name a queue that does not exist; then queue registers are ignored.
    const q = this.queues[this.queueSel];
    // §4.2.3.2: queue registers are written before QueueReady; changing them under a live queue is ignored.
    const qw = q !== undefined && !q.enabled ? q : undefined;
    switch (offset) {
      case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
        this.deviceFeaturesSel = value;
        return;
      case VIRTIO_MMIO_DRIVER_FEATURES:
        // Features are fixed once FEATURES_OK is set.
        if ((this.status & VIRTIO_CONFIG_S_FEATURES_OK) !== 0) return;
        if (this.driverFeaturesSel === 0) this.driverFeaturesLo = value;
        else if (this.driverFeaturesSel === 1) this.driverFeaturesHi = value;
        return;
      case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
        this.driverFeaturesSel = value;
        return;
      case VIRTIO_MMIO_QUEUE_SEL:
        this.queueSel = value;
        return;
      case VIRTIO_MMIO_QUEUE_NUM:
        if (qw) qw.size = value;
        return;
      case VIRTIO_MMIO_QUEUE_READY:
        if (q === undefined) return;
        if (value === 0) q.disable();
        else if (!q.enabled && !q.enable())
          this.deviceError(`queue ${this.queueSel}: bad size or ring address`);
        return;
      case VIRTIO_MMIO_QUEUE_NOTIFY:
        this.notify(value);
        return;
      case VIRTIO_MMIO_INTERRUPT_ACK:
        this.interruptStatus &= ~value;
        if (this.interruptStatus === 0) this.irq.set(false);
        return;
      case VIRTIO_MMIO_STATUS:
        this.writeStatus(value & 0xff);
        return;
      case VIRTIO_MMIO_QUEUE_DESC_LOW:
        if (qw) qw.descLo = value;
        return;
      case VIRTIO_MMIO_QUEUE_DESC_HIGH:
        if (qw) qw.descHi = value;
        return;
      case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
        if (qw) qw.driverLo = value;
        return;
      case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
        if (qw) qw.driverHi = value;
        return;
      case VIRTIO_MMIO_QUEUE_USED_LOW:
        if (qw) qw.deviceLo = value;
        return;
      case VIRTIO_MMIO_QUEUE_USED_HIGH:
        if (qw) qw.deviceHi = value;
        return;
      default:
        // Read-only registers, SHMSel (there are no shared memory regions) and reserved offsets ignore writes.
        return;
    }
  }

  private notify(index: number): void {
    // Guest-controlled: the queue index; notifications for absent or idle queues are ignored.
    if (!this.active || index >= this.queues.length || !this.queues[index]!.ready) return;
    this.device.onNotify(index);
  }

  private writeStatus(value: number): void {
    if (value === 0) {
      this.reset();
      return;
    }
    const old = this.status;
    // §2.1.2: "The driver MUST NOT clear a device status bit"; a guest that tries keeps the old bits, and
    // DEVICE_NEEDS_RESET belongs to the device.
    let next = old | (value & ~VIRTIO_CONFIG_S_NEEDS_RESET);
    if ((next & VIRTIO_CONFIG_S_FEATURES_OK) !== 0 && (old & VIRTIO_CONFIG_S_FEATURES_OK) === 0) {
      // §2.2.2: the device "MUST NOT" accept features it did not offer; §6.1: a modern device may fail if
      // VIRTIO_F_VERSION_1 is not accepted. The driver then reads FEATURES_OK back as clear.
      const subset =
        (this.driverFeaturesLo & ~this.offeredLo) === 0 && (this.driverFeaturesHi & ~this.offeredHi) === 0;
      const modern = (this.driverFeaturesHi & TRANSPORT_FEATURES_HI) !== 0;
      if (!subset || !modern) next &= ~VIRTIO_CONFIG_S_FEATURES_OK;
    }
    // DRIVER_OK only after FEATURES_OK: this device has no legacy interface.
    if ((next & VIRTIO_CONFIG_S_FEATURES_OK) === 0) next &= ~VIRTIO_CONFIG_S_DRIVER_OK;
    this.status = next;
    if ((next & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && (old & VIRTIO_CONFIG_S_DRIVER_OK) === 0) {
      this.device.activate();
      // Buffers the driver made available before DRIVER_OK are consumed now.
      for (let i = 0; i < this.queues.length; i++)
        if (this.active && this.queues[i]!.ready) this.device.onNotify(i);
    }
  }

  /** Device reset (Status ← 0, §2.4): every register and queue back to its initial value. */
  reset(): void {
    this.status = 0;
    this.deviceFeaturesSel = this.driverFeaturesSel = 0;
    this.driverFeaturesLo = this.driverFeaturesHi = 0;
    this.queueSel = 0;
    this.interruptStatus = 0;
    this.irq.set(false);
    for (const q of this.queues) q.reset();
    this.lastError = "";
    this.device.reset();
  }

  // ---- state ----

  saveState(): VirtioMmioState {
    return {
      version: 1,
      status: this.status,
      deviceFeaturesSel: this.deviceFeaturesSel,
      driverFeaturesSel: this.driverFeaturesSel,
      driverFeaturesLo: this.driverFeaturesLo,
      driverFeaturesHi: this.driverFeaturesHi,
      queueSel: this.queueSel,
      interruptStatus: this.interruptStatus,
      configGeneration: this.configGeneration,
      queues: this.queues.map((q) => q.saveState()),
      device: this.device.saveState(),
    };
  }

  loadState(s: VirtioMmioState): void {
    const c = this.id;
    const u32 = (v: unknown) => typeof v === "number" && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
    checkState(typeof s === "object" && s !== null, c, "not an object");
    checkState(s.version === 1, c, `version ${s.version} is not 1`);
    checkState(u32(s.status) && s.status <= 0xff, c, "status is not a byte");
    for (const f of [
      "deviceFeaturesSel",
      "driverFeaturesSel",
      "driverFeaturesLo",
      "driverFeaturesHi",
      "queueSel",
      "configGeneration",
    ] as const)
      checkState(u32(s[f]), c, `${f} is not a 32-bit value`);
    checkState(u32(s.interruptStatus) && s.interruptStatus <= 3, c, "interruptStatus has unknown bits");
    // Features depend on the host side (a disk offers discard only when its backend can), so a state whose
    // driver accepted a feature this device does not offer would have the guest send requests it refuses.
    checkState(
      (s.status & VIRTIO_CONFIG_S_FEATURES_OK) === 0 ||
        ((s.driverFeaturesLo & ~this.offeredLo) === 0 && (s.driverFeaturesHi & ~this.offeredHi) === 0),
      c,
      "the driver accepted features this device does not offer",
    );
    checkState(
      Array.isArray(s.queues) && s.queues.length === this.queues.length,
      c,
      `expected ${this.queues.length} queues`,
    );
    for (let i = 0; i < this.queues.length; i++)
      this.queues[i]!.validateState(s.queues[i]!, `${c} queue ${i}`);
    // The device validates and loads its part; only if it accepts does the transport change.
    this.device.loadState(s.device);
    this.status = s.status;
    this.deviceFeaturesSel = s.deviceFeaturesSel;
    this.driverFeaturesSel = s.driverFeaturesSel;
    this.driverFeaturesLo = s.driverFeaturesLo;
    this.driverFeaturesHi = s.driverFeaturesHi;
    this.queueSel = s.queueSel;
    this.interruptStatus = s.interruptStatus;
    this.configGeneration = s.configGeneration;
    for (let i = 0; i < this.queues.length; i++) this.queues[i]!.applyState(s.queues[i]!);
    this.lastError = "";
    this.irq.set(this.interruptStatus !== 0);
  }
}
