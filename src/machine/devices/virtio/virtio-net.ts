// A virtio network card (VIRTIO 1.2 §5.1) with one receive and one transmit queue, a MAC address, link
// status, an MTU, checksum offloads both ways and mergeable receive buffers, and no segmentation offloads:
// every frame is a whole Ethernet frame of at most MTU + 14 bytes behind a 12-byte struct virtio_net_hdr.

import type { AccessWidth } from "../../bus/mmio-device.ts";
import { MachineError } from "../../base/machine-error.ts";
import type { NetworkPort } from "../../ports.ts";
import { type ComponentState, checkState } from "../../state/stateful.ts";
import { completeChecksum, transportChecksumValid } from "./internet-checksum.ts";
import { readConfigBytes, type VirtioDevice, type VirtioTransport } from "./virtio-device.ts";
import { VIRTIO_ID_NET } from "./virtio-spec.ts";
import { DescriptorChain } from "./virtqueue.ts";

// §5.1.3 feature bits.
export const VIRTIO_NET_F_CSUM = 0;
export const VIRTIO_NET_F_GUEST_CSUM = 1;
export const VIRTIO_NET_F_MTU = 3;
export const VIRTIO_NET_F_MAC = 5;
export const VIRTIO_NET_F_MRG_RXBUF = 15;
export const VIRTIO_NET_F_STATUS = 16;

/** §5.1.4 status bit. */
export const VIRTIO_NET_S_LINK_UP = 1;

// §5.1.6 struct virtio_net_hdr fields.
export const VIRTIO_NET_HDR_F_NEEDS_CSUM = 1;
export const VIRTIO_NET_HDR_F_DATA_VALID = 2;
export const VIRTIO_NET_HDR_GSO_NONE = 0;
/** §5.1.6: with VIRTIO_F_VERSION_1 the header always has num_buffers: 12 bytes. */
export const VIRTIO_NET_HDR_SIZE = 12;

/** Queue indices (§5.1.2): receiveq1, transmitq1. */
export const VIRTIO_NET_RX = 0;
export const VIRTIO_NET_TX = 1;

/** The smallest Ethernet frame (without FCS) a card carries: a header. */
export const ETH_MIN_FRAME = 14;
export const ETH_HEADER = 14;
/** The default MTU (Ethernet's), and the frame it makes: a header and at most 1500 bytes. */
export const ETH_MTU = 1500;
export const ETH_MAX_FRAME = ETH_HEADER + ETH_MTU;
/** The MTUs a card may have: IPv4's least (RFC 791's 68) to IP's largest packet. */
export const MIN_MTU = 68;
export const MAX_MTU = 65535;

const QUEUE_SIZE = 256;

export interface VirtioNetOptions {
  /** The card's MAC address, 6 bytes. */
  readonly mac: Uint8Array;
  /** The largest IP packet the card carries (VIRTIO_NET_F_MTU), MIN_MTU..MAX_MTU; default ETH_MTU. Frames
   *  longer than mtu + 14 are dropped both ways. */
  readonly mtu?: number;
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
  // Checksums cost the emulated guest a loop over every byte it sends and receives; done here they cost
  // the host a fraction of that. The guest's cost is mostly per frame, not per byte (bench/net.ts): a large
  // MTU (VIRTIO_NET_F_MTU sets the guest's) carries the same bytes in fewer frames, and mergeable receive
  // buffers let Linux receive them into page-sized buffers instead of 64 KiB ones.
  readonly featuresLo =
    ((1 << VIRTIO_NET_F_CSUM) |
      (1 << VIRTIO_NET_F_GUEST_CSUM) |
      (1 << VIRTIO_NET_F_MTU) |
      (1 << VIRTIO_NET_F_MAC) |
      (1 << VIRTIO_NET_F_MRG_RXBUF) |
      (1 << VIRTIO_NET_F_STATUS)) >>>
    0;
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
  /** §5.1.4 struct virtio_net_config: mac[6], le16 status, le16 max_virtqueue_pairs, le16 mtu. */
  private readonly config = new Uint8Array(12);
  /** The largest frame the card carries: its MTU and an Ethernet header. */
  readonly maxFrame: number;
  /** One transmitted frame, header included; handed to the port as a view valid during `send` only. */
  private readonly txBuffer: Uint8Array;
  /** The header written before every received frame: flags, GSO_NONE, num_buffers. */
  private readonly rxHeader = new Uint8Array(VIRTIO_NET_HDR_SIZE);

