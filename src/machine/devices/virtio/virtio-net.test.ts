import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import { assertRoundTrip } from "../../state/round-trip.ts";
import { fold, sumWords, transportChecksumValid } from "./internet-checksum.ts";
import { VirtioMmio } from "./virtio-mmio.ts";
import {
  ETH_MAX_FRAME,
  VIRTIO_NET_F_CSUM,
  VIRTIO_NET_F_GUEST_CSUM,
  VIRTIO_NET_F_MAC,
  VIRTIO_NET_F_MRG_RXBUF,
  VIRTIO_NET_F_MTU,
  VIRTIO_NET_HDR_F_DATA_VALID,
  VIRTIO_NET_HDR_F_NEEDS_CSUM,
  VIRTIO_NET_F_STATUS,
  VIRTIO_NET_HDR_SIZE,
  VIRTIO_NET_RX,
  VIRTIO_NET_S_LINK_UP,
  VIRTIO_NET_TX,
  VirtioNet,
} from "./virtio-net.ts";
import {
  VIRTIO_CONFIG_S_NEEDS_RESET,
  VIRTIO_F_INDIRECT_DESC,
  VIRTIO_F_VERSION_1,
  VIRTIO_ID_NET,
  VIRTIO_MMIO_DEVICE_ID,
  VIRTIO_MMIO_INT_VRING,
} from "./virtio-spec.ts";
import { VirtioTestDriver } from "./virtio-test-driver.ts";

const MAC = new Uint8Array([0x02, 0x11, 0x22, 0x33, 0x44, 0x55]);

const ALL = (1n << 64n) - 1n;

function setup(wanted = ALL, options: { mtu?: number; rxSize?: number } = {}) {
  const ram = new GuestRam(0x8000_0000, 4 << 20);
  let irqs = 0;
  const irq = new CallbackIrqLine((level) => {
    if (level) irqs++;
  });
  const sent: Uint8Array[] = [];
  const nic = new VirtioNet(
    { send: (f) => sent.push(f.slice()) },
    { mac: MAC, ...(options.mtu !== undefined ? { mtu: options.mtu } : {}) },
  );
  const mmio = new VirtioMmio("virtio_mmio@10008000", nic, ram, irq);
  const drv = new VirtioTestDriver(mmio, ram);
  const features = drv.negotiate(wanted);
  assert.ok(features !== null);
  const rx = drv.setupQueue(VIRTIO_NET_RX, options.rxSize);
  const tx = drv.setupQueue(VIRTIO_NET_TX);
  drv.driverOk();
  return { ram, mmio, drv, nic, rx, tx, sent, features, irqs: () => irqs };
}

/** A frame of `n` bytes: broadcast destination, the card's source MAC, IPv4 type, then `fill`. */
function frame(n: number, fill = 0xab): Uint8Array {
  const f = new Uint8Array(Math.max(n, 14)).fill(fill);
  f.set([255, 255, 255, 255, 255, 255], 0);
  f.set(MAC, 6);
  f.set([0x08, 0x00], 12);
  return f.slice(0, n);
}

function withHeader(f: Uint8Array, flags = 0, gsoType = 0): Uint8Array {
  const b = new Uint8Array(VIRTIO_NET_HDR_SIZE + f.length);
  b[0] = flags;
  b[1] = gsoType;
  b.set(f, VIRTIO_NET_HDR_SIZE);
  return b;
}

test("the card offers checksum offloads, MTU, MAC, mergeable buffers and STATUS (no segmentation) and shows its MAC, link up and MTU", () => {
  const { mmio, drv, features } = setup();
  assert.equal(mmio.read(VIRTIO_MMIO_DEVICE_ID, 4), VIRTIO_ID_NET);
  const bits = [VIRTIO_F_VERSION_1, VIRTIO_F_INDIRECT_DESC, VIRTIO_NET_F_CSUM, VIRTIO_NET_F_GUEST_CSUM];
  bits.push(VIRTIO_NET_F_MTU, VIRTIO_NET_F_MAC, VIRTIO_NET_F_MRG_RXBUF, VIRTIO_NET_F_STATUS);
  assert.equal(
    features,
    bits.reduce((a, b) => a | (1n << BigInt(b)), 0n),
  );
  assert.deepEqual(
    [0, 1, 2, 3, 4, 5].map((i) => drv.config8(i)),
    [...MAC],
  );
  assert.equal(drv.config16(6), VIRTIO_NET_S_LINK_UP);
  assert.equal(drv.config16(10), 1500, "Ethernet's MTU unless the host says otherwise");
  assert.equal(setup(ALL, { mtu: 65520 }).drv.config16(10), 65520);
});

