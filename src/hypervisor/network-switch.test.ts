import assert from "node:assert/strict";
import { test } from "node:test";
import { parseSubnet } from "./ipv4-subnet.ts";
import { formatMac, NetworkSwitch, parseMac, SWITCH_MAC, type SwitchPort } from "./network-switch.ts";

const A_MAC = parseMac("02:00:00:00:00:0a")!;
const B_MAC = parseMac("02:00:00:00:00:0b")!;
const C_MAC = parseMac("02:00:00:00:00:0c")!;
const BROADCAST = Uint8Array.of(255, 255, 255, 255, 255, 255);

function ethernet(dst: Uint8Array, src: Uint8Array, type: number, payload: Uint8Array): Uint8Array {
  const f = new Uint8Array(14 + payload.length);
  f.set(dst, 0);
  f.set(src, 6);
  f[12] = type >> 8;
  f[13] = type & 255;
  f.set(payload, 14);
  return f;
}

function ip(text: string): number[] {
  return text.split(".").map(Number);
}

function arpRequest(src: Uint8Array, senderIp: string, targetIp: string): Uint8Array {
  const p = new Uint8Array(28);
  p.set([0, 1, 8, 0, 6, 4, 0, 1], 0);
  p.set(src, 8);
  p.set(ip(senderIp), 14);
  p.set(ip(targetIp), 24);
  return ethernet(BROADCAST, src, 0x0806, p);
}

function ipv4Frame(
  dst: Uint8Array,
  src: Uint8Array,
  srcIp: string,
  dstIp: string,
  payloadBytes = 20,
): Uint8Array {
  const p = new Uint8Array(20 + payloadBytes);
  p[0] = 0x45;
  p[2] = (20 + payloadBytes) >> 8;
  p[3] = (20 + payloadBytes) & 255;
  p[9] = 17;
  p.set(ip(srcIp), 12);
  p.set(ip(dstIp), 16);
  return ethernet(dst, src, 0x0800, p);
}

/** A DHCP client message as busybox udhcpc sends it (broadcast, from 0.0.0.0). */
function dhcpMessage(mac: Uint8Array, type: number, requested?: string, chaddr = mac): Uint8Array {
  const bootp = new Uint8Array(300);
  bootp.set([1, 1, 6, 0, 0x12, 0x34, 0x56, 0x78], 0);
  bootp[10] = 0x80; // broadcast flag
  bootp.set(chaddr, 28);
  bootp.set([0x63, 0x82, 0x53, 0x63], 236);
  const options = [53, 1, type, ...(requested ? [50, 4, ...ip(requested)] : []), 255];
  bootp.set(options, 240);
  const udp = new Uint8Array(8 + bootp.length);
  udp.set([0, 68, 0, 67, (udp.length >> 8) & 255, udp.length & 255], 0);
  udp.set(bootp, 8);
  const frame = ipv4Frame(BROADCAST, mac, "0.0.0.0", "255.255.255.255", udp.length);
  frame.set(udp, 14 + 20);
  return frame;
}

/** A switch on 10.77.0.0/24 with three cards; each card's received frames, and a clock to move. */
function lab(options: { queueFull?: boolean } = {}) {
  let now = 1000;
  const sw = new NetworkSwitch({
    subnet: parseSubnet("10.77.0.0/24"),
    leaseSeconds: 3600,
    floodRate: 200,
    floodBurst: 400,
    now: () => now,
  });
  const got = { a: [] as Uint8Array[], b: [] as Uint8Array[], c: [] as Uint8Array[] };
  const a = sw.addPort("a", A_MAC, "10.77.0.2", (f) => (got.a.push(f), true)).port;
  const b = sw.addPort("b", B_MAC, "10.77.0.3", (f) => (got.b.push(f), true)).port;
  const c = sw.addPort("c", C_MAC, "10.77.0.4", (f) =>
    options.queueFull ? false : (got.c.push(f), true),
  ).port;
  return { sw, got, a, b, c, advance: (ms: number) => (now += ms) };
}

test("unicast goes only to the port owning the destination MAC; unknown destinations are dropped", () => {
  const { sw, got, a } = lab();
  const frame = ipv4Frame(B_MAC, A_MAC, "10.77.0.2", "10.77.0.3");
  sw.receive(a, frame);
  assert.deepEqual(got.b, [frame]);
  assert.equal(got.c.length, 0);
  assert.equal(got.a.length, 0);
  sw.receive(a, ipv4Frame(parseMac("02:00:00:00:00:99")!, A_MAC, "10.77.0.2", "10.77.0.9"));
  assert.equal(got.b.length + got.c.length, 1);
  assert.equal(a.stats.unknownDropped, 1);
});