  constructor(
    private readonly port: NetworkPort,
    options: VirtioNetOptions,
  ) {
    if (!(options.mac instanceof Uint8Array) || options.mac.length !== 6)
      throw new MachineError("bad-config", "a network card's MAC address is 6 bytes");
    if ((options.mac[0]! & 1) !== 0)
      throw new MachineError("bad-config", "a network card's MAC address must be unicast");
    const mtu = options.mtu ?? ETH_MTU;
    if (!Number.isInteger(mtu) || mtu < MIN_MTU || mtu > MAX_MTU)
      throw new MachineError("bad-config", `a network card's MTU is ${MIN_MTU}..${MAX_MTU}, not ${mtu}`);
    this.maxFrame = ETH_HEADER + mtu;
    this.txBuffer = new Uint8Array(VIRTIO_NET_HDR_SIZE + this.maxFrame);
    this.config.set(options.mac, 0);
    this.config[6] = VIRTIO_NET_S_LINK_UP;
    // max_virtqueue_pairs: 1 (only meaningful with VIRTIO_NET_F_MQ, which is not offered; QEMU says 1 too).
    this.config[8] = 1;
    this.config[10] = mtu & 0xff;
    this.config[11] = mtu >>> 8;
  }

  /** The card's MTU. */
  get mtu(): number {
    return this.maxFrame - ETH_HEADER;
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

  /**
   * Whether a frame of `length` bytes given now would be taken: it finds receive buffers (with mergeable
   * buffers: enough of them to hold it), or never could (then `receive` drops it). False while the card is
   * not running.
   */
  canReceive(length = ETH_MIN_FRAME): boolean {
    if (!this.attached || !this.transport.active) return false;
    // A frame the card never carries is taken and dropped at once, whatever the buffers.
    if (length < ETH_MIN_FRAME || length > this.maxFrame) return true;
    if (!this.transport.negotiated(VIRTIO_NET_F_MRG_RXBUF))
      return this.transport.queue(VIRTIO_NET_RX).hasAvailable();
    return this.mergeableBuffersFor(VIRTIO_NET_HDR_SIZE + length) !== 0;
  }

  /**
   * With VIRTIO_NET_F_MRG_RXBUF: how many of the available receive buffers, in order, hold `need` bytes;
   * 0 when the guest has not posted enough yet; -1 when it never will (a full ring of them holds less, or
   * the first cannot hold the header) or the ring is corrupt.
   */
  private mergeableBuffersFor(need: number): number {
    const q = this.transport.queue(VIRTIO_NET_RX);
    const n = q.availableCount();
    const chain = this.rxChain;
    let total = 0;
    for (let k = 0; k < n; k++) {
      if (!q.peek(k, chain)) return -1;
      // Guest-controlled: every buffer's size. §5.1.6.3.1: with VIRTIO_NET_F_MRG_RXBUF "each buffer MUST
      // be at least the size of the struct virtio_net_hdr".
      if (k === 0 && chain.writeTotal < VIRTIO_NET_HDR_SIZE) return -1;
      total += chain.writeTotal;
      if (total >= need) return k + 1;
    }
    return n === q.size ? -1 : 0;
  }

  /**
   * Host → guest: one Ethernet frame (no virtio header) into the guest's next receive buffer (or buffers,
   * with mergeable buffers). Returns false when it was dropped (counted): no receive space, the card is not
   * running, or not a frame it carries.
   */
  receive(frame: Uint8Array): boolean {
    if (
      frame.length < ETH_MIN_FRAME ||
      frame.length > this.maxFrame ||
      !this.attached ||
      !this.transport.active
    )
      return this.dropRx();
    const q = this.transport.queue(VIRTIO_NET_RX);
    const chain = this.rxChain;
    const need = VIRTIO_NET_HDR_SIZE + frame.length;
    const mergeable = this.transport.negotiated(VIRTIO_NET_F_MRG_RXBUF);
    // §5.1.6: "If VIRTIO_NET_F_MRG_RXBUF is not negotiated … num_buffers … MUST be 1" (as QEMU writes it).
    let buffers = 1;
    if (mergeable) {
      buffers = this.mergeableBuffersFor(need);
      if (buffers === 0) return this.dropRx();
    }
    // The ring was corrupt when this fails: the queue is broken and the transport asked for a device reset.
    if (!q.pop(chain)) return this.dropRx();
    // Guest-controlled: the buffer's size. §5.1.6.3.1: without VIRTIO_NET_F_MRG_RXBUF (and without GSO),
    // "the driver SHOULD populate the receive queue(s) with buffers of at least 1526 bytes"; a smaller one
    // is returned empty and the frame dropped, as is the first of mergeable buffers that can never do.
    if (buffers < 0 || (!mergeable && chain.writeTotal < need)) {
      q.push(chain.head, 0);
      this.transport.usedBuffers(VIRTIO_NET_RX);
      return this.dropRx();
    }
    // §5.1.6.4: with VIRTIO_NET_F_GUEST_CSUM the device may set DATA_VALID, "the checksum … has been
    // validated": only for a TCP or UDP segment whose checksum was checked right here.
    this.rxHeader[0] =
      this.transport.negotiated(VIRTIO_NET_F_GUEST_CSUM) && transportChecksumValid(frame)
        ? VIRTIO_NET_HDR_F_DATA_VALID
        : 0;
    this.rxHeader[10] = buffers & 0xff;
    this.rxHeader[11] = buffers >>> 8;
    chain.copyTo(0, this.rxHeader, 0, VIRTIO_NET_HDR_SIZE);
    let done = chain.copyTo(VIRTIO_NET_HDR_SIZE, frame, 0, frame.length);
    q.push(chain.head, VIRTIO_NET_HDR_SIZE + done);
    // The buffers were counted above; each is returned as soon as it is filled (the guest reads none before
    // the interrupt below, and reads num_buffers entries from the first).
    for (let i = 1; i < buffers; i++) {
      if (!q.pop(chain)) return this.dropRx();
      const n = chain.copyTo(0, frame, done, frame.length - done);
      q.push(chain.head, n);
      done += n;
    }
    this.transport.usedBuffers(VIRTIO_NET_RX);
    this.stats.rxFrames++;
    this.stats.rxBytes += frame.length;
    return true;
  }

  private dropRx(): false {
    this.stats.rxDropped++;
    return false;
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
      if (total < VIRTIO_NET_HDR_SIZE + ETH_MIN_FRAME || total > VIRTIO_NET_HDR_SIZE + this.maxFrame) {
        this.stats.txDropped++;
        q.push(chain.head, 0);
        continue;
      }
      chain.copyFrom(0, buf, 0, total);
      const flags = buf[0]!;
      const gsoType = buf[1]!;
      q.push(chain.head, 0);
      const frame = buf.subarray(VIRTIO_NET_HDR_SIZE, total);
      // §5.1.6.2.1: "The driver MUST NOT set the VIRTIO_NET_HDR_F_NEEDS_CSUM bit if
      // VIRTIO_NET_F_CSUM has not been negotiated"; csum_start and csum_offset must place the field inside
      // the frame. No segmentation offload was offered, so gso_type must be NONE.
      const needsCsum = (flags & VIRTIO_NET_HDR_F_NEEDS_CSUM) !== 0;
      if (
        gsoType !== VIRTIO_NET_HDR_GSO_NONE ||
        (needsCsum &&
          (!this.transport.negotiated(VIRTIO_NET_F_CSUM) ||
            !completeChecksum(frame, buf[6]! | (buf[7]! << 8), buf[8]! | (buf[9]! << 8))))
      ) {
        this.stats.txDropped++;
        continue;
      }
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