test("an MTU outside 68..65535 is refused", () => {
  for (const mtu of [67, 65536, 1500.5, Number.NaN])
    assert.throws(() => new VirtioNet({ send() {} }, { mac: MAC, mtu }), /MTU is 68\.\.65535/);
});

test("the frame limit is the card's MTU + 14 both ways: 64 KiB frames on a card with MTU 65520, 1514 by default", () => {
  const big = setup(ALL, { mtu: 65520 });
  const f = frame(65534, 3);
  big.drv.add(big.tx, [{ data: withHeader(f) }]);
  big.drv.add(big.tx, [{ data: withHeader(frame(65535)) }]);
  big.drv.kick(big.tx);
  assert.deepEqual(big.sent, [f]);
  assert.equal(big.nic.stats.txDropped, 1);
  assert.equal(big.nic.receive(frame(65535)), false);
  const small = setup();
  small.drv.add(small.tx, [{ data: withHeader(frame(ETH_MAX_FRAME + 1)) }]);
  small.drv.kick(small.tx);
  assert.deepEqual(small.sent, []);
  assert.equal(small.nic.stats.txDropped, 1);
});

test("mergeable buffers: a 64 KiB frame spreads over page-sized buffers with num_buffers in the first; it waits until enough are posted", () => {
  const { drv, rx, nic } = setup(ALL, { mtu: 65520 });
  const f = frame(65534, 9);
  for (let i = 0; i < 10; i++) drv.add(rx, [{ writable: 4096 }]);
  assert.equal(nic.canReceive(f.length), false, "10 pages hold less than 64 KiB");
  assert.equal(nic.canReceive(60), true);
  for (let i = 0; i < 10; i++) drv.add(rx, [{ writable: 4096 }]);
  assert.equal(nic.canReceive(f.length), true);
  assert.equal(nic.receive(f), true);
  const used = drv.takeUsed(rx);
  const need = VIRTIO_NET_HDR_SIZE + f.length;
  const count = Math.ceil(need / 4096);
  assert.deepEqual(
    used.map((u) => u.len),
    [...Array.from({ length: count - 1 }, () => 4096), need - 4096 * (count - 1)],
  );
  const got = new Uint8Array(need);
  for (const [i, u] of used.entries()) got.set(drv.get(u.buffers[0]!.addr, u.len), 4096 * i);
  assert.deepEqual([...got.subarray(0, VIRTIO_NET_HDR_SIZE)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, count, 0]);
  assert.deepEqual(got.subarray(VIRTIO_NET_HDR_SIZE), f);
  // The buffers not needed stay posted: a small frame takes one.
  assert.equal(nic.receive(frame(60)), true);
  assert.deepEqual(
    drv.takeUsed(rx).map((u) => u.len),
    [VIRTIO_NET_HDR_SIZE + 60],
  );
  assert.equal(drv.get(used[0]!.buffers[0]!.addr + 10, 1)[0], count);
});

test("mergeable buffers that can never hold a frame: the first is returned empty and the frame dropped", () => {
  const { drv, rx, nic } = setup(ALL, { mtu: 65520, rxSize: 8 });
  for (let i = 0; i < 8; i++) drv.add(rx, [{ writable: 1526 }]);
  assert.equal(
    nic.canReceive(20000),
    true,
    "a full ring of buffers that can never hold it: taken and dropped",
  );
  assert.equal(nic.receive(frame(20000)), false);
  assert.deepEqual(
    drv.takeUsed(rx).map((u) => u.len),
    [0],
  );
  const tiny = setup(ALL, { rxSize: 8 });
  tiny.drv.add(tiny.rx, [{ writable: 8 }]);
  tiny.drv.add(tiny.rx, [{ writable: 1526 }]);
  assert.equal(tiny.nic.receive(frame(60)), false, "a first buffer smaller than the header");
  assert.equal(tiny.nic.receive(frame(60)), true);
  assert.deepEqual(
    tiny.drv.takeUsed(tiny.rx).map((u) => u.len),
    [0, VIRTIO_NET_HDR_SIZE + 60],
  );
  assert.equal(tiny.nic.stats.rxDropped, 1);
});