test("a frame whose source MAC or source address is not the card's own is dropped and counted", () => {
  const { sw, got, a } = lab();
  sw.receive(a, ipv4Frame(B_MAC, C_MAC, "10.77.0.2", "10.77.0.3")); // C's MAC from A's port
  sw.receive(a, ipv4Frame(B_MAC, A_MAC, "10.77.0.4", "10.77.0.3")); // C's address from A
  sw.receive(a, arpRequest(A_MAC, "10.77.0.3", "10.77.0.4")); // ARP claiming B's address
  assert.equal(got.b.length + got.c.length, 0);
  assert.equal(a.stats.forgedDropped, 3);
  // An ARP probe (sender 0.0.0.0) is how a card checks its lease; it passes.
  sw.receive(a, arpRequest(A_MAC, "0.0.0.0", "10.77.0.2"));
  assert.equal(got.b.length, 1);
  assert.equal(got.c.length, 1);
});

test("broadcast is flooded to the other ports under a per-port token bucket", () => {
  const { sw, got, a, b, advance } = lab();
  const storm = ethernet(BROADCAST, A_MAC, 0x88b5, new Uint8Array(100));
  for (let i = 0; i < 1000; i++) sw.receive(a, storm);
  assert.equal(got.b.length, 400, "the burst");
  assert.equal(got.c.length, 400);
  assert.equal(a.stats.floodDropped, 600);
  // B's own broadcasts still go out: A's storm used A's tokens only.
  sw.receive(b, ethernet(BROADCAST, B_MAC, 0x88b5, new Uint8Array(50)));
  assert.equal(got.a.length, 1);
  // A second later A may flood 200 more.
  advance(1000);
  for (let i = 0; i < 1000; i++) sw.receive(a, storm);
  assert.equal(got.b.length, 600);
  // Unicast from A is not rate limited.
  sw.receive(a, ipv4Frame(B_MAC, A_MAC, "10.77.0.2", "10.77.0.3"));
  assert.equal(got.b.length, 601);
});

test("a full output queue drops the frames for that port only, counted there", () => {
  const { sw, got, a, c } = lab({ queueFull: true });
  sw.receive(a, ethernet(BROADCAST, A_MAC, 0x88b5, new Uint8Array(60)));
  assert.equal(got.b.length, 1);
  assert.equal(c.stats.queueDropped, 1);
  assert.equal(c.stats.txFrames, 0);
});

test("frames shorter than 14 or longer than 1514 bytes are dropped", () => {
  const { sw, got, a } = lab();
  sw.receive(a, new Uint8Array(13));
  sw.receive(a, ethernet(B_MAC, A_MAC, 0x0800, new Uint8Array(1501)));
  assert.equal(got.b.length, 0);
  assert.equal(a.stats.invalidDropped, 2);
  sw.receive(a, ethernet(B_MAC, A_MAC, 0x88b5, new Uint8Array(1500)));
  assert.equal(got.b.length, 1);
});

function parseDhcpReply(f: Uint8Array) {
  const b = 14 + 20 + 8;
  const options = new Map<number, number[]>();
  for (let at = b + 240; f[at] !== 255; at += 2 + f[at + 1]!)
    options.set(f[at]!, [...f.subarray(at + 2, at + 2 + f[at + 1]!)]);
  return {
    dst: formatMac(f.subarray(0, 6)),
    type: options.get(53)?.[0],
    yiaddr: [...f.subarray(b + 16, b + 20)].join("."),
    xid: [...f.subarray(b + 4, b + 8)],
    options,
  };
}

