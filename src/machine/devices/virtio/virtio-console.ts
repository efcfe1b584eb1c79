// A virtio console (VIRTIO 1.2 §5.3) with VIRTIO_CONSOLE_F_MULTIPORT: port 0 is the guest's console
// (hvc0), further ports are named character devices (/dev/vportNpM), set up over the control queues.

import type { AccessWidth } from "../../bus/mmio-device.ts";
import type { CharSink } from "../../ports.ts";
import { type ComponentState, checkState } from "../../state/stateful.ts";
import { readConfigBytes, type VirtioDevice, type VirtioTransport } from "./virtio-device.ts";
import { VIRTIO_ID_CONSOLE } from "./virtio-spec.ts";
import { DescriptorChain } from "./virtqueue.ts";

// §5.3.3 feature bits.
export const VIRTIO_CONSOLE_F_SIZE = 0;
export const VIRTIO_CONSOLE_F_MULTIPORT = 1;

// §5.3.6.2 control events.
export const VIRTIO_CONSOLE_DEVICE_READY = 0;
export const VIRTIO_CONSOLE_DEVICE_ADD = 1;
export const VIRTIO_CONSOLE_DEVICE_REMOVE = 2;
export const VIRTIO_CONSOLE_PORT_READY = 3;
export const VIRTIO_CONSOLE_CONSOLE_PORT = 4;
export const VIRTIO_CONSOLE_RESIZE = 5;
export const VIRTIO_CONSOLE_PORT_OPEN = 6;
export const VIRTIO_CONSOLE_PORT_NAME = 7;

/** Queue indices (§5.3.2): port 0 receive/transmit, control receive/transmit, then ports 1… in pairs. */
export const VIRTIO_CONSOLE_CONTROL_RX = 2;
export const VIRTIO_CONSOLE_CONTROL_TX = 3;

const QUEUE_SIZE = 64;
/** struct virtio_console_control: le32 id, le16 event, le16 value. */
const CONTROL_BYTES = 8;
/** Guest→host bytes taken from one buffer chain at most (Linux writes at most 32 KiB per chain). */
const MAX_TX_BYTES = 65536;
/** Host→guest bytes a port holds while the guest is not reading; more is refused. */
export const VIRTIO_CONSOLE_MAX_PENDING = 1 << 20;
/** Control messages waiting for control receive buffers; a guest that never posts any cannot grow this. */
const MAX_CONTROL_PENDING = 256;

/** A port beyond port 0. */
export interface VirtioConsolePortConfig {
  /** Sent with PORT_NAME; the guest shows it as /sys/class/virtio-ports/vportNpM/name. */
  readonly name: string;
  /** Where the guest's bytes for this port go. */
  readonly sink: CharSink;
  /** Whether a host program is connected at start (PORT_OPEN to the guest); default true. */
  readonly hostConnected?: boolean;
}

export interface VirtioConsoleOptions {
  /** Ports 1, 2, … in order. */
  readonly ports?: readonly VirtioConsolePortConfig[];
  /** The guest opened (true) or closed (false) port `port` (0 is the console). */
  readonly onOpen?: (port: number, open: boolean) => void;
}

export interface VirtioConsolePortState {
  readonly guestReady: boolean;
  readonly guestOpen: boolean;
  readonly hostConnected: boolean;
  /** Host→guest bytes not delivered yet. */
  readonly pending: Uint8Array;
}

export interface VirtioConsoleControlState {
  readonly id: number;
  readonly event: number;
  readonly value: number;
}

export interface VirtioConsoleState extends ComponentState {
  readonly version: 1;
  readonly deviceReady: boolean;
  readonly ports: readonly VirtioConsolePortState[];
  /** Control messages waiting for a control receive buffer, oldest first. */
  readonly control: readonly VirtioConsoleControlState[];
}

