// The core-local interruptor of QEMU's virt board: SiFive CLINT layout of the RISC-V ACLINT spec v1.0
// (§2 MTIMER: mtime/mtimecmp, §3 MSWI: msip), software and timer interrupts for every hart. Its registers
// live in a buffer of their own (clint-registers.ts): a hart on another thread has a Clint of its own over
// the same registers, and programs its timer or sends an IPI without a round trip to the board's thread.

import { MachineError } from "../base/machine-error.ts";
import type { IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { Clock } from "../ports.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";
import { ClintRegisters } from "./clint-registers.ts";
import { extractLanes, fitsInWord, insertLanes } from "./sub-word-access.ts";

/** Offsets inside the window (QEMU virt: base 0x0200_0000). */
export const CLINT_MSIP_BASE = 0x0000;
export const CLINT_MTIMECMP_BASE = 0x4000;
export const CLINT_MTIME = 0xbff8;
export const CLINT_SIZE = 0x10000;
export { CLINT_TIMEBASE_FREQ } from "./clint-registers.ts";
/** ACLINT §3: "up to 4095 harts"; the mtimecmp array ends where mtime starts. */
export const CLINT_MAX_HARTS = 4095;

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

/** How a CLINT shares its registers with views on other threads. */
export interface ClintSharing {
  /** The registers (default: the CLINT's own, reset when made). */
  readonly regs?: ClintRegisters;
  /** A register of hart `h` (msip, mtimecmp) was written through this view: whoever else looks at hart
   * `h`'s lines must look again (wake a hart sleeping on another thread). Not called for `reset` or
   * `loadState`. */
  readonly onHartWritten?: (h: number) => void;
}

export class Clint implements MmioDevice, Stateful<ClintState> {
  readonly harts: number;
  /** The registers and guest time's origin; shared with the CLINT views of harts on other threads. */
  readonly regs: ClintRegisters;
  private readonly onHartWritten: ((h: number) => void) | null;

  /**
   * @param clock the host's monotonic clock (the same on every thread sharing `regs`)
   * @param msipLines per hart, its MSIP input
   * @param mtipLines per hart, its MTIP input (same length)
   * @param sharing the registers when CLINT views on several threads share them
   */
  constructor(
    private readonly clock: Clock,
    private readonly msipLines: readonly IrqLine[],
    private readonly mtipLines: readonly IrqLine[],
    readonly id = "clint@2000000",
    sharing: ClintSharing = {},
  ) {
    const regs = sharing.regs;
    const n = msipLines.length;
    if (n < 1 || n > CLINT_MAX_HARTS || mtipLines.length !== n || (regs !== undefined && regs.harts !== n))
      throw new MachineError(
        "bad-clint-config",
        `the CLINT needs one MSIP and one MTIP line per hart (1 to ${CLINT_MAX_HARTS} harts)`,
      );
    this.harts = n;
    this.regs = regs ?? new ClintRegisters(new ArrayBuffer(ClintRegisters.bytes(n)), n);
    this.onHartWritten = sharing.onHartWritten ?? null;
    if (regs === undefined) this.reset();
  }

  /** Power-on state as QEMU's: mtime 0, no software interrupt, every mtimecmp 0 (so MTIP is pending). */
  reset(): void {
    const regs = this.regs;
    regs.setOrigin(this.clock.nowMs(), 0);
    // The ACLINT leaves mtimecmp's reset value unspecified; QEMU's is 0, and firmware such as OpenSBI
    // writes all-ones before it enables timer interrupts.
    for (let h = 0; h < this.harts; h++) {
      regs.setCmp(h, 0, 0);
      regs.msip[h] = 0;
      this.msipLines[h]!.set(false);
    }
    this.update();
  }

  /** Current mtime in ticks (an integer below 2^53); the hart's `time` CSR reads it. */
  mtime(): number {
    return Math.floor(this.ticksNow());
  }

  /**
   * Re-evaluates every hart's MTIP against the current mtime, and its MSIP (a view on another thread may
   * have written it); the board calls it between slices.
   */
  update(): void {
    const t = this.mtime();
    const regs = this.regs;
    for (let h = 0; h < this.harts; h++) {
      this.mtipLines[h]!.set(t >= regs.cmp[h]!);
      this.msipLines[h]!.set(regs.msip[h] === 1);
    }
  }

  /** `update()` for hart `h` alone (a hart on its own thread looks at its own lines). */
  updateHart(h: number): void {
    const regs = this.regs;
    this.mtipLines[h]!.set(this.mtime() >= regs.cmp[h]!);
    this.msipLines[h]!.set(regs.msip[h] === 1);
  }

  /**
   * Host time (the Clock's ms) at which the earliest not-yet-reached mtimecmp of harts [from, to) fires
   * (default: every hart); Infinity if none.
   */
  nextDeadlineMs(from = 0, to = this.harts): number {
    const t = this.ticksNow();
    const cmp = this.regs.cmp;
    let earliest = Number.POSITIVE_INFINITY;
    for (let h = from; h < to; h++) {
      const c = cmp[h]!;
      if (c <= t || c >= NO_DEADLINE || c >= earliest) continue;
      earliest = c;
    }
    return earliest === Number.POSITIVE_INFINITY ? earliest : this.regs.msAt(earliest);
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
      mtimecmpLo: new Uint32Array(this.regs.cmpLo),
      mtimecmpHi: new Uint32Array(this.regs.cmpHi),
      msip: new Uint8Array(this.regs.msip),
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

    const regs = this.regs;
    regs.setOrigin(this.clock.nowMs(), state.mtime);
    for (let h = 0; h < n; h++) {
      regs.setCmp(h, state.mtimecmpLo[h]!, state.mtimecmpHi[h]!);
      regs.msip[h] = state.msip[h]!;
      this.msipLines[h]!.set(regs.msip[h] === 1);
    }
    this.update();
  }

  private ticksNow(): number {
    return this.regs.ticksAt(this.clock.nowMs());
  }

  private readWord(word: number): number {
    if (word < CLINT_MTIMECMP_BASE) {
      const h = (word - CLINT_MSIP_BASE) >>> 2;
      return h < this.harts ? this.regs.msip[h]! : 0;
    }
    if (word < CLINT_MTIME) {
      const h = (word - CLINT_MTIMECMP_BASE) >>> 3;
      if (h >= this.harts) return 0;
      return (word & 4 ? this.regs.cmpHi[h]! : this.regs.cmpLo[h]!) >>> 0;
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
      this.regs.msip[h] = value & 1;
      this.msipLines[h]!.set((value & 1) === 1);
      this.onHartWritten?.(h);
      return;
    }
    if (word < CLINT_MTIME) {
      const h = (word - CLINT_MTIMECMP_BASE) >>> 3;
      if (h >= this.harts) return;
      const regs = this.regs;
      if (word & 4) regs.setCmp(h, regs.cmpLo[h]!, value);
      else regs.setCmp(h, value, regs.cmpHi[h]!);
      this.onHartWritten?.(h);
      return;
    }
    if (word === CLINT_MTIME || word === CLINT_MTIME + 4) {
      // Writing one half of mtime keeps the other; guest time then continues from the new value.
      const now = this.mtime();
      const lo = now % TWO_32;
      const hi = Math.floor(now / TWO_32) % TWO_32;
      this.regs.setOrigin(
        this.clock.nowMs(),
        word === CLINT_MTIME ? hi * TWO_32 + value : value * TWO_32 + lo,
      );
    }
  }
}
