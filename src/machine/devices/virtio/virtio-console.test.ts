import assert from "node:assert/strict";
import { test } from "node:test";
import { GuestRam } from "../../bus/guest-ram.ts";
import { CallbackIrqLine } from "../../bus/irq-line.ts";
import { assertRoundTrip } from "../../state/round-trip.ts";
import {
  VIRTIO_CONSOLE_CONSOLE_PORT,
  VIRTIO_CONSOLE_CONTROL_RX,
  VIRTIO_CONSOLE_CONTROL_TX,
  VIRTIO_CONSOLE_DEVICE_ADD,
  VIRTIO_CONSOLE_DEVICE_READY,
  VIRTIO_CONSOLE_F_MULTIPORT,
  VIRTIO_CONSOLE_MAX_PENDING,
  VIRTIO_CONSOLE_PORT_NAME,
  VIRTIO_CONSOLE_PORT_OPEN,
  VIRTIO_CONSOLE_PORT_READY,
  VirtioConsole,
} from "./virtio-console.ts";
import { VirtioMmio } from "./virtio-mmio.ts";
import { VIRTIO_F_VERSION_1 } from "./virtio-spec.ts";
import { type TestQueue, VirtioTestDriver } from "./virtio-test-driver.ts";

const AGENT = "org.tsvm.agent.0";

interface Msg {
  id: number;
  event: number;
  value: number;
  name?: string;
}

function control(id: number, event: number, value: number): Uint8Array {
  const b = new Uint8Array(8);
  const v = new DataView(b.buffer);
  v.setUint32(0, id, true);
  v.setUint16(4, event, true);
  v.setUint16(6, value, true);
  return b;
}

function build(hostConnected = true, port1Sink?: (b: Uint8Array) => void) {
  const ram = new GuestRam(0x8000_0000, 1 << 20);
  const irq = new CallbackIrqLine(() => {});
  const out: number[][] = [[], []];
  const opens: Array<[number, boolean]> = [];
  const con = new VirtioConsole(
    { write: (b) => out[0]!.push(...b) },
    {
      ports: [
        { name: AGENT, sink: { write: (b) => (port1Sink ?? ((x) => out[1]!.push(...x)))(b) }, hostConnected },
      ],
      onOpen: (port, open) => opens.push([port, open]),
    },
  );
  const mmio = new VirtioMmio("virtio_mmio@10002000", con, ram, irq);
  const drv = new VirtioTestDriver(mmio, ram);
  return { ram, irq, out, opens, con, mmio, drv };
}

/** Linux's virtcons_probe with MULTIPORT: all queues, control receive buffers, DRIVER_OK, DEVICE_READY. */
function probe(t: ReturnType<typeof build>) {
  const { drv } = t;
  const f = drv.negotiate((1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_CONSOLE_F_MULTIPORT)));
  assert.ok(f !== null);
  assert.equal(drv.config32(4), 2, "max_nr_ports");
  const qs: TestQueue[] = [];
  for (let i = 0; i < 6; i++) qs.push(drv.setupQueue(i, 16));
  drv.driverOk();
  const crx = qs[VIRTIO_CONSOLE_CONTROL_RX]!;
  for (let i = 0; i < 8; i++) drv.add(crx, [{ writable: 64 }]);
  drv.kick(crx);
  return qs;
}

/** Control messages the device sent since the last call; each buffer is posted again as Linux does. */
function received(t: ReturnType<typeof build>, qs: TestQueue[]): Msg[] {
  const crx = qs[VIRTIO_CONSOLE_CONTROL_RX]!;
  const msgs = t.drv.takeUsed(crx).map((u) => {
    const b = t.drv.get(u.buffers[0]!.addr, u.len);
    const v = new DataView(b.buffer);
    const m: Msg = { id: v.getUint32(0, true), event: v.getUint16(4, true), value: v.getUint16(6, true) };
    if (m.event === VIRTIO_CONSOLE_PORT_NAME) m.name = new TextDecoder().decode(b.subarray(8));
    return m;
  });
  for (const _ of msgs) t.drv.add(crx, [{ writable: 64 }]);
  if (msgs.length > 0) t.drv.kick(crx);
  return msgs;
}

function send(t: ReturnType<typeof build>, qs: TestQueue[], msg: Uint8Array): void {
  const ctx = qs[VIRTIO_CONSOLE_CONTROL_TX]!;
  t.drv.add(ctx, [{ data: msg }]);
  t.drv.kick(ctx);
  assert.equal(t.drv.takeUsed(ctx).length, 1, "control message consumed");
}

/** The whole handshake of Linux's virtio_console: ports added, ready, console port and names. */
function handshake(t: ReturnType<typeof build>) {
  const qs = probe(t);
  send(t, qs, control(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1));
  const adds = received(t, qs);
  assert.deepEqual(adds, [
    { id: 0, event: VIRTIO_CONSOLE_DEVICE_ADD, value: 0 },
    { id: 1, event: VIRTIO_CONSOLE_DEVICE_ADD, value: 0 },
  ]);
  const replies: Msg[] = [];
  for (const { id } of adds) {
    // add_port: fill the port's receive queue, then PORT_READY.
    const rx = qs[id === 0 ? 0 : 2 + 2 * id]!;
    for (let i = 0; i < 4; i++) t.drv.add(rx, [{ writable: 16 }]);
    t.drv.kick(rx);
    send(t, qs, control(id, VIRTIO_CONSOLE_PORT_READY, 1));
    replies.push(...received(t, qs));
  }
  return { qs, replies };
}

