// The switching logic of a private network (no sockets, no processes: network-switch-main.ts runs it): an
// Ethernet switch whose ports are the network's cards, each bound to its own MAC, that forwards unicast
// only to the port owning the destination, floods broadcast and multicast under a per-port token bucket,
// and answers DHCP (RFC 2131) and ARP (RFC 826) for its own address (.1) itself. Frames come from guests,
// so every field is hostile: a frame is dropped, and counted, never thrown on.

import type { SwitchPortStats } from "../api/schemas/network-schemas.ts";
import { gatewayOf, type Ipv4Subnet, maskOf, parseIpv4 } from "./ipv4-subnet.ts";

/** IEEE 802.3: a frame without FCS is 14 bytes of header plus 46-1500 bytes of payload (shorter is padded). */
export const MIN_FRAME = 14;
export const MAX_FRAME = 1514;
const ETHERTYPE_IPV4 = 0x0800;
const ETHERTYPE_ARP = 0x0806;
const IPPROTO_UDP = 17;
const DHCP_SERVER_PORT = 67;
const DHCP_CLIENT_PORT = 68;
/** RFC 2131 section 3: the magic cookie opening the options field. */
const DHCP_MAGIC_COOKIE = 0x63825363;
const DHCPDISCOVER = 1;
const DHCPOFFER = 2;
const DHCPREQUEST = 3;
const DHCPACK = 5;
const DHCPNAK = 6;
/** RFC 2132 option codes. */
const OPT_PAD = 0;
const OPT_SUBNET_MASK = 1;
const OPT_REQUESTED_ADDRESS = 50;
const OPT_LEASE_TIME = 51;
const OPT_MESSAGE_TYPE = 53;
const OPT_SERVER_ID = 54;
const OPT_RENEWAL_TIME = 58;
const OPT_REBINDING_TIME = 59;
const OPT_END = 255;
/** BOOTP's fixed part (RFC 951) before the options. */
const BOOTP_FIXED = 236;
/** The switch's own MAC: locally administered, never a card's (cards are 02:xx with random bytes). */
export const SWITCH_MAC = Uint8Array.of(0x02, 0x74, 0x73, 0x76, 0x6d, 0x01);

export interface SwitchConfig {
  readonly subnet: Ipv4Subnet;
  /** DHCP lease (seconds). */
  readonly leaseSeconds: number;
  /** Broadcast/multicast frames a port may flood per second, and its burst. */
  readonly floodRate: number;
  readonly floodBurst: number;
  /** Milliseconds, monotonic (the token buckets). */
  readonly now: () => number;
}

export const DEFAULT_SWITCH_CONFIG = { leaseSeconds: 3600, floodRate: 200, floodBurst: 400 } as const;

/** Where a port's frames go: false when its output queue is full (the frame is dropped, counted). */
export type PortSink = (frame: Uint8Array) => boolean;

export class SwitchPort {
  readonly stats: SwitchPortStats;
  /** The MAC as a number (48 bits fit a double exactly): compared per frame without allocating. */
  readonly macKey: number;
  readonly ipv4: number;
  tokens: number;
  lastRefill: number;

  constructor(
    readonly vmName: string,
    readonly mac: Uint8Array,
    ipv4: string,
    readonly sink: PortSink,
    burst: number,
    now: number,
  ) {
    this.macKey = macKeyAt(mac, 0);
    this.ipv4 = parseIpv4(ipv4) ?? 0;
    this.tokens = burst;
    this.lastRefill = now;
    this.stats = {
      vmName,
      mac: formatMac(mac),
      rxFrames: 0,
      txFrames: 0,
      forgedDropped: 0,
      floodDropped: 0,
      queueDropped: 0,
      unknownDropped: 0,
      invalidDropped: 0,
    };
  }
}

function macKeyAt(b: Uint8Array, at: number): number {
  const low = ((b[at + 2]! << 24) | (b[at + 3]! << 16) | (b[at + 4]! << 8) | b[at + 5]!) >>> 0;
  return b[at]! * 0x10000000000 + b[at + 1]! * 0x100000000 + low;
}

