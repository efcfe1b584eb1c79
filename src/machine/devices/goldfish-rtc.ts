// The real-time clock of QEMU's virt board: Android's goldfish RTC (the Android emulator's
// GOLDFISH-VIRTUAL-HARDWARE.TXT, "Goldfish real-time clock", as QEMU's hw/rtc/goldfish_rtc.c implements
// it): 64-bit nanoseconds since the Unix epoch and one alarm with an interrupt.
//
// Every 64-bit quantity is kept as two 32-bit halves: nanoseconds since 1970 (about 2^60) do not fit a
// double exactly, and guest accesses must not allocate BigInts.

import type { IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { Clock } from "../ports.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";
import { extractLanes, fitsInWord, insertLanes } from "./sub-word-access.ts";

export const RTC_TIME_LOW = 0x00;
export const RTC_TIME_HIGH = 0x04;
export const RTC_ALARM_LOW = 0x08;
export const RTC_ALARM_HIGH = 0x0c;
export const RTC_IRQ_ENABLED = 0x10;
export const RTC_CLEAR_ALARM = 0x14;
export const RTC_ALARM_STATUS = 0x18;
export const RTC_CLEAR_INTERRUPT = 0x1c;
/** Bytes of the window on QEMU virt (0x0010_1000). */
export const GOLDFISH_RTC_SIZE = 0x1000;

const TWO_32 = 4294967296;
const NS_PER_MS = 1_000_000;
const STATE_VERSION = 1;

export interface GoldfishRtcState extends ComponentState {
  /** Guest time minus host wall time, in ns, as the halves of a 64-bit two's-complement number. */
  readonly offsetLo: number;
  readonly offsetHi: number;
  /** The alarm, in guest ns. */
  readonly alarmLo: number;
  readonly alarmHi: number;
  /** TIME_HIGH as latched by the last TIME_LOW read. */
  readonly timeHigh: number;
  readonly irqEnabled: boolean;
  readonly alarmRunning: boolean;
  readonly irqPending: boolean;
}

export class GoldfishRtc implements MmioDevice, Stateful<GoldfishRtcState> {
  private offsetLo = 0;
  private offsetHi = 0;
  private alarmLo = 0;
  private alarmHi = 0;
  private timeHigh = 0;
  private irqEnabled = false;
  private alarmRunning = false;
  private irqPending = false;
  // The current guest time, written by sampleTime(); fields rather than a returned pair so that a guest
  // access allocates nothing.
  private nowLo = 0;
  private nowHi = 0;

  /**
   * @param clock the host's monotonic clock: `nextDeadlineMs()` is in its milliseconds
   * @param irq the RTC's interrupt output (QEMU virt: PLIC source 11)
   * @param wallClockMs host wall time in ms since the Unix epoch (Date.now in Node and browsers)
   */
  constructor(
    private readonly clock: Clock,
    private readonly irq: IrqLine,
    private readonly wallClockMs: () => number = Date.now,
    readonly id = "rtc@101000",
  ) {}

  /** Power-on as QEMU's: the time back to host wall time, alarm and interrupt off. */
  reset(): void {
    this.offsetLo = 0;
    this.offsetHi = 0;
    this.alarmLo = 0;
    this.alarmHi = 0;
    this.timeHigh = 0;
    this.irqEnabled = false;
    this.alarmRunning = false;
    this.irqPending = false;
    this.updateIrq();
  }

  /** Fire the alarm if its time has come; the board calls it between slices (and at its deadline). */
  update(): void {
    if (!this.alarmRunning) return;
    this.sampleTime();
    if (this.alarmDue()) this.raiseAlarm();
  }

  /** Clock time (ms) at which the running alarm fires; Infinity when none is set. */
  nextDeadlineMs(): number {
    if (!this.alarmRunning) return Number.POSITIVE_INFINITY;
    this.sampleTime();
    let lo = this.alarmLo - this.nowLo;
    let hi = this.alarmHi - this.nowHi;
    if (lo < 0) {
      lo += TWO_32;
      hi -= 1;
    }
    const aheadNs = hi * TWO_32 + lo;
    return this.clock.nowMs() + (aheadNs > 0 ? aheadNs / NS_PER_MS : 0);
  }

  read(offset: number, width: AccessWidth): number {
    // Guest-controlled: offset and width; anything outside a register reads 0.
    if (offset < 0 || offset >= GOLDFISH_RTC_SIZE || !fitsInWord(offset, width)) return 0;
    return extractLanes(this.readWord(offset & ~3), offset, width);
  }

  write(offset: number, width: AccessWidth, value: number): void {
    // Guest-controlled: offset, width and value; writes outside a register are ignored.
    if (offset < 0 || offset >= GOLDFISH_RTC_SIZE || !fitsInWord(offset, width)) return;
    const word = offset & ~3;
    // A narrow write merges into the register without reading it (reading TIME_LOW latches).
    const merged = width === 4 ? value >>> 0 : insertLanes(this.peekWord(word), offset, width, value);
    this.writeWord(word, merged);
  }

  saveState(): GoldfishRtcState {
    return {
      version: STATE_VERSION,
      offsetLo: this.offsetLo,
      offsetHi: this.offsetHi,
      alarmLo: this.alarmLo,
      alarmHi: this.alarmHi,
      timeHigh: this.timeHigh,
      irqEnabled: this.irqEnabled,
      alarmRunning: this.alarmRunning,
      irqPending: this.irqPending,
    };
  }

  loadState(state: GoldfishRtcState): void {
    const id = this.id;
    const isU32 = (v: unknown) => Number.isInteger(v) && (v as number) >= 0 && (v as number) < TWO_32;
    checkState(state.version === STATE_VERSION, id, `version ${state.version} is not ${STATE_VERSION}`);
    for (const name of ["offsetLo", "offsetHi", "alarmLo", "alarmHi", "timeHigh"] as const)
      checkState(isU32(state[name]), id, `${name} is not a 32-bit unsigned number`);
    for (const name of ["irqEnabled", "alarmRunning", "irqPending"] as const)
      checkState(typeof state[name] === "boolean", id, `${name} is not a boolean`);

    this.offsetLo = state.offsetLo;
    this.offsetHi = state.offsetHi;
    this.alarmLo = state.alarmLo;
    this.alarmHi = state.alarmHi;
    this.timeHigh = state.timeHigh;
    this.irqEnabled = state.irqEnabled;
    this.alarmRunning = state.alarmRunning;
    this.irqPending = state.irqPending;
    this.updateIrq();
  }

  /** Set nowLo/nowHi to the guest time: host wall time in ns plus the guest's offset, modulo 2^64. */
  private sampleTime(): void {
    const ms = this.wallClockMs();
    const m = Number.isFinite(ms) && ms > 0 ? ms : 0;
    // ns = whole ms · 10^6 + the fraction's ns, computed on 32-bit halves so every step stays exact.
    const whole = Math.floor(m);
    const fracNs = Math.floor((m - whole) * NS_PER_MS);
    const wholeHi = Math.floor(whole / TWO_32);
    const low = (whole % TWO_32) * NS_PER_MS + fracNs; // < 2^53
    const lowCarry = Math.floor(low / TWO_32);
    let lo = (low % TWO_32) + this.offsetLo;
    let hi = wholeHi * NS_PER_MS + lowCarry + this.offsetHi;
    if (lo >= TWO_32) {
      lo -= TWO_32;
      hi += 1;
    }
    this.nowLo = lo;
    this.nowHi = hi % TWO_32;
  }

  private alarmDue(): boolean {
    // As QEMU: the alarm fires once guest time reaches it (unsigned 64-bit comparison).
    return this.alarmHi < this.nowHi || (this.alarmHi === this.nowHi && this.alarmLo <= this.nowLo);
  }

  private raiseAlarm(): void {
    this.alarmRunning = false;
    this.irqPending = true;
    this.updateIrq();
  }

  private updateIrq(): void {
    this.irq.set(this.irqPending && this.irqEnabled);
  }

  /** A register's value without side effects (TIME_LOW reads as the low half of the current time). */
  private peekWord(word: number): number {
    switch (word) {
      case RTC_TIME_LOW:
        this.sampleTime();
        return this.nowLo;
      case RTC_TIME_HIGH:
        return this.timeHigh;
      case RTC_ALARM_LOW:
        return this.alarmLo;
      case RTC_ALARM_HIGH:
        return this.alarmHi;
      case RTC_IRQ_ENABLED:
        return this.irqEnabled ? 1 : 0;
      case RTC_ALARM_STATUS:
        return this.alarmRunning ? 1 : 0;
      default:
        return 0;
    }
  }

  private readWord(word: number): number {
    if (word === RTC_TIME_LOW) {
      // Reading TIME_LOW latches TIME_HIGH, so the two halves a driver reads belong to one instant.
      this.sampleTime();
      this.timeHigh = this.nowHi;
      return this.nowLo;
    }
    return this.peekWord(word);
  }

  private writeWord(word: number, value: number): void {
    switch (word) {
      case RTC_TIME_LOW:
      case RTC_TIME_HIGH: {
        // Setting one half of the time keeps the other: the offset moves by (new half - current half).
        this.sampleTime();
        if (word === RTC_TIME_LOW) {
          const sum = this.offsetLo + (value - this.nowLo);
          const carry = Math.floor(sum / TWO_32);
          this.offsetLo = sum - carry * TWO_32;
          this.offsetHi = (((this.offsetHi + carry) % TWO_32) + TWO_32) % TWO_32;
        } else {
          this.offsetHi = (((this.offsetHi + value - this.nowHi) % TWO_32) + TWO_32) % TWO_32;
        }
        return;
      }
      case RTC_ALARM_LOW:
        // Writing ALARM_LOW arms the alarm (drivers write ALARM_HIGH first); a time already past fires now.
        this.alarmLo = value;
        this.sampleTime();
        if (this.alarmDue()) this.raiseAlarm();
        else this.alarmRunning = true;
        return;
      case RTC_ALARM_HIGH:
        this.alarmHi = value;
        return;
      case RTC_IRQ_ENABLED:
        this.irqEnabled = (value & 1) === 1;
        this.updateIrq();
        return;
      case RTC_CLEAR_ALARM:
        this.alarmRunning = false;
        return;
      case RTC_CLEAR_INTERRUPT:
        this.irqPending = false;
        this.updateIrq();
        return;
    }
  }
}