test("DHCP: DISCOVER gets an OFFER of the card's address, REQUEST an ACK; no router or DNS option", () => {
  const { sw, got, a } = lab();
  sw.receive(a, dhcpMessage(A_MAC, 1));
  assert.equal(got.a.length, 1);
  assert.equal(got.b.length + got.c.length, 0, "DHCP is the switch's, never flooded");
  const offer = parseDhcpReply(got.a[0]!);
  assert.equal(offer.type, 2);
  assert.equal(offer.dst, "02:00:00:00:00:0a");
  assert.equal(offer.yiaddr, "10.77.0.2");
  assert.deepEqual(offer.xid, [0x12, 0x34, 0x56, 0x78]);
  assert.deepEqual(offer.options.get(1), [255, 255, 255, 0]);
  assert.deepEqual(offer.options.get(54), [10, 77, 0, 1]);
  assert.deepEqual(offer.options.get(51), [0, 0, 0x0e, 0x10]);
  assert.equal(offer.options.has(3), false, "no router");
  assert.equal(offer.options.has(6), false, "no DNS");
  sw.receive(a, dhcpMessage(A_MAC, 3, "10.77.0.2"));
  assert.equal(parseDhcpReply(got.a[1]!).type, 5);
  // Asking for another card's address gets a NAK.
  sw.receive(a, dhcpMessage(A_MAC, 3, "10.77.0.3"));
  assert.equal(parseDhcpReply(got.a[2]!).type, 6);
  // A client hardware address that is not the card's gets nothing.
  sw.receive(a, dhcpMessage(A_MAC, 1, undefined, B_MAC));
  assert.equal(got.a.length, 3);
  // The IP header's checksum is right (a receiver drops the reply otherwise).
  const h = got.a[0]!.subarray(14, 34);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (h[i]! << 8) | h[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  assert.equal(sum, 0xffff);
});

test("hostile DHCP options (lengths past the frame) are ignored without an answer or a throw", () => {
  const { sw, got, a } = lab();
  const f = dhcpMessage(A_MAC, 1);
  f[14 + 20 + 8 + 240 + 1] = 200; // option 53's length runs past the end
  f[14 + 20 + 8 + 240 + 3] = 50;
  sw.receive(a, f.subarray(0, 14 + 20 + 8 + 245));
  assert.equal(got.a.length, 0);
});

test("ARP for the switch's .1 is answered by the switch; ARP for a card is flooded to the others", () => {
  const { sw, got, a } = lab();
  sw.receive(a, arpRequest(A_MAC, "10.77.0.2", "10.77.0.1"));
  assert.equal(got.a.length, 1);
  assert.equal(got.b.length, 0);
  const reply = got.a[0]!;
  assert.deepEqual([...reply.subarray(0, 6)], [...A_MAC]);
  assert.deepEqual([...reply.subarray(14 + 8, 14 + 14)], [...SWITCH_MAC]);
  assert.deepEqual([...reply.subarray(14 + 14, 14 + 18)], [10, 77, 0, 1]);
  assert.deepEqual([...reply.subarray(14 + 6, 14 + 8)], [0, 2]);
  sw.receive(a, arpRequest(A_MAC, "10.77.0.2", "10.77.0.3"));
  assert.equal(got.b.length, 1);
});

test("a card that reconnects replaces its old port, whose late frames go nowhere", () => {
  const { sw, got, a } = lab();
  const { port: a2, replaced } = sw.addPort("a", A_MAC, "10.77.0.2", () => true);
  assert.equal(replaced, a);
  sw.receive(a as SwitchPort, ipv4Frame(B_MAC, A_MAC, "10.77.0.2", "10.77.0.3"));
  assert.equal(got.b.length, 0);
  sw.receive(a2, ipv4Frame(B_MAC, A_MAC, "10.77.0.2", "10.77.0.3"));
  assert.equal(got.b.length, 1);
  sw.removePort(a);
  assert.equal(sw.portList().length, 3, "removing the replaced port leaves the new one");
});

test("DHCP and ARP floods: answers within the flooding card's budget, nothing reaches the others, their traffic passes", () => {
  const { sw, got, a, b, c, advance } = lab();
  for (let i = 0; i < 1000; i++) sw.receive(a, dhcpMessage(A_MAC, 1));
  assert.equal(got.a.length, 400, "an OFFER per token: the burst");
  assert.equal(a.stats.floodDropped, 600);
  assert.equal(got.b.length + got.c.length, 0, "DHCP never reaches another card");
  // ARP for the switch's .1 draws on the same budget (refilled by a second's worth).
  advance(1000);
  for (let i = 0; i < 1000; i++) sw.receive(a, arpRequest(A_MAC, "10.77.0.2", "10.77.0.1"));
  assert.equal(got.a.length, 600);
  assert.equal(got.b.length + got.c.length, 0);
  // ARP for another card is flooded, within the budget: that of the second after.
  advance(1000);
  for (let i = 0; i < 1000; i++) sw.receive(a, arpRequest(A_MAC, "10.77.0.2", "10.77.0.3"));
  assert.equal(got.b.length, 200);
  assert.equal(got.c.length, 200);
  // Meanwhile B and C talk as ever, and B's own DHCP is answered: A's flood spent A's tokens only.
  sw.receive(c, ipv4Frame(B_MAC, C_MAC, "10.77.0.4", "10.77.0.3"));
  assert.equal(got.b.length, 201);
  sw.receive(b, dhcpMessage(B_MAC, 1));
  assert.equal(parseDhcpReply(got.b[201]!).yiaddr, "10.77.0.3");
  assert.equal(b.stats.floodDropped + c.stats.floodDropped, 0);
});