test("transmit: frames leave without the header, in order, split over buffers or through an indirect table", () => {
  const { drv, tx, sent, nic } = setup();
  const a = frame(60, 1);
  const b = frame(ETH_MAX_FRAME, 2);
  drv.add(tx, [{ data: withHeader(a) }]);
  const hb = withHeader(b);
  // Header and frame in separate buffers, as Linux places them.
  drv.add(tx, [{ data: hb.subarray(0, VIRTIO_NET_HDR_SIZE) }, { data: hb.subarray(VIRTIO_NET_HDR_SIZE) }]);
  drv.add(tx, [{ data: withHeader(a) }], { indirect: true });
  drv.kick(tx);
  assert.deepEqual(sent, [a, b, a]);
  assert.equal(drv.takeUsed(tx).length, 3);
  assert.equal(drv.interrupt() & VIRTIO_MMIO_INT_VRING, VIRTIO_MMIO_INT_VRING);
  assert.deepEqual(
    { txFrames: nic.stats.txFrames, txBytes: nic.stats.txBytes, txDropped: nic.stats.txDropped },
    { txFrames: 3, txBytes: 60 + ETH_MAX_FRAME + 60, txDropped: 0 },
  );
});

test("hostile transmits are dropped and counted: too short, too long, offload flags, GSO, no data", () => {
  const { drv, tx, sent, nic } = setup(ALL & ~(1n << BigInt(VIRTIO_NET_F_CSUM)));
  drv.add(tx, [{ data: withHeader(frame(13)) }]);
  drv.add(tx, [{ data: withHeader(frame(ETH_MAX_FRAME + 1)) }]);
  drv.add(tx, [{ data: withHeader(frame(100), 1) }]); // NEEDS_CSUM without VIRTIO_NET_F_CSUM
  drv.add(tx, [{ data: withHeader(frame(100), 0, 1) }]); // GSO_TCPV4 without HOST_TSO4
  drv.add(tx, [{ data: new Uint8Array(VIRTIO_NET_HDR_SIZE - 1) }]);
  drv.add(tx, [{ writable: 1600 }]); // nothing readable at all
  drv.add(tx, [{ data: withHeader(frame(64, 9)) }]); // and a good one after them
  drv.kick(tx);
  assert.deepEqual(sent, [frame(64, 9)]);
  assert.equal(nic.stats.txDropped, 6);
  assert.equal(nic.stats.txFrames, 1);
  assert.equal(drv.takeUsed(tx).length, 7, "every chain is returned");
  assert.equal(drv.status() & VIRTIO_CONFIG_S_NEEDS_RESET, 0, "bad frames are not a broken ring");
});

/** An Ethernet/IPv4/TCP frame with `payload` bytes, its TCP checksum correct (or `partial`: only the
 *  pseudo-header's sum in the field, as a driver leaves it for NEEDS_CSUM). */
function tcpFrame(payload: number, partial = false): Uint8Array {
  const f = frame(14 + 20 + 20 + payload, 0);
  const v = new DataView(f.buffer);
  f[14] = 0x45;
  v.setUint16(16, 20 + 20 + payload);
  f[22] = 64;
  f[23] = 6;
  f.set([192, 0, 2, 2, 192, 0, 2, 1], 26);
  v.setUint16(24, ~fold(sumWords(f, 14, 34, 0)) & 0xffff);
  v.setUint16(34, 40000);
  v.setUint16(36, 80);
  f[46] = 0x50;
  for (let i = 0; i < payload; i++) f[54 + i] = (i * 7 + 3) & 0xff;
  const pseudo = sumWords(f, 26, 34, 0) + 6 + 20 + payload;
  v.setUint16(50, partial ? fold(pseudo) : ~fold(sumWords(f, 34, f.length, pseudo)) & 0xffff);
  return f;
}

test("checksum offload: NEEDS_CSUM frames leave with the checksum completed; a field outside the frame drops it", () => {
  const { drv, tx, sent, nic } = setup();
  for (const n of [0, 1, 999, 1460]) {
    const hdr = withHeader(tcpFrame(n, true), VIRTIO_NET_HDR_F_NEEDS_CSUM);
    // csum_start 34 (the TCP header), csum_offset 16 (its checksum field), little-endian.
    hdr.set([34, 0, 16, 0], 6);
    drv.add(tx, [{ data: hdr }]);
  }
  const bad = withHeader(tcpFrame(10, true), VIRTIO_NET_HDR_F_NEEDS_CSUM);
  bad.set([0x40, 0, 0x00, 0x01], 6); // csum_start 64, csum_offset 256: past the end
  drv.add(tx, [{ data: bad }]);
  drv.kick(tx);
  assert.equal(sent.length, 4);
  sent.forEach((f, i) => {
    assert.ok(transportChecksumValid(f), `frame ${i} has a correct TCP checksum`);
    assert.deepEqual(f, tcpFrame([0, 1, 999, 1460][i]!), "exactly the frame with its checksum");
  });
  assert.equal(nic.stats.txDropped, 1);
});

