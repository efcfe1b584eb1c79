import assert from "node:assert/strict";
import { test } from "node:test";
import { CallbackIrqLine } from "../bus/irq-line.ts";
import type { AccessWidth } from "../bus/mmio-device.ts";
import { assertRoundTrip } from "../state/round-trip.ts";
import { StateError } from "../state/stateful.ts";
import {
  UART_FCR,
  UART_IER,
  UART_IIR,
  UART_LCR,
  UART_LSR,
  UART_MCR,
  UART_MSR,
  UART_RX,
  UART_SCR,
  UART_TX,
  Uart16550,
} from "./uart16550.ts";

function rig() {
  const chunks: Uint8Array[] = [];
  const irq = new CallbackIrqLine(() => {});
  const uart = new Uart16550({ write: (b) => chunks.push(b) }, irq);
  const output = () => Buffer.concat(chunks).toString("latin1");
  return { uart, irq, chunks, output };
}

const rd = (u: Uart16550, reg: number) => u.read(reg, 1);
const wr = (u: Uart16550, reg: number, v: number) => u.write(reg, 1, v);
const bytes = (s: string) => new Uint8Array(Buffer.from(s, "latin1"));

test("THR bytes reach the sink on flush, in order, in an array the sink may keep", () => {
  const { uart, chunks, output } = rig();
  for (const c of "hello") wr(uart, UART_TX, c.charCodeAt(0));
  assert.equal(chunks.length, 0, "nothing before flush");
  uart.flush();
  wr(uart, UART_TX, 0x21);
  uart.flush();
  uart.flush();
  assert.equal(output(), "hello!");
  assert.equal(chunks.length, 2);
  const first = chunks[0];
  wr(uart, UART_TX, 0x7a);
  uart.flush();
  assert.equal(Buffer.from(first).toString(), "hello", "an earlier chunk is not overwritten");
  assert.equal(rd(uart, UART_LSR) & 0x60, 0x60, "THRE and TEMT: the transmitter is always empty");
});

test("a long burst flushes by itself when the output buffer fills", () => {
  const { uart, chunks } = rig();
  for (let i = 0; i < 10_000; i++) wr(uart, UART_TX, i & 0xff);
  uart.flush();
  const all = Buffer.concat(chunks);
  assert.equal(all.length, 10_000);
  assert.ok(all.every((b, i) => b === (i & 0xff)));
});

test("DLAB switches offsets 0 and 1 to the divisor latch", () => {
  const { uart, chunks } = rig();
  wr(uart, UART_IER, 0x05);
  wr(uart, UART_LCR, 0x83);
  wr(uart, UART_TX, 0x01);
  wr(uart, UART_IER, 0x02);
  assert.equal(rd(uart, UART_RX), 0x01);
  assert.equal(rd(uart, UART_IER), 0x02);
  wr(uart, UART_LCR, 0x03);
  assert.equal(rd(uart, UART_IER), 0x05, "IER untouched by the divisor writes");
  assert.equal(rd(uart, UART_LCR), 0x03);
  uart.flush();
  assert.equal(chunks.length, 0, "a divisor write transmits nothing");
  wr(uart, UART_SCR, 0x5a);
  assert.equal(rd(uart, UART_SCR), 0x5a);
  wr(uart, UART_IER, 0xff);
  assert.equal(rd(uart, UART_IER), 0x0f, "IER keeps four bits");
});

test("16-byte RX FIFO fed from the host queue as the guest reads", () => {
  const { uart } = rig();
  wr(uart, UART_FCR, 0x01);
  assert.equal(rd(uart, UART_LSR) & 1, 0);
  uart.receive(bytes("abcdefghijklmnopqrstuvwxyz"));
  assert.equal(uart.saveState().rxFifo.length, 16);
  assert.equal(uart.inputPending, 26);
  let got = "";
  while (rd(uart, UART_LSR) & 1) got += String.fromCharCode(rd(uart, UART_RX));
  assert.equal(got, "abcdefghijklmnopqrstuvwxyz");
  assert.equal(uart.inputPending, 0);
  assert.equal(rd(uart, UART_RX), 0, "an empty receiver reads 0");
});