test("multiport handshake: DEVICE_ADD per port, CONSOLE_PORT for port 0, PORT_NAME and PORT_OPEN", () => {
  const t = build();
  const { replies } = handshake(t);
  assert.deepEqual(replies, [
    { id: 0, event: VIRTIO_CONSOLE_CONSOLE_PORT, value: 1 },
    { id: 0, event: VIRTIO_CONSOLE_PORT_OPEN, value: 1 },
    { id: 1, event: VIRTIO_CONSOLE_PORT_NAME, value: 0, name: AGENT },
    { id: 1, event: VIRTIO_CONSOLE_PORT_OPEN, value: 1 },
  ]);
  assert.equal(t.con.portNamed(AGENT), 1);
  assert.equal(t.con.portNamed("nope"), -1);
});

test("a port whose host side is not connected gets no PORT_OPEN until the host connects", () => {
  const t = build(false);
  const { qs, replies } = handshake(t);
  assert.ok(!replies.some((m) => m.id === 1 && m.event === VIRTIO_CONSOLE_PORT_OPEN));
  t.con.setHostConnected(1, true);
  assert.deepEqual(received(t, qs), [{ id: 1, event: VIRTIO_CONSOLE_PORT_OPEN, value: 1 }]);
  t.con.setHostConnected(1, false);
  assert.deepEqual(received(t, qs), [{ id: 1, event: VIRTIO_CONSOLE_PORT_OPEN, value: 0 }]);
});

test("data both ways: guest output reaches the port's sink; host input waits for the guest to open the port", () => {
  const t = build();
  const { qs } = handshake(t);
  // The console port is opened by the driver itself (init_port_console); port 1 by a guest process.
  send(t, qs, control(0, VIRTIO_CONSOLE_PORT_OPEN, 1));
  assert.deepEqual(t.opens, [[0, true]]);

  const tx1 = qs[5]!;
  t.drv.add(tx1, [{ data: new Uint8Array([1, 2]) }, { data: new Uint8Array([3]) }]);
  t.drv.kick(tx1);
  assert.deepEqual(t.out[1], [1, 2, 3]);
  assert.deepEqual(t.out[0], []);
  const tx0 = qs[1]!;
  t.drv.add(tx0, [{ data: new TextEncoder().encode("login: ") }]);
  t.drv.kick(tx0);
  assert.equal(String.fromCharCode(...t.out[0]!), "login: ");

  // Host → guest on port 1 before the guest opened it: held back (Linux would discard it).
  const rx1 = qs[4]!;
  assert.equal(t.con.receive(1, new TextEncoder().encode("hello agent, 20 bytes+")), 22);
  assert.equal(t.drv.takeUsed(rx1).length, 0);
  send(t, qs, control(1, VIRTIO_CONSOLE_PORT_OPEN, 1));
  assert.deepEqual(t.opens, [
    [0, true],
    [1, true],
  ]);
  assert.ok(t.con.isGuestOpen(1));
  const got = t.drv.takeUsed(rx1);
  // 22 bytes over 16-byte receive buffers: 16 + 6.
  assert.deepEqual(
    got.map((u) => u.len),
    [16, 6],
  );
  const text = got.map((u) => new TextDecoder().decode(t.drv.get(u.buffers[0]!.addr, u.len))).join("");
  assert.equal(text, "hello agent, 20 bytes+");

  // Console input goes to port 0's receive queue.
  t.con.receive(0, new Uint8Array([0x6c, 0x73, 0x0a]));
  const c = t.drv.takeUsed(qs[0]!);
  assert.deepEqual([...t.drv.get(c[0]!.buffers[0]!.addr, c[0]!.len)], [0x6c, 0x73, 0x0a]);

  // Closing, and a device reset, are reported to the host.
  send(t, qs, control(1, VIRTIO_CONSOLE_PORT_OPEN, 0));
  t.drv.w32(0x70, 0);
  assert.deepEqual(t.opens.slice(2), [
    [1, false],
    [0, false],
  ]);
});