test("receive checksum: DATA_VALID only for a segment whose checksum was checked, and only with GUEST_CSUM", () => {
  for (const negotiated of [true, false]) {
    const { drv, rx, nic } = setup(negotiated ? ALL : ALL & ~(1n << BigInt(VIRTIO_NET_F_GUEST_CSUM)));
    for (let i = 0; i < 3; i++) drv.add(rx, [{ writable: 1526 }]);
    const good = tcpFrame(500);
    const corrupt = tcpFrame(500);
    corrupt[100]! ^= 1;
    assert.equal(nic.receive(good), true);
    assert.equal(nic.receive(corrupt), true);
    assert.equal(nic.receive(frame(100)), true);
    const flags = drv.takeUsed(rx).map((u) => drv.get(u.buffers[0]!.addr, 1)[0]);
    assert.deepEqual(flags, [negotiated ? VIRTIO_NET_HDR_F_DATA_VALID : 0, 0, 0]);
  }
});

test("receive without mergeable buffers: a frame lands behind a 12-byte header with num_buffers 1; too-small buffers are returned empty", () => {
  const { drv, rx, nic, irqs } = setup(ALL & ~(1n << BigInt(VIRTIO_NET_F_MRG_RXBUF)));
  drv.add(rx, [{ writable: 1526 }]);
  drv.add(rx, [{ writable: 6 }, { writable: 6 }, { writable: 2000 }]);
  drv.add(rx, [{ writable: 100 }]);
  drv.kick(rx);
  const f = frame(1000, 7);
  const before = irqs();
  assert.equal(nic.receive(f), true);
  assert.equal(nic.receive(frame(ETH_MAX_FRAME, 8)), true);
  assert.equal(nic.receive(frame(200)), false, "a 100-byte buffer cannot hold 212 bytes");
  assert.ok(irqs() > before);
  const used = drv.takeUsed(rx);
  assert.deepEqual(
    used.map((u) => u.len),
    [VIRTIO_NET_HDR_SIZE + 1000, VIRTIO_NET_HDR_SIZE + ETH_MAX_FRAME, 0],
  );
  const b0 = used[0]!.buffers[0]!;
  const got = drv.get(b0.addr, VIRTIO_NET_HDR_SIZE + 1000);
  assert.deepEqual([...got.subarray(0, VIRTIO_NET_HDR_SIZE)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  assert.deepEqual(got.subarray(VIRTIO_NET_HDR_SIZE), f);
  // The second chain: header in the first two buffers, the frame after.
  const [h1, h2, body] = used[1]!.buffers;
  assert.deepEqual([...drv.get(h1!.addr, 6), ...drv.get(h2!.addr, 6)], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0]);
  assert.deepEqual(drv.get(body!.addr, ETH_MAX_FRAME), frame(ETH_MAX_FRAME, 8));
  assert.deepEqual(
    { rxFrames: nic.stats.rxFrames, rxBytes: nic.stats.rxBytes, rxDropped: nic.stats.rxDropped },
    { rxFrames: 2, rxBytes: 1000 + ETH_MAX_FRAME, rxDropped: 1 },
  );
});

test("receive with no buffers drops and counts; posting buffers calls onRxSpace", () => {
  const { drv, rx, nic } = setup();
  let space = 0;
  nic.onRxSpace = () => space++;
  assert.equal(nic.canReceive(), false);
  assert.equal(nic.receive(frame(60)), false);
  assert.equal(nic.stats.rxDropped, 1);
  drv.add(rx, [{ writable: 1526 }]);
  drv.kick(rx);
  assert.equal(space, 1);
  assert.equal(nic.canReceive(), true);
  assert.equal(nic.receive(frame(60)), true);
  assert.equal(nic.canReceive(), false);
  // Frames the card never carries are refused whatever the buffers.
  drv.add(rx, [{ writable: 1526 }]);
  assert.equal(nic.receive(frame(13)), false);
  assert.equal(nic.receive(frame(ETH_MAX_FRAME + 1)), false);
  assert.equal(nic.stats.rxDropped, 3);
  assert.equal(nic.canReceive(), true, "the buffer is still there");
});

test("a card before DRIVER_OK or after reset takes no frames and touches no RAM", () => {
  const ram = new GuestRam(0x8000_0000, 1 << 20);
  const nic = new VirtioNet({ send: () => assert.fail("nothing to send") }, { mac: MAC });
  const mmio = new VirtioMmio("virtio_mmio@10008000", nic, ram, new CallbackIrqLine(() => {}));
  const drv = new VirtioTestDriver(mmio, ram);
  drv.negotiate(1n << 32n);
  const rx = drv.setupQueue(VIRTIO_NET_RX);
  drv.add(rx, [{ writable: 1526 }]);
  const snapshot = ram.u8.slice();
  assert.equal(nic.receive(frame(60)), false);
  assert.deepEqual(ram.u8, snapshot);
  drv.w32(0x70, 0); // Status ← 0: reset
  assert.equal(nic.receive(frame(60)), false);
  assert.deepEqual(ram.u8, snapshot);
});

test("a MAC that is not 6 bytes or is multicast is refused", () => {
  assert.throws(() => new VirtioNet({ send() {} }, { mac: new Uint8Array(5) }), /6 bytes/);
  assert.throws(() => new VirtioNet({ send() {} }, { mac: new Uint8Array([1, 0, 0, 0, 0, 1]) }), /unicast/);
});

test("hostile rings: random descriptor tables never throw out of the card; frames are dropped or the queue breaks", () => {
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed;
  };
  for (let round = 0; round < 200; round++) {
    const { drv, rx, tx, nic, ram } = setup();
    for (const q of [rx, tx]) {
      // Scribble over the descriptor table and publish random heads.
      for (let i = 0; i < 16 * q.size; i += 4) ram.view.setUint32(q.desc - ram.base + i, rand() >>> 0, true);
      for (let k = rand() % 8; k > 0; k--) drv.offer(q, rand() % (q.size + 4));
    }
    // Some descriptors point back into RAM with plausible lengths.
    for (let i = 0; i < 32; i++) {
      const d = tx.desc - ram.base + 16 * (rand() % tx.size);
      ram.view.setUint32(d, ram.base + (rand() % (ram.size - 4096)), true);
      ram.view.setUint32(d + 4, 0, true);
      ram.view.setUint32(d + 8, rand() % 3000, true);
    }
    drv.kick(tx);
    nic.receive(frame(60 + (rand() % 1400)));
    drv.kick(rx);
    const s = nic.stats;
    assert.ok(s.txFrames + s.txDropped >= 0 && s.rxFrames <= 1);
  }
});

