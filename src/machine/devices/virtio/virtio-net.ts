// A virtio network card (VIRTIO 1.2 §5.1) with one receive and one transmit queue, a MAC address and link
// status, and no offloads: every frame is a whole Ethernet frame of at most 1514 bytes behind a 12-byte
// struct virtio_net_hdr that asks for nothing.

import type { AccessWidth } from "../../bus/mmio-device.ts";
import { MachineError } from "../../base/machine-error.ts";
import type { NetworkPort } from "../../ports.ts";
import { type ComponentState, checkState } from "../../state/stateful.ts";
import { readConfigBytes, type VirtioDevice, type VirtioTransport } from "./virtio-device.ts";
import { VIRTIO_ID_NET } from "./virtio-spec.ts";
import { DescriptorChain } from "./virtqueue.ts";

// §5.1.3 feature bits.
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;

/** §5.1.4 status bit. */
export const VIRTIO_NET_S_LINK_UP = 1;

// §5.1.6 struct virtio_net_hdr fields.
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** §5.1.6: with VIRTIO_F_VERSION_1 the header always has num_buffers: 12 bytes. */
export const VIRTIO_NET_HDR_SIZE = 12;

/** Queue indices (§5.1.2): receiveq1, transmitq1. */
export const VIRTIO_NET_RX = 0;
export const VIRTIO_NET_TX = 1;

/** The smallest and largest Ethernet frame (without FCS) this card carries: a header, at most 1500 bytes. */
export const ETH_MIN_FRAME = 14;
export const ETH_MAX_FRAME = 1514;

const QUEUE_SIZE = 256;

export interface VirtioNetOptions {
  /** The card's MAC address, 6 bytes. */
  readonly mac: Uint8Array;
}

export interface VirtioNetStats {
  txFrames: number;
  txBytes: number;
  txDropped: number;
  rxFrames: number;
  rxBytes: number;
  rxDropped: number;
}

export interface VirtioNetState extends ComponentState {
  readonly version: 1;
}