export function parseMac(text: string): Uint8Array | undefined {
  if (!/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/.test(text)) return undefined;
  return Uint8Array.from(text.split(":").map((h) => Number.parseInt(h, 16)));
}

export function formatMac(mac: Uint8Array): string {
  return [...mac].map((b) => b.toString(16).padStart(2, "0")).join(":");
}

const SWITCH_MAC_KEY = macKeyAt(SWITCH_MAC, 0);

export class NetworkSwitch {
  private readonly ports = new Map<number, SwitchPort>();
  private readonly gateway: number;
  private readonly mask: number;

  constructor(private readonly config: SwitchConfig) {
    this.gateway = gatewayOf(config.subnet);
    this.mask = maskOf(config.subnet);
  }

  /** Connects a card; a port of the same MAC (a VMM that reconnected) is replaced and returned. */
  addPort(
    vmName: string,
    mac: Uint8Array,
    ipv4: string,
    sink: PortSink,
  ): { port: SwitchPort; replaced?: SwitchPort } {
    const port = new SwitchPort(vmName, mac, ipv4, sink, this.config.floodBurst, this.config.now());
    const replaced = this.ports.get(port.macKey);
    this.ports.set(port.macKey, port);
    return { port, replaced };
  }

  removePort(port: SwitchPort): void {
    if (this.ports.get(port.macKey) === port) this.ports.delete(port.macKey);
  }

  portList(): SwitchPort[] {
    return [...this.ports.values()];
  }

  /** A frame the card of `port` sent. */
  receive(port: SwitchPort, frame: Uint8Array): void {
    const s = port.stats;
    s.rxFrames++;
    if (this.ports.get(port.macKey) !== port) return; // replaced: a stale connection's last frames
    if (frame.length < MIN_FRAME || frame.length > MAX_FRAME) {
      s.invalidDropped++;
      return;
    }
    if (macKeyAt(frame, 6) !== port.macKey || !this.sourceAddressOk(port, frame)) {
      s.forgedDropped++;
      return;
    }
    const group = (frame[0]! & 1) !== 0;
    const destination = macKeyAt(frame, 0);
    if (group || destination === SWITCH_MAC_KEY) {
      // What the switch answers itself (DHCP, ARP for .1) costs a token too: a card flooding requests
      // gets at most its budget of answers, and the switch's work for it stays bounded.
      if (!this.takeToken(port)) {
        s.floodDropped++;
        return;
      }
      if (this.answer(port, frame)) return;
      if (!group) {
        s.unknownDropped++;
        return;
      }
      for (const other of this.ports.values()) if (other !== port) this.deliver(other, frame);
      return;
    }
    const target = this.ports.get(destination);
    if (!target) {
      s.unknownDropped++;
      return;
    }
    this.deliver(target, frame);
  }

  private deliver(target: SwitchPort, frame: Uint8Array): void {
    if (target.sink(frame)) target.stats.txFrames++;
    else target.stats.queueDropped++;
  }

  private takeToken(port: SwitchPort): boolean {
    const now = this.config.now();
    const { floodRate, floodBurst } = this.config;
    port.tokens = Math.min(floodBurst, port.tokens + ((now - port.lastRefill) * floodRate) / 1000);
    port.lastRefill = now;
    if (port.tokens < 1) return false;
    port.tokens -= 1;
    return true;
  }

  /**
   * IPv4 and ARP must also come from the card's own address (or 0.0.0.0, before DHCP and in ARP probes),
   * so that no card can take another's address on the network.
   */
  private sourceAddressOk(port: SwitchPort, frame: Uint8Array): boolean {
    const type = (frame[12]! << 8) | frame[13]!;
    let at: number;
    if (type === ETHERTYPE_IPV4) at = 14 + 12;
    else if (type === ETHERTYPE_ARP) at = 14 + 14;
    else return true;
    if (frame.length < at + 4) return false;
    const source = readU32(frame, at);
    return source === 0 || source === port.ipv4;
  }