test("a state saved before MTU and mergeable buffers were offered restores into a NAT card: one buffer a frame, 1514 bytes", () => {
  const old = setup(ALL & ~((1n << BigInt(VIRTIO_NET_F_MTU)) | (1n << BigInt(VIRTIO_NET_F_MRG_RXBUF))));
  old.drv.add(old.rx, [{ writable: 1526 }]);
  old.drv.add(old.rx, [{ writable: 1526 }]);
  const saved = structuredClone(old.mmio.saveState());
  const ram = old.ram;
  const nic = new VirtioNet({ send() {} }, { mac: MAC, mtu: 65520 });
  const mmio = new VirtioMmio("virtio_mmio@10008000", nic, ram, new CallbackIrqLine(() => {}));
  mmio.loadState(saved);
  assert.equal(nic.receive(frame(ETH_MAX_FRAME, 4)), true);
  assert.equal(nic.receive(frame(4000)), false, "a 1526-byte buffer cannot hold it");
  assert.deepEqual(
    old.drv.takeUsed(old.rx).map((u) => u.len),
    [VIRTIO_NET_HDR_SIZE + ETH_MAX_FRAME, 0],
  );
});

test("state round-trips and rejects unknown versions", () => {
  assertRoundTrip(
    assert,
    () => setup().mmio,
    (mmio) => mmio.write(0x24, 4, 1),
  );
  const { mmio, drv, rx, nic } = setup();
  drv.add(rx, [{ writable: 1526 }]);
  const s = mmio.saveState();
  assert.throws(() => mmio.loadState({ ...s, device: { version: 2 } }), { code: "bad-state" });
  // A restored card keeps receiving into the buffers the guest posted before the save.
  const other = setup();
  other.mmio.loadState(structuredClone(s));
  assert.equal(other.nic.canReceive(), false, "the restored card has its own RAM, without those buffers");
  assert.equal(nic.receive(frame(60)), true);
});