export class VirtioNet implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_NET;
  readonly featuresLo = ((1 << VIRTIO_NET_F_MAC) | (1 << VIRTIO_NET_F_STATUS)) >>> 0;
  readonly featuresHi = 0;
  readonly queueMaxSizes = [QUEUE_SIZE, QUEUE_SIZE];
  readonly stats: VirtioNetStats = {
    txFrames: 0,
    txBytes: 0,
    txDropped: 0,
    rxFrames: 0,
    rxBytes: 0,
    rxDropped: 0,
  };
  /** Set by the host: the guest posted receive buffers (after a frame found none, or at any refill). */
  onRxSpace: (() => void) | null = null;
  private transport!: VirtioTransport;
  private attached = false;
  private txChain!: DescriptorChain;
  private rxChain!: DescriptorChain;
  /** §5.1.4 struct virtio_net_config: mac[6], le16 status. */
  private readonly config = new Uint8Array(8);
  /** One transmitted frame, header included; handed to the port as a view valid during `send` only. */
  private readonly txBuffer = new Uint8Array(VIRTIO_NET_HDR_SIZE + ETH_MAX_FRAME);
  /** The header written before every received frame: no flags, GSO_NONE, num_buffers 1. */
  private readonly rxHeader = new Uint8Array(VIRTIO_NET_HDR_SIZE);

  constructor(
    private readonly port: NetworkPort,
    options: VirtioNetOptions,
  ) {
    if (!(options.mac instanceof Uint8Array) || options.mac.length !== 6)
      throw new MachineError("bad-config", "a network card's MAC address is 6 bytes");
    if ((options.mac[0]! & 1) !== 0)
      throw new MachineError("bad-config", "a network card's MAC address must be unicast");
    this.config.set(options.mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
    // §5.1.6: "If VIRTIO_NET_F_MRG_RXBUF is not negotiated … num_buffers … MUST be 1" (as QEMU writes it).
    this.rxHeader[10] = 1;
  }

  /** The card's MAC address (a copy). */
  get mac(): Uint8Array {
    return this.config.slice(0, 6);
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
    this.txChain = new DescriptorChain(transport.ram, QUEUE_SIZE);
    this.rxChain = new DescriptorChain(transport.ram, QUEUE_SIZE);
    this.attached = true;
  }

  readConfig(offset: number, width: AccessWidth): number {
    return readConfigBytes(this.config, offset, width);
  }

  writeConfig(): void {
    // mac is writable only through VIRTIO_NET_CTRL_MAC_ADDR_SET (a control queue this card does not have).
  }

  activate(): void {}

  reset(): void {}

  onNotify(index: number): void {
    if (index === VIRTIO_NET_TX) this.transmit();
    else if (index === VIRTIO_NET_RX) this.onRxSpace?.();
  }

  // ---- host → guest ----

  /** Whether a frame given now would find a receive buffer. */
  canReceive(): boolean {
    return this.attached && this.transport.active && this.transport.queue(VIRTIO_NET_RX).hasAvailable();
  }

  /**
   * Host → guest: one Ethernet frame (no virtio header) into the guest's next receive buffer. Returns false
   * when it was dropped (counted): no receive buffer, the card is not running, or not a frame it carries.
   */
  receive(frame: Uint8Array): boolean {
    if (frame.length < ETH_MIN_FRAME || frame.length > ETH_MAX_FRAME || !this.canReceive()) {
      this.stats.rxDropped++;
      return false;
    }
    const q = this.transport.queue(VIRTIO_NET_RX);
    const chain = this.rxChain;
    if (!q.pop(chain)) {
      // The ring was corrupt: the queue is broken and the transport asked for a device reset.
      this.stats.rxDropped++;
      return false;
    }
    // Guest-controlled: the buffer's size. §5.1.6.3.1: without VIRTIO_NET_F_MRG_RXBUF (and without GSO),
    // "the driver SHOULD populate the receive queue(s) with buffers of at least 1526 bytes"; a smaller one
    // is returned empty and the frame dropped.
    const need = VIRTIO_NET_HDR_SIZE + frame.length;
    let ok = chain.writeTotal >= need;
    if (ok) {
      chain.copyTo(0, this.rxHeader, 0, VIRTIO_NET_HDR_SIZE);
      chain.copyTo(VIRTIO_NET_HDR_SIZE, frame, 0, frame.length);
    }
    q.push(chain.head, ok ? need : 0);
    this.transport.usedBuffers(VIRTIO_NET_RX);
    if (ok) {
      this.stats.rxFrames++;
      this.stats.rxBytes += frame.length;
    } else this.stats.rxDropped++;
    return ok;
  }

  // ---- guest → host ----

  private transmit(): void {
    const q = this.transport.queue(VIRTIO_NET_TX);
    const chain = this.txChain;
    const buf = this.txBuffer;
    let any = false;
    while (q.pop(chain)) {
      any = true;
      const total = chain.readTotal;
      // Guest-controlled: the chain's size, header fields. A frame that is too short or too long, or a
      // header asking for checksum or segmentation offloads this card never offered, is dropped.
      if (total < VIRTIO_NET_HDR_SIZE + ETH_MIN_FRAME || total > VIRTIO_NET_HDR_SIZE + ETH_MAX_FRAME) {
        this.stats.txDropped++;
        q.push(chain.head, 0);
        continue;
      }
      chain.copyFrom(0, buf, 0, total);
      const flags = buf[0]!;
      const gsoType = buf[1]!;
      q.push(chain.head, 0);
      if ((flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0 || gsoType !== VIRTIO_NET_HDR_GSO_NONE) {
        this.stats.txDropped++;
        continue;
      }
      const frame = buf.subarray(VIRTIO_NET_HDR_SIZE, total);
      this.stats.txFrames++;
      this.stats.txBytes += frame.length;
      this.port.send(frame);
    }
    if (any) this.transport.usedBuffers(VIRTIO_NET_TX);
  }

  // ---- state ----

  saveState(): VirtioNetState {
    // Everything else (rings, negotiated features) is the transport's; frames in flight are not kept.
    return { version: 1 };
  }

  loadState(state: ComponentState): void {
    checkState(typeof state === "object" && state !== null, "virtio-net", "not an object");
    checkState(state.version === 1, "virtio-net", `version ${state.version} is not 1`);
  }
}