test("without FIFOs the receiver holds one byte at a time, nothing is lost", () => {
  const { uart } = rig();
  uart.receive(bytes("xyz"));
  assert.equal(uart.saveState().rxFifo.length, 1);
  assert.equal(rd(uart, UART_RX), 0x78);
  assert.equal(rd(uart, UART_RX), 0x79);
  assert.equal(rd(uart, UART_RX), 0x7a);
  assert.equal(rd(uart, UART_LSR) & 1, 0);
});

test("IIR bits 6-7 report the 16550A FIFOs; FCR clears the receiver", () => {
  const { uart } = rig();
  assert.equal(rd(uart, UART_IIR), 0x01);
  wr(uart, UART_FCR, 0x01);
  assert.equal(rd(uart, UART_IIR) >> 6, 3, "Linux's autoconfig: 3 means 16550A");
  uart.receive(bytes("0123456789abcdefXYZ"));
  wr(uart, UART_FCR, 0x03); // clear RCVR: the 16 bytes in the FIFO go, the host queue refills it
  assert.equal(String.fromCharCode(rd(uart, UART_RX)), "X");
  wr(uart, UART_FCR, 0x00);
  assert.equal(rd(uart, UART_IIR) & 0xc0, 0);
});

test("RX interrupt: timeout (CTI) below the trigger level, RDI at it; IRQ line follows", () => {
  const { uart, irq } = rig();
  wr(uart, UART_FCR, 0x81); // FIFO on, trigger 8 (what Linux uses for a 16550A)
  wr(uart, UART_IER, 0x01);
  assert.equal(irq.high, false);
  uart.receive(bytes("abc"));
  assert.equal(irq.high, true);
  assert.equal(rd(uart, UART_IIR), 0xcc);
  uart.receive(bytes("defgh"));
  assert.equal(rd(uart, UART_IIR), 0xcc, "a fired timeout stays until RBR is read");
  rd(uart, UART_RX);
  assert.equal(rd(uart, UART_IIR), 0xcc, "7 bytes, below the trigger: it fires again");
  for (let i = 0; i < 7; i++) rd(uart, UART_RX);
  assert.equal(rd(uart, UART_IIR), 0xc1);
  assert.equal(irq.high, false);
  uart.receive(bytes("01234567"));
  assert.equal(rd(uart, UART_IIR), 0xc4, "a burst reaching the trigger level is RDI");
});

test("THRI: raised when enabled with THR empty, cleared by reading IIR, re-armed by THR writes", () => {
  const { uart, irq } = rig();
  wr(uart, UART_IER, 0x02);
  assert.equal(irq.high, true);
  assert.equal(rd(uart, UART_IIR), 0x02);
  assert.equal(irq.high, false, "reading IIR cleared it");
  assert.equal(rd(uart, UART_IIR), 0x01);
  // Linux's UART_BUG_THRE test: IER=THRI, read IIR, IER=0, IER=THRI, read IIR must show THRI again.
  wr(uart, UART_IER, 0);
  wr(uart, UART_IER, 0x02);
  assert.equal(rd(uart, UART_IIR) & 0x0f, 0x02);
  wr(uart, UART_TX, 0x41);
  assert.equal(irq.high, true, "the byte left at once; THR empty again");
  // Receive data outranks THRI, which stays pending beneath it.
  wr(uart, UART_IER, 0x03);
  uart.receive(bytes("q"));
  assert.equal(rd(uart, UART_IIR), 0x04);
  rd(uart, UART_RX);
  assert.equal(rd(uart, UART_IIR), 0x02);
  assert.equal(rd(uart, UART_IIR), 0x01);
});