  /** Answers ARP for the switch's address and DHCP; true when the frame was for the switch alone. */
  private answer(port: SwitchPort, frame: Uint8Array): boolean {
    const type = (frame[12]! << 8) | frame[13]!;
    if (type === ETHERTYPE_ARP) return this.answerArp(port, frame);
    if (type !== ETHERTYPE_IPV4 || frame.length < 14 + 20 + 8) return false;
    const ihl = (frame[14]! & 0x0f) * 4;
    if (frame[14]! >> 4 !== 4 || ihl < 20 || frame[14 + 9] !== IPPROTO_UDP) return false;
    const udp = 14 + ihl;
    if (frame.length < udp + 8 || readU16(frame, udp + 2) !== DHCP_SERVER_PORT) return false;
    this.answerDhcp(port, frame, udp + 8);
    // Every DHCP client message is the switch's (no relay), answered or not.
    return true;
  }

  private answerArp(port: SwitchPort, frame: Uint8Array): boolean {
    // RFC 826 for Ethernet/IPv4: htype 1, ptype 0x0800, hlen 6, plen 4, op 1 = request.
    const a = 14;
    if (frame.length < a + 28) return false;
    if (readU16(frame, a) !== 1 || readU16(frame, a + 2) !== ETHERTYPE_IPV4) return false;
    if (frame[a + 4] !== 6 || frame[a + 5] !== 4 || readU16(frame, a + 6) !== 1) return false;
    if (readU32(frame, a + 24) !== this.gateway) return false;
    const reply = new Uint8Array(60);
    reply.set(frame.subarray(6, 12), 0);
    reply.set(SWITCH_MAC, 6);
    writeU16(reply, 12, ETHERTYPE_ARP);
    writeU16(reply, a, 1);
    writeU16(reply, a + 2, ETHERTYPE_IPV4);
    reply[a + 4] = 6;
    reply[a + 5] = 4;
    writeU16(reply, a + 6, 2);
    reply.set(SWITCH_MAC, a + 8);
    writeU32(reply, a + 14, this.gateway);
    reply.set(frame.subarray(a + 8, a + 18), a + 18);
    this.deliver(port, reply);
    return true;
  }

  private answerDhcp(port: SwitchPort, frame: Uint8Array, b: number): void {
    // RFC 2131 section 2: op 1 = BOOTREQUEST, htype 1 (Ethernet), hlen 6, chaddr the client's MAC.
    if (frame.length < b + BOOTP_FIXED + 4) return;
    if (frame[b] !== 1 || frame[b + 1] !== 1 || frame[b + 2] !== 6) return;
    if (macKeyAt(frame, b + 28) !== port.macKey) return;
    if (readU32(frame, b + BOOTP_FIXED) !== DHCP_MAGIC_COOKIE) return;
    let messageType = 0;
    let requested = 0;
    let serverId = 0;
    for (let at = b + BOOTP_FIXED + 4; at < frame.length; ) {
      const code = frame[at]!;
      if (code === OPT_END) break;
      if (code === OPT_PAD) {
        at++;
        continue;
      }
      if (at + 1 >= frame.length) return;
      const len = frame[at + 1]!;
      const value = at + 2;
      if (value + len > frame.length) return;
      if (code === OPT_MESSAGE_TYPE && len === 1) messageType = frame[value]!;
      else if (code === OPT_REQUESTED_ADDRESS && len === 4) requested = readU32(frame, value);
      else if (code === OPT_SERVER_ID && len === 4) serverId = readU32(frame, value);
      at = value + len;
    }
    const xid = readU32(frame, b + 4);
    const flags = readU16(frame, b + 10);
    if (messageType === DHCPDISCOVER) {
      this.deliver(port, this.dhcpReply(port, DHCPOFFER, xid, flags));
      return;
    }
    if (messageType !== DHCPREQUEST) return; // RELEASE, DECLINE, INFORM: nothing to hand out or take back
    // A REQUEST answering another server's OFFER is not ours (there is none here, but be strict).
    if (serverId !== 0 && serverId !== this.gateway) return;
    const asked = requested !== 0 ? requested : readU32(frame, b + 12); // option 50, else ciaddr (renewal)
    this.deliver(port, this.dhcpReply(port, asked === port.ipv4 ? DHCPACK : DHCPNAK, xid, flags));
  }

