// The debug trigger CSRs of a hart (RISC-V Debug Specification 0.13.2, §5 "Trigger Module": tselect,
// tdata1–tdata3, tinfo) with the registers and write filtering of QEMU 7.2's virt hart (target/riscv/debug.c).
//
// Triggers are registers only: they never fire. QEMU turns an enabled trigger into a breakpoint or
// watchpoint (a breakpoint exception on a match); here a match would cost a compare on every fetch, load
// and store of the interpreter and of compiled blocks. Programs that probe for triggers (OpenSBI's Sdtrig
// support, Linux's hw_breakpoint, debuggers) see what QEMU shows them; one that arms a trigger and waits
// for it to fire does not get the exception. TODO(#11): fire execute triggers if a guest needs them.

import { type ComponentState, checkState } from "../state/stateful.ts";

export const CSR_TSELECT = 0x7a0;
export const CSR_TDATA1 = 0x7a1;
export const CSR_TDATA2 = 0x7a2;
export const CSR_TDATA3 = 0x7a3;
export const CSR_TINFO = 0x7a4;

/** QEMU's RV_MAX_TRIGGERS. */
export const TRIGGER_COUNT = 2;

// tdata1 type (bits 63:60, here bits 31:28 of the high half).
const TRIGGER_TYPE_AD_MATCH = 2;
const TRIGGER_TYPE_AD_MATCH6 = 6;
const TYPE_SHIFT_HI = 28;

/** "tinfo: One bit for each possible type enumerated in tdata1. Bit N corresponds to type N." */
const TINFO = (1 << TRIGGER_TYPE_AD_MATCH) | (1 << TRIGGER_TYPE_AD_MATCH6);

// mcontrol (type 2) and mcontrol6 (type 6) fields QEMU keeps; dmode, match, chain, action, timing, select
// and hit are hard-wired zero there.
const MCONTROL_LOAD = 1 << 0;
const MCONTROL_STORE = 1 << 1;
const MCONTROL_EXECUTE = 1 << 2;
const MCONTROL_U = 1 << 3;
const MCONTROL_S = 1 << 4;
const MCONTROL_M = 1 << 6;
const MCONTROL_MODES_LSX =
  MCONTROL_LOAD | MCONTROL_STORE | MCONTROL_EXECUTE | MCONTROL_U | MCONTROL_S | MCONTROL_M;
const MCONTROL_SIZELO = 3 << 16;
const MCONTROL_SIZEHI = 3 << 21;
const MCONTROL6_SIZE = 0xf << 16;
const MCONTROL6_VU = 1 << 23;
const MCONTROL6_VS = 1 << 24;

/** Access sizes QEMU supports (any, 1, 2, 4 and 8 bytes); the others are written as 0 ("any"). */
function sizeSupported(size: number): boolean {
  return size <= 3 || size === 5;
}

/** The low half of tdata1 that a write of `lo` leaves for a trigger of `type` (2 or 6). */
function filterControl(type: number, lo: number): number {
  if (type === TRIGGER_TYPE_AD_MATCH) {
    const size = (((lo >>> 21) & 3) << 2) | ((lo >>> 16) & 3);
    const sizeBits = sizeSupported(size) ? lo & (MCONTROL_SIZELO | MCONTROL_SIZEHI) : 0;
    return (lo & MCONTROL_MODES_LSX) | sizeBits;
  }
  const sizeBits = sizeSupported((lo >>> 16) & 0xf) ? lo & MCONTROL6_SIZE : 0;
  return (lo & (MCONTROL_MODES_LSX | MCONTROL6_VU | MCONTROL6_VS)) | sizeBits;
}

function typeOf(hi: number): number {
  return hi >>> TYPE_SHIFT_HI;
}

/** Saved triggers: 64-bit values as (low, high) int32 pairs, trigger i at 2i. */
export interface DebugTriggersState extends ComponentState {
  readonly version: 1;
  readonly tselect: number;
  readonly tdata1: Int32Array;
  readonly tdata2: Int32Array;
}

export class DebugTriggers {
  /** Result of read(): low and high 32 bits. */
  lo = 0;
  hi = 0;
  private tselect = 0;
  private readonly tdata1 = new Int32Array(TRIGGER_COUNT * 2);
  private readonly tdata2 = new Int32Array(TRIGGER_COUNT * 2);