test("a sink that answers from inside write (the host sends back at once) does not disturb transmit", () => {
  let t!: ReturnType<typeof build>;
  const written: number[] = [];
  // The guest agent's host side answers a message on the port while the device hands it out.
  t = build(true, (b) => {
    written.push(...b);
    t.con.receive(1, new Uint8Array([b[0]! + 100]));
  });
  const { qs } = handshake(t);
  send(t, qs, control(1, VIRTIO_CONSOLE_PORT_OPEN, 1));
  const tx1 = qs[5]!;
  const rx1 = qs[4]!;
  // Two descriptors per transmit chain, so their heads differ from the receive chains' heads.
  const heads = [
    t.drv.add(tx1, [{ data: new Uint8Array([1]) }, { data: new Uint8Array(0) }]),
    t.drv.add(tx1, [{ data: new Uint8Array([2]) }, { data: new Uint8Array([2]) }]),
    t.drv.add(tx1, [{ data: new Uint8Array([3]) }, { data: new Uint8Array([3, 3]) }]),
  ];
  assert.notDeepEqual(heads, [0, 1, 2]);
  t.drv.kick(tx1);
  assert.deepEqual(written, [1, 2, 2, 3, 3, 3]);
  // Every transmit chain comes back as itself; none is lost or returned twice.
  assert.deepEqual(
    t.drv.takeUsed(tx1).map((u) => u.id),
    heads,
  );
  const got = t.drv.takeUsed(rx1);
  assert.deepEqual(
    got.map((u) => [...t.drv.get(u.buffers[0]!.addr, u.len)]),
    [[101], [102], [103]],
  );
  // The port keeps working: the next write is handed out too.
  t.drv.add(tx1, [{ data: new Uint8Array([4]) }]);
  t.drv.kick(tx1);
  assert.deepEqual(written.slice(-1), [4]);
  assert.equal(t.drv.takeUsed(tx1).length, 1);
});

test("host input is bounded by VIRTIO_CONSOLE_MAX_PENDING while the guest does not read", () => {
  const t = build();
  assert.equal(
    t.con.receive(1, new Uint8Array(VIRTIO_CONSOLE_MAX_PENDING - 10)),
    VIRTIO_CONSOLE_MAX_PENDING - 10,
  );
  assert.equal(t.con.receive(1, new Uint8Array(100)), 10);
  assert.equal(t.con.receive(1, new Uint8Array(1)), 0);
  assert.equal(t.con.receive(7, new Uint8Array(1)), 0, "unknown port");
});

test("without MULTIPORT, port 0 is the console and is open once DRIVER_OK is set", () => {
  const t = build();
  assert.ok(t.drv.negotiate(1n << BigInt(VIRTIO_F_VERSION_1)) !== null);
  const rx = t.drv.setupQueue(0, 8);
  const tx = t.drv.setupQueue(1, 8);
  t.drv.add(rx, [{ writable: 8 }]);
  t.drv.driverOk();
  assert.deepEqual(t.opens, [[0, true]]);
  t.con.receive(0, new Uint8Array([9]));
  assert.equal(t.drv.takeUsed(rx)[0]!.len, 1);
  t.drv.add(tx, [{ data: new Uint8Array([7]) }]);
  t.drv.kick(tx);
  assert.deepEqual(t.out[0], [7]);
});

test("hostile control traffic: unknown ports, short messages, repeated PORT_READY", () => {
  const t = build();
  const qs = probe(t);
  send(t, qs, control(0xffffffff, VIRTIO_CONSOLE_DEVICE_READY, 1));
  received(t, qs);
  send(t, qs, control(99, VIRTIO_CONSOLE_PORT_READY, 1));
  send(t, qs, control(99, VIRTIO_CONSOLE_PORT_OPEN, 1));
  send(t, qs, new Uint8Array(3));
  for (let i = 0; i < 1000; i++) send(t, qs, control(1, VIRTIO_CONSOLE_PORT_READY, 1));
  // One PORT_READY answered (name + open); repeats and junk ignored.
  assert.deepEqual(
    received(t, qs).map((m) => m.event),
    [VIRTIO_CONSOLE_PORT_NAME, VIRTIO_CONSOLE_PORT_OPEN],
  );
  assert.equal(t.drv.status() & 64, 0, "no device error for ignorable messages");
  // DEVICE_READY again after the device is ready does not repeat DEVICE_ADD.
  send(t, qs, control(0, VIRTIO_CONSOLE_DEVICE_READY, 1));
  assert.deepEqual(received(t, qs), []);
});

test("console state round-trips through the shared helper, with pending bytes and control messages", () => {
  assertRoundTrip(
    assert,
    () => build().mmio,
    (mmio) => {
      const con = mmio.device as VirtioConsole;
      con.receive(1, new Uint8Array([1, 2, 3]));
      con.setHostConnected(1, false);
    },
  );
  // A handshaken device: save, load into a fresh one, and the guest's open port keeps working.
  const a = build();
  const { qs } = handshake(a);
  send(a, qs, control(1, VIRTIO_CONSOLE_PORT_OPEN, 1));
  a.con.receive(0, new Uint8Array(70)); // more than port 0's 4×16 receive buffers: 6 bytes stay pending
  const s = a.mmio.saveState();
  const b = build();
  b.ram.u8.set(a.ram.u8);
  b.mmio.loadState(s);
  assert.deepEqual(b.mmio.saveState(), s);
  assert.ok(b.con.isGuestOpen(1));
  b.con.receive(1, new Uint8Array([42]));
  const v = b.ram.view;
  assert.equal(v.getUint16(qs[4]!.used - 0x8000_0000 + 2, true), 1, "delivered on the restored device");
});
