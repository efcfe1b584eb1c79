// The console UART of QEMU's virt board: an NS16550A (National Semiconductor PC16550D datasheet, "Register
// Description" and "FIFO Interrupt Mode Operation"), byte registers at stride 1, with a 16-byte receive FIFO.
//
// Transmission takes no time: a byte written to THR goes straight to the host, so THR is always empty and
// the guest never waits. Reception is paced by the guest: host bytes wait in an unbounded host-side queue
// and enter the FIFO only as it has room, so nothing is ever lost to an overrun.

import type { IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { CharSink } from "../ports.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";

// Register offsets (names as in Linux's include/uapi/linux/serial_reg.h).
export const UART_RX = 0; // in: receive buffer (DLAB=0)
export const UART_TX = 0; // out: transmit holding register (DLAB=0)
export const UART_DLL = 0; // divisor latch low (DLAB=1)
export const UART_IER = 1; // interrupt enable (DLAB=0)
export const UART_DLM = 1; // divisor latch high (DLAB=1)
export const UART_IIR = 2; // in: interrupt identification
export const UART_FCR = 2; // out: FIFO control
export const UART_LCR = 3;
export const UART_MCR = 4;
export const UART_LSR = 5;
export const UART_MSR = 6;
export const UART_SCR = 7;

export const UART_IER_RDI = 0x01;
export const UART_IER_THRI = 0x02;
export const UART_IER_RLSI = 0x04;
export const UART_IER_MSI = 0x08;

export const UART_IIR_NO_INT = 0x01;
export const UART_IIR_MSI = 0x00;
export const UART_IIR_THRI = 0x02;
export const UART_IIR_RDI = 0x04;
export const UART_IIR_RLSI = 0x06;
export const UART_IIR_CTI = 0x0c;
/** IIR bits 6-7 read 11 when the FIFOs are enabled: how drivers tell a 16550A from a 16450. */
export const UART_IIR_FIFO_ENABLED = 0xc0;

export const UART_FCR_ENABLE_FIFO = 0x01;
export const UART_FCR_CLEAR_RCVR = 0x02;
export const UART_FCR_CLEAR_XMIT = 0x04;
export const UART_FCR_DMA_SELECT = 0x08;
export const UART_FCR_TRIGGER_MASK = 0xc0;

export const UART_LCR_DLAB = 0x80;

export const UART_MCR_DTR = 0x01;
export const UART_MCR_RTS = 0x02;
export const UART_MCR_OUT1 = 0x04;
export const UART_MCR_OUT2 = 0x08;
export const UART_MCR_LOOP = 0x10;

export const UART_LSR_DR = 0x01;
export const UART_LSR_OE = 0x02;
export const UART_LSR_THRE = 0x20;
export const UART_LSR_TEMT = 0x40;
/** Line-status error bits (OE, PE, FE, BI): each raises RLSI and is cleared by reading LSR. */
const UART_LSR_INT_ANY = 0x1e;

export const UART_MSR_DCTS = 0x01;
export const UART_MSR_DDSR = 0x02;
export const UART_MSR_TERI = 0x04;
export const UART_MSR_DDCD = 0x08;
export const UART_MSR_CTS = 0x10;
export const UART_MSR_DSR = 0x20;
export const UART_MSR_RI = 0x40;
export const UART_MSR_DCD = 0x80;
const UART_MSR_ANY_DELTA = 0x0f;

export const UART_FIFO_SIZE = 16;
/** Bytes of the window on QEMU virt (0x1000_0000); the eight registers repeat through it, as in QEMU. */
export const UART_SIZE = 0x100;

/** Receiver trigger levels selected by FCR bits 6-7. */
const RX_TRIGGER = [1, 4, 8, 14];
/** Output collected between flushes; a full buffer flushes at once. */
const TX_BUFFER_SIZE = 4096;
const STATE_VERSION = 1;

export interface Uart16550State extends ComponentState {
  readonly ier: number;
  /** The FIFO control bits that persist: enable, DMA mode, trigger level. */
  readonly fcr: number;
  readonly lcr: number;
  readonly mcr: number;
  readonly scr: number;
  readonly dll: number;
  readonly dlm: number;
  /** LSR error bits not yet read (OE from a loopback overrun). */
  readonly lsrErrors: number;
  /** MSR delta bits not yet read. */
  readonly msrDelta: number;
  /** The THR-empty interrupt is pending (cleared by reading it from IIR or writing THR). */
  readonly thrInterruptPending: boolean;
  /** The character timeout has fired and no RBR read has cleared it. */
  readonly rxTimeout: boolean;
  /** Receive FIFO contents, oldest first. */
  readonly rxFifo: Uint8Array;
  /** Host input not yet in the FIFO, oldest first. */
  readonly hostInput: Uint8Array;
}

export class Uart16550 implements MmioDevice, Stateful<Uart16550State> {
  private ier = 0;
  private fcr = 0;
  private lcr = 0;
  private mcr = UART_MCR_OUT2;
  private scr = 0;
  private dll = 0x0c;
  private dlm = 0;
  private lsrErrors = 0;
  private msrDelta = 0;
  private thrPending = false;
  private rxTimeout = false;

  private readonly rx = new Uint8Array(UART_FIFO_SIZE);
  private rxHead = 0;
  private rxCount = 0;

  // Host input waiting for FIFO room: a ring that grows (host side, never on a guest access).
  private host = new Uint8Array(1024);
  private hostHead = 0;
  private hostCount = 0;

  private readonly tx = new Uint8Array(TX_BUFFER_SIZE);
  private txCount = 0;

  /**
   * @param sink receives the guest's output, in `flush()` (a fresh array each time: the sink may keep it)
   * @param irq the UART's interrupt output (QEMU virt: PLIC source 10)
   */
  constructor(
    private readonly sink: CharSink,
    private readonly irq: IrqLine,
    readonly id = "uart@10000000",
  ) {}

  /** Power-on register values (as QEMU's serial_reset); host input still waiting is kept. */
  reset(): void {
    this.ier = 0;
    this.fcr = 0;
    this.lcr = 0;
    this.mcr = UART_MCR_OUT2;
    this.scr = 0;
    this.dll = 0x0c; // 9600 baud at 1.8432 MHz: the conventional default
    this.dlm = 0;
    this.lsrErrors = 0;
    this.msrDelta = 0;
    this.thrPending = false;
    this.rxTimeout = false;
    this.rxHead = 0;
    this.rxCount = 0;
    this.fillRx();
    this.updateIrq();
  }

  /** Queue bytes typed on the host; they reach the guest as it reads the FIFO. */
  receive(bytes: Uint8Array): void {
    if (bytes.length === 0) return;
    const need = this.hostCount + bytes.length;
    if (need > this.host.length) {
      let size = this.host.length * 2;
      while (size < need) size *= 2;
      const grown = new Uint8Array(size);
      for (let i = 0; i < this.hostCount; i++) grown[i] = this.host[(this.hostHead + i) % this.host.length];
      this.host = grown;
      this.hostHead = 0;
    }
    const cap = this.host.length;
    let tail = (this.hostHead + this.hostCount) % cap;
    for (let i = 0; i < bytes.length; i++) {
      this.host[tail] = bytes[i];
      tail = tail + 1 === cap ? 0 : tail + 1;
    }
    this.hostCount = need;
    this.fillRx();
    this.updateIrq();
  }

  /** Bytes received from the host that the guest has not read yet (FIFO and host queue). */
  get inputPending(): number {
    return this.rxCount + this.hostCount;
  }

  /** Hand the guest's output so far to the sink; the board calls it between instruction slices. */
  flush(): void {
    if (this.txCount === 0) return;
    const out = this.tx.slice(0, this.txCount);
    this.txCount = 0;
    this.sink.write(out);
  }

  read(offset: number, width: AccessWidth): number {
    // QEMU's UART implements only byte access: a wider one is that many byte accesses, lowest first.
    if (width === 1) return this.readByte(offset);
    let v = 0;
    for (let i = 0; i < width; i++) v |= this.readByte(offset + i) << (8 * i);
    return v >>> 0;
  }

  write(offset: number, width: AccessWidth, value: number): void {
    if (width === 1) {
      this.writeByte(offset, value & 0xff);
      return;
    }
    for (let i = 0; i < width; i++) this.writeByte(offset + i, (value >>> (8 * i)) & 0xff);
  }

  saveState(): Uart16550State {
    // Output the guest has sent belongs to the host already, not to the snapshot.
    this.flush();
    const rxFifo = new Uint8Array(this.rxCount);
    for (let i = 0; i < this.rxCount; i++) rxFifo[i] = this.rx[(this.rxHead + i) % UART_FIFO_SIZE];
    const hostInput = new Uint8Array(this.hostCount);
    for (let i = 0; i < this.hostCount; i++) hostInput[i] = this.host[(this.hostHead + i) % this.host.length];
    return {
      version: STATE_VERSION,
      ier: this.ier,
      fcr: this.fcr,
      lcr: this.lcr,
      mcr: this.mcr,
      scr: this.scr,
      dll: this.dll,
      dlm: this.dlm,
      lsrErrors: this.lsrErrors,
      msrDelta: this.msrDelta,
      thrInterruptPending: this.thrPending,
      rxTimeout: this.rxTimeout,
      rxFifo,
      hostInput,
    };
  }

  loadState(state: Uart16550State): void {
    const id = this.id;
    const isByte = (v: unknown, mask: number) => Number.isInteger(v) && ((v as number) & ~mask) === 0;
    checkState(state.version === STATE_VERSION, id, `version ${state.version} is not ${STATE_VERSION}`);
    checkState(isByte(state.ier, 0x0f), id, "ier has bits other than the four interrupt enables");
    checkState(
      isByte(state.fcr, UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK),
      id,
      "fcr has bits that do not persist",
    );
    for (const name of ["lcr", "scr", "dll", "dlm"] as const)
      checkState(isByte(state[name], 0xff), id, `${name} is not a byte`);
    checkState(isByte(state.mcr, 0x1f), id, "mcr has bits above LOOP");
    checkState(isByte(state.lsrErrors, UART_LSR_INT_ANY), id, "lsrErrors has bits that are not errors");
    checkState(isByte(state.msrDelta, UART_MSR_ANY_DELTA), id, "msrDelta has bits that are not deltas");
    checkState(typeof state.thrInterruptPending === "boolean", id, "thrInterruptPending is not a boolean");
    checkState(typeof state.rxTimeout === "boolean", id, "rxTimeout is not a boolean");
    const capacity = state.fcr & UART_FCR_ENABLE_FIFO ? UART_FIFO_SIZE : 1;
    checkState(
      state.rxFifo instanceof Uint8Array && state.rxFifo.length <= capacity,
      id,
      `rxFifo is not at most ${capacity} bytes`,
    );
    checkState(state.hostInput instanceof Uint8Array, id, "hostInput is not bytes");

    this.ier = state.ier;
    this.fcr = state.fcr;
    this.lcr = state.lcr;
    this.mcr = state.mcr;
    this.scr = state.scr;
    this.dll = state.dll;
    this.dlm = state.dlm;
    this.lsrErrors = state.lsrErrors;
    this.msrDelta = state.msrDelta;
    this.thrPending = state.thrInterruptPending;
    this.rxTimeout = state.rxTimeout;
    this.rx.set(state.rxFifo);
    this.rxHead = 0;
    this.rxCount = state.rxFifo.length;
    this.host = new Uint8Array(Math.max(1024, state.hostInput.length));
    this.host.set(state.hostInput);
    this.hostHead = 0;
    this.hostCount = state.hostInput.length;
    this.txCount = 0;
    this.updateIrq();
  }

  private readByte(offset: number): number {
    // Guest-controlled: any offset; the eight registers repeat through the window.
    switch (offset & 7) {
      case UART_RX:
        return this.lcr & UART_LCR_DLAB ? this.dll : this.readRx();
      case UART_IER:
        return this.lcr & UART_LCR_DLAB ? this.dlm : this.ier;
      case UART_IIR: {
        const iid = this.interruptId();
        // Datasheet: the THRE interrupt is cleared "by reading the IIR (if source of interrupt)".
        if (iid === UART_IIR_THRI) {
          this.thrPending = false;
          this.updateIrq();
        }
        return iid | (this.fcr & UART_FCR_ENABLE_FIFO ? UART_IIR_FIFO_ENABLED : 0);
      }
      case UART_LCR:
        return this.lcr;
      case UART_MCR:
        return this.mcr;
      case UART_LSR: {
        const lsr = (this.rxCount > 0 ? UART_LSR_DR : 0) | this.lsrErrors | UART_LSR_THRE | UART_LSR_TEMT;
        if (this.lsrErrors !== 0) {
          this.lsrErrors = 0;
          this.updateIrq();
        }
        return lsr;
      }
      case UART_MSR: {
        const msr = this.modemStatus() | this.msrDelta;
        if (this.msrDelta !== 0) {
          this.msrDelta = 0;
          this.updateIrq();
        }
        return msr;
      }
      default:
        return this.scr;
    }
  }

  private writeByte(offset: number, value: number): void {
    // Guest-controlled: any offset and value; every register keeps only its defined bits.
    switch (offset & 7) {
      case UART_TX:
        if (this.lcr & UART_LCR_DLAB) this.dll = value;
        else this.transmit(value);
        return;
      case UART_IER: {
        if (this.lcr & UART_LCR_DLAB) {
          this.dlm = value;
          return;
        }
        const changed = (this.ier ^ value) & 0x0f;
        this.ier = value & 0x0f;
        // As QEMU (and Bochs): enabling THRI while THR is empty raises the interrupt even if it was
        // cleared by an IIR read before; Linux's start-up test for a working THRE interrupt relies on it.
        if (changed & UART_IER_THRI) this.thrPending = (this.ier & UART_IER_THRI) !== 0;
        this.updateIrq();
        return;
      }
      case UART_FCR:
        this.writeFcr(value);
        return;
      case UART_LCR:
        this.lcr = value;
        return;
      case UART_MCR: {
        const before = this.modemStatus();
        this.mcr = value & 0x1f;
        const after = this.modemStatus();
        const changed = before ^ after;
        if (changed & UART_MSR_CTS) this.msrDelta |= UART_MSR_DCTS;
        if (changed & UART_MSR_DSR) this.msrDelta |= UART_MSR_DDSR;
        if (changed & UART_MSR_DCD) this.msrDelta |= UART_MSR_DDCD;
        // TERI: "RI has changed from a low to a high state" on the pin, i.e. the RI bit went 1 → 0.
        if (before & UART_MSR_RI && !(after & UART_MSR_RI)) this.msrDelta |= UART_MSR_TERI;
        this.fillRx(); // leaving loopback reconnects the host input
        this.updateIrq();
        return;
      }
      case UART_LSR:
      case UART_MSR:
        return; // read-only (the datasheet's factory-test writes are not modelled)
      default:
        this.scr = value;
    }
  }

  private writeFcr(value: number): void {
    // Changing the FIFO enable resets both FIFOs (datasheet FCR bit 0).
    if ((value ^ this.fcr) & UART_FCR_ENABLE_FIFO) value |= UART_FCR_CLEAR_RCVR | UART_FCR_CLEAR_XMIT;
    if (value & UART_FCR_CLEAR_RCVR) {
      this.rxHead = 0;
      this.rxCount = 0;
      this.rxTimeout = false;
    }
    // The transmitter is always empty here; clearing it re-arms the THRE interrupt as in QEMU.
    if (value & UART_FCR_CLEAR_XMIT) this.thrPending = true;
    this.fcr = value & (UART_FCR_ENABLE_FIFO | UART_FCR_DMA_SELECT | UART_FCR_TRIGGER_MASK);
    this.fillRx();
    this.updateIrq();
  }

  private readRx(): number {
    if (this.rxCount === 0) return 0;
    const b = this.rx[this.rxHead];
    this.rxHead = (this.rxHead + 1) % UART_FIFO_SIZE;
    this.rxCount--;
    // Reading RBR clears the character timeout (datasheet, IIR table); it fires again below if data
    // under the trigger level remains.
    this.rxTimeout = false;
    this.fillRx();
    this.updateIrq();
    return b;
  }

  private transmit(byte: number): void {
    if (this.mcr & UART_MCR_LOOP) {
      // Loopback: the transmitter feeds the receiver. On overrun the datasheet keeps the FIFO's bytes and
      // loses the new one, but without FIFOs the new byte replaces the one in RBR ("destroying the
      // previous character").
      if (this.rxCount < this.rxCapacity()) this.pushRx(byte);
      else {
        this.lsrErrors |= UART_LSR_OE;
        if (!(this.fcr & UART_FCR_ENABLE_FIFO)) this.rx[this.rxHead] = byte;
      }
    } else {
      if (this.txCount === TX_BUFFER_SIZE) this.flush();
      this.tx[this.txCount++] = byte;
    }
    // The byte left at once: THR is empty again and its interrupt pends.
    this.thrPending = true;
    this.updateIrq();
  }

  private rxCapacity(): number {
    // Without FIFOs the receiver holds one byte (16450 mode).
    return this.fcr & UART_FCR_ENABLE_FIFO ? UART_FIFO_SIZE : 1;
  }

  private pushRx(byte: number): void {
    this.rx[(this.rxHead + this.rxCount) % UART_FIFO_SIZE] = byte;
    this.rxCount++;
  }

  /** Move host input into the FIFO while it has room (not in loopback: the serial input is cut off). */
  private fillRx(): void {
    if (this.mcr & UART_MCR_LOOP) return;
    const capacity = this.rxCapacity();
    while (this.rxCount < capacity && this.hostCount > 0) {
      this.pushRx(this.host[this.hostHead]);
      this.hostHead = this.hostHead + 1 === this.host.length ? 0 : this.hostHead + 1;
      this.hostCount--;
    }
  }

  /** MSR bits 4-7: the modem inputs (in loopback, MCR's outputs wired back as the datasheet describes). */
  private modemStatus(): number {
    const mcr = this.mcr;
    if (mcr & UART_MCR_LOOP)
      return (
        (mcr & UART_MCR_RTS ? UART_MSR_CTS : 0) |
        (mcr & UART_MCR_DTR ? UART_MSR_DSR : 0) |
        (mcr & UART_MCR_OUT1 ? UART_MSR_RI : 0) |
        (mcr & UART_MCR_OUT2 ? UART_MSR_DCD : 0)
      );
    // A host terminal is always there and ready: carrier, data set ready, clear to send (as QEMU).
    return UART_MSR_DCD | UART_MSR_DSR | UART_MSR_CTS;
  }

  /** IIR bits 0-3: the highest-priority pending, enabled interrupt (datasheet "Interrupt Control"). */
  private interruptId(): number {
    const ier = this.ier;
    if (ier & UART_IER_RLSI && this.lsrErrors !== 0) return UART_IIR_RLSI;
    if (ier & UART_IER_RDI && this.rxCount > 0) return this.rxTimeout ? UART_IIR_CTI : UART_IIR_RDI;
    if (ier & UART_IER_THRI && this.thrPending) return UART_IIR_THRI;
    if (ier & UART_IER_MSI && this.msrDelta !== 0) return UART_IIR_MSI;
    return UART_IIR_NO_INT;
  }

  private updateIrq(): void {
    // Data below the trigger level raises a character timeout after four character times without a read
    // or new input; host input arrives in bursts, so that time has always passed here. Once fired, the
    // timeout stays until RBR is read, even if more data arrives (as QEMU's).
    if (this.fcr & UART_FCR_ENABLE_FIFO && this.rxCount > 0 && this.rxCount < RX_TRIGGER[this.fcr >>> 6])
      this.rxTimeout = true;
    else if (this.rxCount === 0) this.rxTimeout = false;
    this.irq.set(this.interruptId() !== UART_IIR_NO_INT);
  }
}