  /** A BOOTREPLY to the card: its address, the mask, the lease and the server id; no router, no DNS. */
  private dhcpReply(port: SwitchPort, type: number, xid: number, flags: number): Uint8Array {
    const options: number[] = [OPT_MESSAGE_TYPE, 1, type, OPT_SERVER_ID, 4, ...u32(this.gateway)];
    if (type !== DHCPNAK) {
      const lease = this.config.leaseSeconds;
      options.push(OPT_LEASE_TIME, 4, ...u32(lease), OPT_SUBNET_MASK, 4, ...u32(this.mask));
      options.push(
        OPT_RENEWAL_TIME,
        4,
        ...u32(lease >>> 1),
        OPT_REBINDING_TIME,
        4,
        ...u32((lease * 7) >>> 3),
      );
    }
    options.push(OPT_END);
    // BOOTP messages are at least 300 bytes (RFC 951's 64-byte vendor field); older clients insist.
    const bootpLength = Math.max(300, BOOTP_FIXED + 4 + options.length);
    const udpLength = 8 + bootpLength;
    const ipLength = 20 + udpLength;
    const f = new Uint8Array(14 + ipLength);
    f.set(port.mac, 0);
    f.set(SWITCH_MAC, 6);
    writeU16(f, 12, ETHERTYPE_IPV4);
    const ip = 14;
    f[ip] = 0x45;
    writeU16(f, ip + 2, ipLength);
    f[ip + 8] = 64;
    f[ip + 9] = IPPROTO_UDP;
    writeU32(f, ip + 12, this.gateway);
    // RFC 2131 section 4.1: broadcast when the client asked so (it cannot take unicast before it has an
    // address), else to the address being handed out; the frame goes to the card's MAC either way.
    const destination = type === DHCPNAK || (flags & 0x8000) !== 0 ? 0xffffffff : port.ipv4;
    writeU32(f, ip + 16, destination);
    writeU16(f, ip + 10, checksum(f, ip, 20, 0));
    const udp = ip + 20;
    writeU16(f, udp, DHCP_SERVER_PORT);
    writeU16(f, udp + 2, DHCP_CLIENT_PORT);
    writeU16(f, udp + 4, udpLength);
    const b = udp + 8;
    f[b] = 2; // BOOTREPLY
    f[b + 1] = 1;
    f[b + 2] = 6;
    writeU32(f, b + 4, xid);
    writeU16(f, b + 10, flags & 0x8000);
    if (type !== DHCPNAK) writeU32(f, b + 16, port.ipv4); // yiaddr
    writeU32(f, b + 20, this.gateway); // siaddr
    f.set(port.mac, b + 28);
    writeU32(f, b + BOOTP_FIXED, DHCP_MAGIC_COOKIE);
    f.set(options, b + BOOTP_FIXED + 4);
    // The UDP checksum over the pseudo-header (RFC 768); 0 would also be legal in IPv4.
    const pseudo =
      (this.gateway >>> 16) +
      (this.gateway & 0xffff) +
      (destination >>> 16) +
      (destination & 0xffff) +
      IPPROTO_UDP +
      udpLength;
    const sum = checksum(f, udp, udpLength, pseudo);
    writeU16(f, udp + 6, sum === 0 ? 0xffff : sum);
    return f;
  }
}

/** The Internet checksum (RFC 1071) of `length` bytes at `at`, with `initial` added (a pseudo-header). */
function checksum(b: Uint8Array, at: number, length: number, initial: number): number {
  let sum = initial;
  for (let i = 0; i + 1 < length; i += 2) sum += (b[at + i]! << 8) | b[at + i + 1]!;
  if (length & 1) sum += b[at + length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

function readU16(b: Uint8Array, at: number): number {
  return (b[at]! << 8) | b[at + 1]!;
}

function readU32(b: Uint8Array, at: number): number {
  return ((b[at]! << 24) | (b[at + 1]! << 16) | (b[at + 2]! << 8) | b[at + 3]!) >>> 0;
}

function writeU16(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 8;
  b[at + 1] = v & 255;
}

function writeU32(b: Uint8Array, at: number, v: number): void {
  b[at] = v >>> 24;
  b[at + 1] = (v >>> 16) & 255;
  b[at + 2] = (v >>> 8) & 255;
  b[at + 3] = v & 255;
}

function u32(v: number): number[] {
  return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255];
}