/** UTF-8 bytes of `s` (the machine layer has no TextEncoder without DOM or Node types). */
function utf8(s: string): Uint8Array {
  const out: number[] = [];
  for (const ch of s) {
    const c = ch.codePointAt(0)!;
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

class ConsolePort {
  guestReady = false;
  guestOpen = false;
  hostConnected: boolean;
  /** Host→guest bytes: chunks, the first consumed from `head`. */
  chunks: Uint8Array[] = [];
  head = 0;
  pendingBytes = 0;
  readonly nameBytes: Uint8Array | null;

  constructor(
    readonly id: number,
    readonly sink: CharSink,
    readonly name: string | null,
    hostConnected: boolean,
  ) {
    this.hostConnected = hostConnected;
    this.nameBytes = name === null ? null : utf8(name);
  }

  get rxQueue(): number {
    return this.id === 0 ? 0 : 2 + 2 * this.id;
  }

  pendingCopy(): Uint8Array {
    const out = new Uint8Array(this.pendingBytes);
    let at = 0;
    this.chunks.forEach((c, i) => {
      const part = i === 0 ? c.subarray(this.head) : c;
      out.set(part, at);
      at += part.length;
    });
    return out;
  }
}

export class VirtioConsole implements VirtioDevice {
  readonly deviceId = VIRTIO_ID_CONSOLE;
  readonly featuresLo = 1 << VIRTIO_CONSOLE_F_MULTIPORT;
  readonly featuresHi = 0;
  readonly queueMaxSizes: readonly number[];
  private transport!: VirtioTransport;
  private attached = false;
  /**
   * One descriptor chain per queue: a sink's write may call `receive` (the host answers at once) while
   * `transmit` still holds its chain, so two queues never share one.
   */
  private chains: DescriptorChain[] = [];
  private readonly config = new Uint8Array(12);
  private readonly ports: ConsolePort[];
  private readonly onOpen: (port: number, open: boolean) => void;
  private deviceReady = false;
  private control: VirtioConsoleControlState[] = [];
  private readonly message = new Uint8Array(CONTROL_BYTES);
  private readonly messageView = new DataView(this.message.buffer);

  /** @param console where the guest's console (port 0, hvc0) output goes */
  constructor(console: CharSink, options: VirtioConsoleOptions = {}) {
    const extra = options.ports ?? [];
    this.ports = [
      new ConsolePort(0, console, null, true),
      ...extra.map((p, i) => new ConsolePort(i + 1, p.sink, p.name, p.hostConnected ?? true)),
    ];
    this.onOpen = options.onOpen ?? (() => {});
    // §5.3.4 struct virtio_console_config: cols, rows (le16), max_nr_ports (le32), emerg_wr (le32).
    new DataView(this.config.buffer).setUint32(4, this.ports.length, true);
    this.queueMaxSizes = new Array(2 * (this.ports.length + 1)).fill(QUEUE_SIZE);
  }

  get portCount(): number {
    return this.ports.length;
  }

  attach(transport: VirtioTransport): void {
    this.transport = transport;
    this.chains = this.queueMaxSizes.map(() => new DescriptorChain(transport.ram, QUEUE_SIZE));
    this.attached = true;
  }

  readConfig(offset: number, width: AccessWidth): number {
    return readConfigBytes(this.config, offset, width);
  }

  writeConfig(): void {
    // emerg_wr is writable only with VIRTIO_CONSOLE_F_EMERG_WRITE, which this device does not offer.
  }

  private get multiport(): boolean {
    return this.transport.negotiated(VIRTIO_CONSOLE_F_MULTIPORT);
  }

  activate(): void {
    // Without MULTIPORT, port 0 is the console and is open as soon as the driver is (§5.3.6).
    if (!this.multiport) this.setGuestOpen(this.ports[0]!, true);
  }

  reset(): void {
    for (const p of this.ports) {
      p.guestReady = false;
      this.setGuestOpen(p, false);
    }
    this.deviceReady = false;
    this.control = [];
  }

  // ---- host side ----

  /**
   * Host→guest bytes for `port`, delivered when the guest has the port open and has posted receive
   * buffers. Returns how many bytes were accepted (fewer when VIRTIO_CONSOLE_MAX_PENDING would be passed).
   */
  receive(port: number, bytes: Uint8Array): number {
    const p = this.ports[port];
    if (p === undefined) return 0;
    const n = Math.min(bytes.length, VIRTIO_CONSOLE_MAX_PENDING - p.pendingBytes);
    if (n <= 0) return 0;
    p.chunks.push(bytes.slice(0, n));
    p.pendingBytes += n;
    this.deliver(p);
    return n;
  }

  /** A host program connected to (or left) `port`: tells the guest with PORT_OPEN. */
  setHostConnected(port: number, connected: boolean): void {
    const p = this.ports[port];
    if (p === undefined || p.hostConnected === connected) return;
    p.hostConnected = connected;
    if (p.guestReady) this.sendControl(p.id, VIRTIO_CONSOLE_PORT_OPEN, connected ? 1 : 0);
  }

  /** Whether the guest has `port` open (its console, or a process holding /dev/vportNpM). */
  isGuestOpen(port: number): boolean {
    return this.ports[port]?.guestOpen ?? false;
  }

  /** The port's id with this name, or -1. */
  portNamed(name: string): number {
    return this.ports.findIndex((p) => p.name === name);
  }

  private setGuestOpen(p: ConsolePort, open: boolean): void {
    if (p.guestOpen === open) return;
    p.guestOpen = open;
    this.onOpen(p.id, open);
  }

  // ---- queues ----

  onNotify(index: number): void {
    if (index === VIRTIO_CONSOLE_CONTROL_RX) {
      this.flushControl();
      return;
    }
    if (index === VIRTIO_CONSOLE_CONTROL_TX) {
      this.readControl();
      return;
    }
    const port = index < 2 ? 0 : (index - 2) >> 1;
    const p = this.ports[port];
    if (p === undefined) return;
    if ((index & 1) === 0) this.deliver(p);
    else this.transmit(p, index);
  }

  /** Guest→host: every chain on the port's transmit queue goes to its sink. */
  private transmit(p: ConsolePort, index: number): void {
    const q = this.transport.queue(index);
    const chain = this.chains[index]!;
    let any = false;
    while (q.pop(chain)) {
      // Guest-controlled: the chain's size; at most MAX_TX_BYTES of it reach the host.
      const n = Math.min(chain.readTotal, MAX_TX_BYTES);
      if (n > 0) {
        const bytes = new Uint8Array(n);
        chain.copyFrom(0, bytes, 0, n);
        p.sink.write(bytes);
      }
      q.push(chain.head, 0);
      any = true;
    }
    if (any) this.transport.usedBuffers(index);
  }

  /** Host→guest: pending bytes into the port's receive buffers, if the guest is listening. */
  private deliver(p: ConsolePort): void {
    if (p.pendingBytes === 0 || !this.attached || !this.transport.active || !p.guestOpen) return;
    const index = p.rxQueue;
    const q = this.transport.queue(index);
    const chain = this.chains[index]!;
    let any = false;
    while (p.pendingBytes > 0 && q.pop(chain)) {
      let written = 0;
      while (p.chunks.length > 0 && written < chain.writeTotal) {
        const c = p.chunks[0]!;
        const n = chain.copyTo(written, c, p.head, c.length - p.head);
        written += n;
        p.head += n;
        if (p.head === c.length) {
          p.chunks.shift();
          p.head = 0;
        }
        if (n === 0) break;
      }
      p.pendingBytes -= written;
      q.push(chain.head, written);
      any = true;
    }
    if (any) this.transport.usedBuffers(index);
  }

  /** Control messages from the guest (§5.3.6.2). */
  private readControl(): void {
    const q = this.transport.queue(VIRTIO_CONSOLE_CONTROL_TX);
    const chain = this.chains[VIRTIO_CONSOLE_CONTROL_TX]!;
    const v = this.messageView;
    let any = false;
    while (q.pop(chain)) {
      // Guest-controlled: a message shorter than the header is ignored.
      const complete = chain.copyFrom(0, this.message, 0, CONTROL_BYTES) === CONTROL_BYTES;
      q.push(chain.head, 0);
      any = true;
      if (complete) this.handleControl(v.getUint32(0, true), v.getUint16(4, true), v.getUint16(6, true));
    }
    if (any) this.transport.usedBuffers(VIRTIO_CONSOLE_CONTROL_TX);
  }

  private handleControl(id: number, event: number, value: number): void {
    if (!this.multiport) return;
    if (event === VIRTIO_CONSOLE_DEVICE_READY) {
      // "The driver … sends a VIRTIO_CONSOLE_DEVICE_READY message … The device … sends
      // VIRTIO_CONSOLE_DEVICE_ADD for each port" (value 0 means the driver failed to set up).
      if (value !== 1 || this.deviceReady) return;
      this.deviceReady = true;
      for (const p of this.ports) this.sendControl(p.id, VIRTIO_CONSOLE_DEVICE_ADD, 0);
      return;
    }
    // Guest-controlled: the port id; unknown ports are ignored.
    const p = this.ports[id];
    if (p === undefined) return;
    if (event === VIRTIO_CONSOLE_PORT_READY) {
      if (value !== 1 || p.guestReady) return;
      p.guestReady = true;
      if (p.id === 0) this.sendControl(0, VIRTIO_CONSOLE_CONSOLE_PORT, 1);
      if (p.nameBytes !== null) this.sendControl(p.id, VIRTIO_CONSOLE_PORT_NAME, 0);
      if (p.hostConnected) this.sendControl(p.id, VIRTIO_CONSOLE_PORT_OPEN, 1);
    } else if (event === VIRTIO_CONSOLE_PORT_OPEN) {
      this.setGuestOpen(p, value !== 0);
      this.deliver(p);
    }
  }

  private sendControl(id: number, event: number, value: number): void {
    if (this.control.length < MAX_CONTROL_PENDING) this.control.push({ id, event, value });
    this.flushControl();
  }

  /** Pending control messages into the guest's control receive buffers. */
  private flushControl(): void {
    if (this.control.length === 0 || !this.attached || !this.transport.active) return;
    const q = this.transport.queue(VIRTIO_CONSOLE_CONTROL_RX);
    const chain = this.chains[VIRTIO_CONSOLE_CONTROL_RX]!;
    const v = this.messageView;
    let any = false;
    while (this.control.length > 0 && q.pop(chain)) {
      any = true;
      // Guest-controlled: a buffer too small for the header is returned empty; the message waits.
      if (chain.writeTotal < CONTROL_BYTES) {
        q.push(chain.head, 0);
        continue;
      }
      const m = this.control.shift()!;
      v.setUint32(0, m.id, true);
      v.setUint16(4, m.event, true);
      v.setUint16(6, m.value, true);
      let written = chain.copyTo(0, this.message, 0, CONTROL_BYTES);
      const name = m.event === VIRTIO_CONSOLE_PORT_NAME ? this.ports[m.id]?.nameBytes : null;
      if (name) written += chain.copyTo(CONTROL_BYTES, name, 0, name.length);
      q.push(chain.head, written);
    }
    if (any) this.transport.usedBuffers(VIRTIO_CONSOLE_CONTROL_RX);
  }

  // ---- state ----

  saveState(): VirtioConsoleState {
    return {
      version: 1,
      deviceReady: this.deviceReady,
      ports: this.ports.map((p) => ({
        guestReady: p.guestReady,
        guestOpen: p.guestOpen,
        hostConnected: p.hostConnected,
        pending: p.pendingCopy(),
      })),
      control: this.control.map((m) => ({ ...m })),
    };
  }

  loadState(state: ComponentState): void {
    const s = state as VirtioConsoleState;
    const c = "virtio-console";
    checkState(typeof s === "object" && s !== null, c, "not an object");
    checkState(s.version === 1, c, `version ${s.version} is not 1`);
    checkState(typeof s.deviceReady === "boolean", c, "deviceReady is not a boolean");
    checkState(
      Array.isArray(s.ports) && s.ports.length === this.ports.length,
      c,
      `expected ${this.ports.length} ports`,
    );
    for (const p of s.ports) {
      checkState(typeof p === "object" && p !== null, c, "a port is not an object");
      for (const f of ["guestReady", "guestOpen", "hostConnected"] as const)
        checkState(typeof p[f] === "boolean", c, `port ${f} is not a boolean`);
      checkState(
        p.pending instanceof Uint8Array && p.pending.length <= VIRTIO_CONSOLE_MAX_PENDING,
        c,
        "port pending bytes are not a byte array of allowed size",
      );
    }
    checkState(
      Array.isArray(s.control) && s.control.length <= MAX_CONTROL_PENDING,
      c,
      "control is not a list of allowed size",
    );
    for (const m of s.control)
      checkState(
        typeof m === "object" &&
          m !== null &&
          Number.isInteger(m.id) &&
          m.id >= 0 &&
          m.id < this.ports.length &&
          Number.isInteger(m.event) &&
          m.event >= 0 &&
          m.event <= 0xffff &&
          Number.isInteger(m.value) &&
          m.value >= 0 &&
          m.value <= 0xffff,
        c,
        "a control message is malformed",
      );
    this.deviceReady = s.deviceReady;
    this.ports.forEach((p, i) => {
      const ps = s.ports[i]!;
      p.guestReady = ps.guestReady;
      p.guestOpen = ps.guestOpen;
      p.hostConnected = ps.hostConnected;
      p.chunks = ps.pending.length > 0 ? [ps.pending.slice()] : [];
      p.head = 0;
      p.pendingBytes = ps.pending.length;
    });
    this.control = s.control.map((m) => ({ id: m.id, event: m.event, value: m.value }));
  }
}
