// The contract between a virtio transport and a virtio device type (VIRTIO 1.2 §2 "Basic Facilities of a
// Virtio Device"): the device supplies id, features, queues and config space; the transport owns registers.

import type { GuestRam } from "../../bus/guest-ram.ts";
import type { AccessWidth } from "../../bus/mmio-device.ts";
import type { ComponentState, Stateful } from "../../state/stateful.ts";
import type { Virtqueue } from "./virtqueue.ts";

/** What a device may ask of its transport. */
export interface VirtioTransport {
  readonly ram: GuestRam;
  /** Queue `index` (0 ≤ index < queueMaxSizes.length). */
  queue(index: number): Virtqueue;
  /** Whether the driver accepted feature `bit` (0..63) when it set FEATURES_OK. */
  negotiated(bit: number): boolean;
  /** DRIVER_OK is set and DEVICE_NEEDS_RESET is not: the device may consume buffers and notify. */
  readonly active: boolean;
  /** Sends a used buffer notification for queue `index` unless the driver suppressed it. */
  usedBuffers(index: number): void;
  /** The device changed its config space: bumps ConfigGeneration and sends a config change notification. */
  configChanged(): void;
  /** The guest broke a rule the device cannot recover from: sets DEVICE_NEEDS_RESET (§2.1.2). */
  deviceError(reason: string): void;
}

/** A device type plugged into a transport (virtio-mmio today, perhaps virtio-pci later). */
export interface VirtioDevice extends Stateful<ComponentState> {
  /** §5 device id (VIRTIO_ID_BLOCK, …). */
  readonly deviceId: number;
  /** Device-specific feature bits 0..31 and 32..63. The transport adds VIRTIO_F_VERSION_1 and
   *  VIRTIO_F_INDIRECT_DESC itself. */
  readonly featuresLo: number;
  readonly featuresHi: number;
  /** QueueNumMax of each queue, each a power of two ≤ VIRTQUEUE_MAX_SIZE; the length is the queue count. */
  readonly queueMaxSizes: readonly number[];
  /** Called once by the transport's constructor. */
  attach(transport: VirtioTransport): void;
  /** Device config space (offset from its start); unknown bytes read as 0, writes there are ignored. */
  readConfig(offset: number, width: AccessWidth): number;
  writeConfig(offset: number, width: AccessWidth, value: number): void;
  /** The driver set DRIVER_OK; every ready queue gets an onNotify right after. */
  activate(): void;
  /** The driver notified queue `index` (which is ready, with the device active). */
  onNotify(index: number): void;
  /** Device reset (Status ← 0): forget every request; late completions must not touch RAM or rings. */
  reset(): void;
}

/** Little-endian read of `width` bytes at `offset` of a config space; 0 outside it. */
export function readConfigBytes(config: Uint8Array, offset: number, width: AccessWidth): number {
  if (offset < 0 || offset + width > config.length) return 0;
  let v = 0;
  for (let i = width - 1; i >= 0; i--) v = v * 256 + config[offset + i]!;
  return v;
}