test("loopback: Linux's MSR probe, TX into RX, overrun raises a line-status interrupt", () => {
  const { uart, irq, chunks } = rig();
  wr(uart, UART_MCR, 0x10 | 0x0a);
  assert.equal(rd(uart, UART_MSR) & 0xf0, 0x90);
  wr(uart, UART_FCR, 0x00);
  uart.receive(bytes("host"));
  assert.equal(rd(uart, UART_LSR) & 1, 0, "host input is cut off in loopback");
  wr(uart, UART_IER, 0x05);
  wr(uart, UART_TX, 0x55);
  assert.equal(rd(uart, UART_IIR), 0x04);
  wr(uart, UART_TX, 0x66); // no FIFO: one byte held, this one overruns
  assert.equal(rd(uart, UART_IIR), 0x06);
  assert.equal(rd(uart, UART_LSR) & 0x03, 0x03);
  assert.equal(rd(uart, UART_LSR) & 0x02, 0, "reading LSR cleared OE");
  assert.equal(rd(uart, UART_RX), 0x66, "without FIFOs the overrunning byte replaces the held one");
  wr(uart, UART_FCR, 0x01);
  for (let i = 0; i < 17; i++) wr(uart, UART_TX, i);
  assert.equal(rd(uart, UART_LSR) & 0x03, 0x03);
  assert.equal(rd(uart, UART_RX), 0, "with FIFOs the overrunning byte is the one lost");
  for (let i = 1; i < 16; i++) rd(uart, UART_RX);
  wr(uart, UART_MCR, 0x0b);
  assert.equal(String.fromCharCode(rd(uart, UART_RX)), "h", "leaving loopback reconnects the host");
  assert.equal(irq.high, true);
  uart.flush();
  assert.equal(chunks.length, 0, "looped bytes never reach the host");
});

test("modem status deltas raise MSI and clear on read", () => {
  const { uart, irq } = rig();
  assert.equal(rd(uart, UART_MSR), 0xb0, "DCD, DSR, CTS: the host side is ready");
  wr(uart, UART_IER, 0x08);
  assert.equal(irq.high, false);
  wr(uart, UART_MCR, 0x10 | 0x04); // loopback: CTS, DSR, DCD drop; RI rises
  assert.equal(irq.high, true);
  assert.equal(rd(uart, UART_IIR), 0x00);
  assert.equal(rd(uart, UART_MSR), 0x40 | 0x0b);
  assert.equal(irq.high, false);
  wr(uart, UART_MCR, 0x10);
  assert.equal(rd(uart, UART_MSR), 0x04, "TERI when RI falls");
});

test("wider accesses are byte accesses, lowest first, and registers repeat every 8 bytes", () => {
  const { uart } = rig();
  uart.write(UART_SCR + 8, 1, 0x77);
  assert.equal(rd(uart, UART_SCR), 0x77);
  uart.write(4, 4, 0xa5_00_00_03); // MCR=3, LSR (ignored), MSR (ignored), SCR=0xa5
  assert.equal(rd(uart, UART_MCR), 0x03);
  assert.equal(rd(uart, UART_SCR), 0xa5);
  assert.equal(uart.read(4, 4), 0xa5_b0_60_03);
});

test("save/restore round trip, with FIFO contents and host input", () => {
  assertRoundTrip(
    assert,
    () => rig().uart,
    (u) => {
      wr(u, UART_FCR, 0xc1);
      wr(u, UART_IER, 0x07);
      wr(u, UART_LCR, 0x1b);
      wr(u, UART_SCR, 0x42);
      u.receive(bytes("some typed input longer than the FIFO"));
      rd(u, UART_RX);
    },
  );
});