  constructor() {
    this.reset();
  }

  /** Whether `csr` is one of the trigger CSRs (all M-mode read/write; the hart checks the privilege). */
  static handles(csr: number): boolean {
    return csr >= CSR_TSELECT && csr <= CSR_TINFO;
  }

  /** QEMU's riscv_trigger_init: every trigger an address/data match (type 2) with nothing enabled. */
  reset(): void {
    this.tselect = 0;
    for (let i = 0; i < TRIGGER_COUNT; i++) {
      this.tdata1[2 * i] = 0;
      this.tdata1[2 * i + 1] = TRIGGER_TYPE_AD_MATCH << TYPE_SHIFT_HI;
    }
    this.tdata2.fill(0);
  }

  /** Reads a trigger CSR into lo/hi. Never traps: every trigger has tdata1–tdata3 (types 2 and 6). */
  read(csr: number): void {
    const i = 2 * this.tselect;
    switch (csr) {
      case CSR_TSELECT:
        this.lo = this.tselect;
        this.hi = 0;
        return;
      case CSR_TDATA1:
        this.lo = this.tdata1[i]!;
        this.hi = this.tdata1[i + 1]!;
        return;
      case CSR_TDATA2:
        this.lo = this.tdata2[i]!;
        this.hi = this.tdata2[i + 1]!;
        return;
      case CSR_TINFO:
        this.lo = TINFO;
        this.hi = 0;
        return;
      default:
        // tdata3: QEMU keeps one per trigger but no write reaches it.
        this.lo = 0;
        this.hi = 0;
    }
  }

  write(csr: number, lo: number, hi: number): void {
    const i = 2 * this.tselect;
    switch (csr) {
      case CSR_TSELECT:
        // "If tselect is written with a value that does not correspond to a trigger, the value held is
        // the previous one" (QEMU: written only when below RV_MAX_TRIGGERS, compared as unsigned).
        if (hi === 0 && lo >>> 0 < TRIGGER_COUNT) this.tselect = lo;
        return;
      case CSR_TDATA1: {
        // A write names the type; QEMU ignores a write of a type it does not implement.
        const type = typeOf(hi);
        if (type !== TRIGGER_TYPE_AD_MATCH && type !== TRIGGER_TYPE_AD_MATCH6) return;
        this.tdata1[i] = filterControl(type, lo);
        this.tdata1[i + 1] = type << TYPE_SHIFT_HI;
        return;
      }
      case CSR_TDATA2:
        this.tdata2[i] = lo;
        this.tdata2[i + 1] = hi;
        return;
      default:
      // tdata3 (not supported by type 2 or 6 triggers) and tinfo: the write is ignored.
    }
  }

  saveState(): DebugTriggersState {
    return { version: 1, tselect: this.tselect, tdata1: this.tdata1.slice(), tdata2: this.tdata2.slice() };
  }

  /** Loads saved triggers; `id` names the owner in errors (hart0). Validates everything first. */
  loadState(s: DebugTriggersState, id = "debug triggers"): void {
    checkState(typeof s === "object" && s !== null, id, "triggers are not an object");
    checkState(s.version === 1, id, `triggers version ${s.version} is not supported (expected 1)`);
    checkState(
      Number.isInteger(s.tselect) && s.tselect >= 0 && s.tselect < TRIGGER_COUNT,
      id,
      `tselect ${s.tselect} is not a trigger`,
    );
    for (const k of ["tdata1", "tdata2"] as const)
      checkState(
        s[k] instanceof Int32Array && s[k].length === TRIGGER_COUNT * 2,
        id,
        `${k} is not an Int32Array of ${TRIGGER_COUNT * 2}`,
      );
    for (let t = 0; t < TRIGGER_COUNT; t++) {
      const lo = s.tdata1[2 * t]!;
      const hi = s.tdata1[2 * t + 1]!;
      const type = typeOf(hi);
      checkState(
        (type === TRIGGER_TYPE_AD_MATCH || type === TRIGGER_TYPE_AD_MATCH6) &&
          hi === type << TYPE_SHIFT_HI &&
          lo === filterControl(type, lo),
        id,
        `tdata1 of trigger ${t} holds bits no write can set`,
      );
    }
    this.tselect = s.tselect;
    this.tdata1.set(s.tdata1);
    this.tdata2.set(s.tdata2);
  }
}
