// The core-local interruptor of QEMU's virt board: SiFive CLINT layout of the RISC-V ACLINT spec v1.0
// (§2 MTIMER: mtime/mtimecmp, §3 MSWI: msip), software and timer interrupts for every hart.

import { MachineError } from "../base/machine-error.ts";
import type { IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { Clock } from "../ports.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";
import { extractLanes, fitsInWord, insertLanes } from "./sub-word-access.ts";

/** Offsets inside the window (QEMU virt: base 0x0200_0000). */
export const CLINT_MSIP_BASE = 0x0000;
export const CLINT_MTIMECMP_BASE = 0x4000;
export const CLINT_MTIME = 0xbff8;
export const CLINT_SIZE = 0x10000;
/** "timebase-frequency" of QEMU virt's /cpus node, in Hz. */
export const CLINT_TIMEBASE_FREQ = 10_000_000;
/** ACLINT §3: "up to 4095 harts"; the mtimecmp array ends where mtime starts. */
export const CLINT_MAX_HARTS = 4095;

const TICKS_PER_MS = CLINT_TIMEBASE_FREQ / 1000;
const TWO_32 = 4294967296;
/** mtimecmp at or beyond this (29,000 years away) means "no timer": OpenSBI parks it at all-ones. */
const NO_DEADLINE = 2 ** 63;
const STATE_VERSION = 1;

export interface ClintState extends ComponentState {
  /** Guest time when saved, in ticks (exact, maybe fractional); host time is never saved. */
  readonly mtime: number;
  /** Per hart: the low and high halves of mtimecmp. */
  readonly mtimecmpLo: Uint32Array;
  readonly mtimecmpHi: Uint32Array;
  /** Per hart: msip bit 0. */
  readonly msip: Uint8Array;
}

export class Clint implements MmioDevice, Stateful<ClintState> {
  readonly harts: number;
  // Guest time is originTicks at host time originMs and runs at TICKS_PER_MS from there; writing mtime or
  // loading a state moves this origin, so host time never appears in the guest or in a saved state.
  private originMs: number;
  private originTicks = 0;
  private readonly cmpLo: Uint32Array;
  private readonly cmpHi: Uint32Array;
  /** mtimecmp as a double, for the comparison (exact below 2^53 ticks = 28 years). */
  private readonly cmp: Float64Array;
  private readonly msip: Uint8Array;

  /**
   * @param clock the host's monotonic clock
   * @param msipLines per hart, its MSIP input
   * @param mtipLines per hart, its MTIP input (same length)
   */
  constructor(
    private readonly clock: Clock,
    private readonly msipLines: readonly IrqLine[],
    private readonly mtipLines: readonly IrqLine[],
    readonly id = "clint@2000000",
  ) {
    const n = msipLines.length;
    if (n < 1 || n > CLINT_MAX_HARTS || mtipLines.length !== n)
      throw new MachineError(
        "bad-clint-config",
        `the CLINT needs one MSIP and one MTIP line per hart (1 to ${CLINT_MAX_HARTS} harts)`,
      );
    this.harts = n;
    this.cmpLo = new Uint32Array(n);
    this.cmpHi = new Uint32Array(n);
    this.cmp = new Float64Array(n);
    this.msip = new Uint8Array(n);
    this.originMs = clock.nowMs();
    this.reset();
  }

  /** Power-on state as QEMU's: mtime 0, no software interrupt, every mtimecmp 0 (so MTIP is pending). */
  reset(): void {
    this.originMs = this.clock.nowMs();
    this.originTicks = 0;
    // The ACLINT leaves mtimecmp's reset value unspecified; QEMU's is 0, and firmware such as OpenSBI
    // writes all-ones before it enables timer interrupts.
    this.cmpLo.fill(0);
    this.cmpHi.fill(0);
    for (let h = 0; h < this.harts; h++) {
      this.cmp[h] = this.cmpHi[h] * TWO_32 + this.cmpLo[h];
      this.msip[h] = 0;
      this.msipLines[h].set(false);
    }
    this.update();
  }

  /** Current mtime in ticks (an integer below 2^53); the hart's `time` CSR reads it. */
  mtime(): number {
    return Math.floor(this.ticksNow());
  }

  /**
   * Writes guest time's origin (host ms, ticks at that moment) into `out[0]`, `out[1]`: a hart on another
   * thread computes mtime from it and the same host clock (smp/time-base.ts). Returns true when it changed.
   */
  timeBase(out: Float64Array): boolean {
    if (out[0] === this.originMs && out[1] === this.originTicks) return false;
    out[0] = this.originMs;
    out[1] = this.originTicks;
    return true;
  }

  /** Re-evaluate every hart's MTIP against the current mtime; the board calls it between slices. */
  update(): void {
    const t = this.mtime();
    for (let h = 0; h < this.harts; h++) this.mtipLines[h].set(t >= this.cmp[h]);
  }

  /** Host time (the Clock's ms) at which the earliest not-yet-reached mtimecmp fires; Infinity if none. */
  nextDeadlineMs(): number {
    const t = this.ticksNow();
    let earliest = Number.POSITIVE_INFINITY;
    for (let h = 0; h < this.harts; h++) {
      const c = this.cmp[h];
      if (c <= t || c >= NO_DEADLINE) continue;
      const ms = this.originMs + (c - this.originTicks) / TICKS_PER_MS;
      if (ms < earliest) earliest = ms;
    }
    return earliest;
  }

  read(offset: number, width: AccessWidth): number {
    // Guest-controlled: offset and width; anything outside a register reads 0.
    if (offset < 0 || offset >= CLINT_SIZE || !fitsInWord(offset, width)) return 0;
    this.update();
    return extractLanes(this.readWord(offset & ~3), offset, width);
  }

  write(offset: number, width: AccessWidth, value: number): void {
    // Guest-controlled: offset, width and value; writes outside a register are ignored.
    if (offset < 0 || offset >= CLINT_SIZE || !fitsInWord(offset, width)) return;
    const word = offset & ~3;
    const merged = width === 4 ? value >>> 0 : insertLanes(this.readWord(word), offset, width, value);
    this.writeWord(word, merged);
    this.update();
  }

  saveState(): ClintState {
    return {
      version: STATE_VERSION,
      mtime: this.ticksNow(),
      mtimecmpLo: this.cmpLo.slice(),
      mtimecmpHi: this.cmpHi.slice(),
      msip: this.msip.slice(),
    };
  }

  loadState(state: ClintState): void {
    const n = this.harts;
    checkState(state.version === STATE_VERSION, this.id, `version ${state.version} is not ${STATE_VERSION}`);
    checkState(
      typeof state.mtime === "number" && Number.isFinite(state.mtime) && state.mtime >= 0,
      this.id,
      "mtime is not a non-negative number",
    );
    checkState(
      state.mtimecmpLo instanceof Uint32Array && state.mtimecmpLo.length === n,
      this.id,
      `mtimecmpLo is not ${n} 32-bit words`,
    );
    checkState(
      state.mtimecmpHi instanceof Uint32Array && state.mtimecmpHi.length === n,
      this.id,
      `mtimecmpHi is not ${n} 32-bit words`,
    );
    checkState(
      state.msip instanceof Uint8Array && state.msip.length === n,
      this.id,
      `msip is not ${n} bytes`,
    );
    checkState(
      state.msip.every((b) => b <= 1),
      this.id,
      "msip holds a value other than 0 or 1",
    );

    this.originMs = this.clock.nowMs();
    this.originTicks = state.mtime;
    this.cmpLo.set(state.mtimecmpLo);
    this.cmpHi.set(state.mtimecmpHi);
    this.msip.set(state.msip);
    for (let h = 0; h < n; h++) {
      this.cmp[h] = this.cmpHi[h] * TWO_32 + this.cmpLo[h];
      this.msipLines[h].set(this.msip[h] === 1);
    }
    this.update();
  }

  private ticksNow(): number {
    const elapsed = this.clock.nowMs() - this.originMs;
    // A Clock never goes backwards; should one, guest time stands still rather than running backwards.
    return this.originTicks + (elapsed > 0 ? elapsed * TICKS_PER_MS : 0);
  }

  private readWord(word: number): number {
    if (word < CLINT_MTIMECMP_BASE) {
      const h = (word - CLINT_MSIP_BASE) >>> 2;
      return h < this.harts ? this.msip[h] : 0;
    }
    if (word < CLINT_MTIME) {
      const h = (word - CLINT_MTIMECMP_BASE) >>> 3;
      if (h >= this.harts) return 0;
      return word & 4 ? this.cmpHi[h] : this.cmpLo[h];
    }
    if (word === CLINT_MTIME) return this.mtime() % TWO_32;
    if (word === CLINT_MTIME + 4) return Math.floor(this.mtime() / TWO_32) % TWO_32;
    return 0;
  }

  private writeWord(word: number, value: number): void {
    if (word < CLINT_MTIMECMP_BASE) {
      // Guest-controlled: the hart index is bounded by the number of harts.
      const h = (word - CLINT_MSIP_BASE) >>> 2;
      if (h >= this.harts) return;
      // ACLINT §3.1: "the upper 31 bits are wired to zero"; bit 0 is the hart's MSIP.
      this.msip[h] = value & 1;
      this.msipLines[h].set((value & 1) === 1);
      return;
    }
    if (word < CLINT_MTIME) {
      const h = (word - CLINT_MTIMECMP_BASE) >>> 3;
      if (h >= this.harts) return;
      if (word & 4) this.cmpHi[h] = value;
      else this.cmpLo[h] = value;
      this.cmp[h] = this.cmpHi[h] * TWO_32 + this.cmpLo[h];
      return;
    }
    if (word === CLINT_MTIME || word === CLINT_MTIME + 4) {
      // Writing one half of mtime keeps the other; guest time then continues from the new value.
      const now = this.mtime();
      const lo = now % TWO_32;
      const hi = Math.floor(now / TWO_32) % TWO_32;
      this.originTicks = word === CLINT_MTIME ? hi * TWO_32 + value : value * TWO_32 + lo;
      this.originMs = this.clock.nowMs();
    }
  }
}