test("a restored UART continues: same input, same interrupt", () => {
  const a = rig();
  wr(a.uart, UART_FCR, 0x01);
  wr(a.uart, UART_IER, 0x01);
  a.uart.receive(bytes("0123456789abcdefghij"));
  rd(a.uart, UART_RX);
  const b = rig();
  b.uart.loadState(a.uart.saveState());
  assert.equal(b.irq.high, true);
  let got = "";
  while (rd(b.uart, UART_LSR) & 1) got += String.fromCharCode(rd(b.uart, UART_RX));
  assert.equal(got, "123456789abcdefghij");
});

test("loadState refuses bad registers and an oversized FIFO, changing nothing", () => {
  const { uart } = rig();
  wr(uart, UART_SCR, 9);
  const good = uart.saveState();
  const bad = [
    { ...good, ier: 0x10 },
    { ...good, mcr: 0x20 },
    { ...good, lcr: 256 },
    { ...good, rxFifo: new Uint8Array(2) }, // FIFO disabled: one byte at most
    { ...good, fcr: 1, rxFifo: new Uint8Array(17) },
    { ...good, hostInput: [1, 2] as unknown as Uint8Array },
  ];
  for (const s of bad) assert.throws(() => uart.loadState(s), StateError);
  assert.deepEqual(uart.saveState(), good);
});

test("hostile guest: random accesses never throw; FIFO ≤ 16, IRQ = IIR, no input lost", () => {
  const { uart, irq } = rig();
  let seed = 16550;
  const rand = () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
  const widths: AccessWidth[] = [1, 2, 4];
  let sent = 0;
  for (let i = 0; i < 30_000; i++) {
    if (rand() < 0.05) {
      const n = Math.floor(rand() * 40);
      uart.receive(new Uint8Array(n).fill(0x61));
      sent += n;
    }
    const offset = rand() < 0.9 ? Math.floor(rand() * 8) : Math.floor(rand() * 0x200) - 8;
    const width = rand() < 0.8 ? 1 : widths[Math.floor(rand() * 3)];
    const value = Math.floor(rand() * 2 ** (8 * width));
    if (rand() < 0.5) uart.write(offset, width, value);
    else {
      const v = uart.read(offset, width);
      assert.ok(Number.isInteger(v) && v >= 0 && v < 2 ** (8 * width));
    }
    const s = uart.saveState();
    assert.ok(s.rxFifo.length <= 16);
    assert.ok(s.rxFifo.length <= (s.fcr & 1 ? 16 : 1));
    if (!(s.mcr & 0x10)) assert.ok(s.hostInput.length === 0 || s.rxFifo.length === (s.fcr & 1 ? 16 : 1));
    const level = irq.high;
    assert.equal(level, (uart.read(UART_IIR, 1) & 1) === 0, "IRQ line = IIR pending");
    assert.ok(uart.inputPending <= sent + 16, "only host bytes and at most a FIFO of looped-back ones");
  }
  // Drain: everything the host sent and the guest did not read or clear is still deliverable.
  wr(uart, UART_MCR, 0);
  wr(uart, UART_LCR, 0);
  wr(uart, UART_FCR, 1);
  let drained = 0;
  while (rd(uart, UART_LSR) & 1 && drained < 100_000) {
    rd(uart, UART_RX);
    drained++;
  }
  assert.equal(uart.inputPending, 0);
});

test("reset: registers to power-on values, FIFO emptied, waiting host input kept", () => {
  const { uart, irq } = rig();
  wr(uart, UART_FCR, 0x01);
  wr(uart, UART_IER, 0x0f);
  wr(uart, UART_LCR, 0x83);
  uart.receive(bytes("0123456789abcdefXY"));
  uart.reset();
  assert.equal(irq.high, false);
  assert.equal(rd(uart, UART_IER), 0);
  assert.equal(rd(uart, UART_LCR), 0);
  assert.equal(rd(uart, UART_MCR), 0x08, "OUT2, as QEMU");
  assert.equal(rd(uart, UART_IIR), 0x01);
  assert.equal(String.fromCharCode(rd(uart, UART_RX)), "X", "FIFO dropped, host queue refills it");
});
