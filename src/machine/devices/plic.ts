// The platform-level interrupt controller of QEMU's virt board: a SiFive PLIC as in the RISC-V PLIC
// Specification v1.0.0 ("Memory Map" through "Interrupt Completion"),
// with 95 level-triggered sources and two contexts per hart (2h = M-mode, 2h+1 = S-mode).

import { MachineError } from "../base/machine-error.ts";
import type { IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import type { ComponentState, Stateful } from "../state/stateful.ts";
import { checkState } from "../state/stateful.ts";
import { extractLanes, fitsInWord, insertLanes } from "./sub-word-access.ts";

/** QEMU virt's VIRT_IRQCHIP_NUM_SOURCES: source ids 1..95 exist, 0 means "no interrupt". */
export const PLIC_NUM_SOURCES = 96;
/** QEMU virt's 3 priority bits: priorities 1..7 (0 = never interrupt). */
export const PLIC_MAX_PRIORITY = 7;
export const PLIC_PRIORITY_BASE = 0x0;
export const PLIC_PENDING_BASE = 0x1000;
export const PLIC_ENABLE_BASE = 0x2000;
export const PLIC_ENABLE_STRIDE = 0x80;
export const PLIC_CONTEXT_BASE = 0x200000;
export const PLIC_CONTEXT_STRIDE = 0x1000;
export const PLIC_CONTEXT_THRESHOLD = 0x0;
export const PLIC_CONTEXT_CLAIM = 0x4;
/** PLIC spec "Memory Map": contexts 0..15871. */
export const PLIC_MAX_CONTEXTS = 15872;

/** Bytes of the register window for `contexts` contexts (QEMU's VIRT_PLIC_SIZE). */
export function plicSize(contexts: number): number {
  return PLIC_CONTEXT_BASE + contexts * PLIC_CONTEXT_STRIDE;
}

/** 32-bit words holding one bit per source. */
const WORDS = PLIC_NUM_SOURCES / 32;
const STATE_VERSION = 1;

export interface PlicState extends ComponentState {
  /** Per source (index 0 unused, always 0). */
  readonly priority: Uint8Array;
  /** Bit per source: a request the gateway has forwarded and no hart has claimed. */
  readonly pending: Uint32Array;
  /** Bit per source: claimed and not yet completed; the gateway holds further requests back. */
  readonly claimed: Uint32Array;
  /** Bit per source: the level its device drives. */
  readonly level: Uint32Array;
  /** WORDS words per context. */
  readonly enable: Uint32Array;
  /** Per context. */
  readonly threshold: Uint8Array;
}

/** The input wire of one source: a device drives it, the PLIC's gateway samples it. */
class PlicSourceLine implements IrqLine {
  constructor(
    private readonly plic: Plic,
    private readonly source: number,
  ) {}
  set(level: boolean): void {
    this.plic.setSourceLevel(this.source, level);
  }
}

export class Plic implements MmioDevice, Stateful<PlicState> {
  readonly contexts: number;
  private readonly priority = new Uint8Array(PLIC_NUM_SOURCES);
  private readonly pending = new Uint32Array(WORDS);
  private readonly claimed = new Uint32Array(WORDS);
  private readonly level = new Uint32Array(WORDS);
  private readonly enable: Uint32Array;
  private readonly threshold: Uint8Array;
  private readonly sources: PlicSourceLine[] = [];

  /** @param contextLines per context, the hart interrupt it drives (2h: hart h's MEIP, 2h+1: its SEIP) */
  constructor(
    private readonly contextLines: readonly IrqLine[],
    readonly id = "plic@c000000",
  ) {
    const n = contextLines.length;
    if (n < 1 || n > PLIC_MAX_CONTEXTS)
      throw new MachineError("bad-plic-config", `the PLIC needs 1 to ${PLIC_MAX_CONTEXTS} context lines`);
    this.contexts = n;
    this.enable = new Uint32Array(WORDS * n);
    this.threshold = new Uint8Array(n);
    for (let s = 0; s < PLIC_NUM_SOURCES; s++) this.sources.push(new PlicSourceLine(this, s));
  }

  /** Bytes of this PLIC's register window. */
  get size(): number {
    return plicSize(this.contexts);
  }

  /** The input line of source `n` (1..95) for the device wired to it. */
  sourceLine(n: number): IrqLine {
    if (!Number.isInteger(n) || n < 1 || n >= PLIC_NUM_SOURCES)
      throw new MachineError(
        "bad-plic-source",
        `PLIC source ${n} does not exist (1 to ${PLIC_NUM_SOURCES - 1})`,
      );
    return this.sources[n];
  }

  /** Power-on state: all priorities, enables and thresholds 0, nothing claimed; wires keep their level. */
  reset(): void {
    this.priority.fill(0);
    this.enable.fill(0);
    this.threshold.fill(0);
    this.claimed.fill(0);
    this.pending.set(this.level);
    this.updateOutputs();
  }

  /** The gateway of a level-triggered source (called through `sourceLine(n).set`). */
  setSourceLevel(source: number, high: boolean): void {
    const w = source >>> 5;
    const bit = 1 << (source & 31);
    if (high) {
      // Devices re-assert their level on every register access: a line already high changes nothing,
      // since it is then pending or claimed (an invariant loadState checks too).
      if ((this.level[w] & bit) !== 0) return;
      this.level[w] |= bit;
      // Gateway (privileged spec v1.10 §7.4, kept by the PLIC spec): no new request for a source until
      // its previous one is completed.
      if ((this.claimed[w] & bit) === 0) this.pending[w] |= bit;
    } else {
      // The gateway has already forwarded the request: its pending bit stays until a claim, even when the
      // device drops the line first (as QEMU 7.2.15 and later; the claimant may find nothing to do).
      this.level[w] &= ~bit;
      return;
    }
    this.updateOutputs();
  }

  read(offset: number, width: AccessWidth): number {
    // Guest-controlled: offset and width; anything outside a register reads 0.
    if (offset < 0 || offset >= this.size || !fitsInWord(offset, width)) return 0;
    return extractLanes(this.readWord(offset & ~3), offset, width);
  }

  write(offset: number, width: AccessWidth, value: number): void {
    // Guest-controlled: offset, width and value; writes outside a register are ignored.
    if (offset < 0 || offset >= this.size || !fitsInWord(offset, width)) return;
    const word = offset & ~3;
    // A narrow write merges into the register's current value; the claim register is not read for it,
    // since reading it claims.
    const merged = width === 4 ? value >>> 0 : insertLanes(this.peekWord(word), offset, width, value);
    this.writeWord(word, merged);
  }

  saveState(): PlicState {
    return {
      version: STATE_VERSION,
      priority: this.priority.slice(),
      pending: this.pending.slice(),
      claimed: this.claimed.slice(),
      level: this.level.slice(),
      enable: this.enable.slice(),
      threshold: this.threshold.slice(),
    };
  }

  loadState(state: PlicState): void {
    const id = this.id;
    checkState(state.version === STATE_VERSION, id, `version ${state.version} is not ${STATE_VERSION}`);
    checkState(
      state.priority instanceof Uint8Array && state.priority.length === PLIC_NUM_SOURCES,
      id,
      `priority is not ${PLIC_NUM_SOURCES} bytes`,
    );
    checkState(
      state.priority[0] === 0 && state.priority.every((p) => p <= PLIC_MAX_PRIORITY),
      id,
      `a priority is above ${PLIC_MAX_PRIORITY}, or source 0 has one`,
    );
    for (const name of ["pending", "claimed", "level"] as const) {
      const bits = state[name];
      checkState(bits instanceof Uint32Array && bits.length === WORDS, id, `${name} is not ${WORDS} words`);
      checkState((bits[0] & 1) === 0, id, `${name} has a bit for source 0`);
    }
    for (let w = 0; w < WORDS; w++) {
      checkState((state.pending[w] & state.claimed[w]) === 0, id, "a source is both pending and claimed");
      checkState(
        (state.level[w] & ~(state.pending[w] | state.claimed[w])) === 0,
        id,
        "a source's line is high but it is neither pending nor claimed",
      );
    }
    checkState(
      state.enable instanceof Uint32Array && state.enable.length === WORDS * this.contexts,
      id,
      `enable is not ${WORDS} words for each of ${this.contexts} contexts`,
    );
    for (let c = 0; c < this.contexts; c++)
      checkState((state.enable[c * WORDS] & 1) === 0, id, `context ${c} enables source 0`);
    checkState(
      state.threshold instanceof Uint8Array && state.threshold.length === this.contexts,
      id,
      `threshold is not ${this.contexts} bytes`,
    );
    checkState(
      state.threshold.every((t) => t <= PLIC_MAX_PRIORITY),
      id,
      `a threshold is above ${PLIC_MAX_PRIORITY}`,
    );

    this.priority.set(state.priority);
    this.pending.set(state.pending);
    this.claimed.set(state.claimed);
    this.level.set(state.level);
    this.enable.set(state.enable);
    this.threshold.set(state.threshold);
    this.updateOutputs();
  }

  /**
   * The source `ctx` would claim now: the pending, unclaimed, enabled source of highest priority above the
   * context's threshold, the lowest id among equals (spec "Interrupt Claim Process"); 0 if none.
   */
  private bestFor(ctx: number): number {
    let best = 0;
    let bestPriority = this.threshold[ctx];
    const enableBase = ctx * WORDS;
    for (let w = 0; w < WORDS; w++) {
      let bits = this.pending[w] & ~this.claimed[w] & this.enable[enableBase + w];
      while (bits !== 0) {
        const low = bits & -bits;
        const source = w * 32 + (31 - Math.clz32(low));
        bits ^= low;
        // Spec "Interrupt Priorities": "a priority value of 0 is reserved to mean never interrupt"; only priority strictly
        // above the threshold is delivered. Strictly greater keeps the lowest id among equals.
        if (this.priority[source] > bestPriority) {
          bestPriority = this.priority[source];
          best = source;
        }
      }
    }
    return best;
  }

  private updateOutputs(): void {
    for (let c = 0; c < this.contexts; c++) this.contextLines[c].set(this.bestFor(c) !== 0);
  }

  /** A register's value without side effects (the claim register reads as 0 here). */
  private peekWord(word: number): number {
    if (word >= PLIC_CONTEXT_BASE) {
      const ctx = ((word - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE) | 0;
      const reg = (word - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
      return reg === PLIC_CONTEXT_THRESHOLD && ctx < this.contexts ? this.threshold[ctx] : 0;
    }
    if (word >= PLIC_ENABLE_BASE) {
      const ctx = ((word - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE) | 0;
      const w = ((word - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >>> 2;
      return ctx < this.contexts && w < WORDS ? this.enable[ctx * WORDS + w] : 0;
    }
    if (word >= PLIC_PENDING_BASE) {
      const w = (word - PLIC_PENDING_BASE) >>> 2;
      return w < WORDS ? this.pending[w] : 0;
    }
    const source = (word - PLIC_PRIORITY_BASE) >>> 2;
    return source < PLIC_NUM_SOURCES ? this.priority[source] : 0;
  }

  private readWord(word: number): number {
    if (
      word >= PLIC_CONTEXT_BASE &&
      (word - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE === PLIC_CONTEXT_CLAIM
    ) {
      // Guest-controlled: the context index is bounded by the window size checked in read().
      const ctx = ((word - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE) | 0;
      return this.claim(ctx);
    }
    return this.peekWord(word);
  }

  private claim(ctx: number): number {
    const source = this.bestFor(ctx);
    if (source !== 0) {
      const w = source >>> 5;
      const bit = 1 << (source & 31);
      this.pending[w] &= ~bit;
      this.claimed[w] |= bit;
      this.updateOutputs();
    }
    return source;
  }

  private complete(ctx: number, source: number): void {
    // Guest-controlled: the id written; ids that are not sources are ignored.
    if (source < 1 || source >= PLIC_NUM_SOURCES) return;
    const w = source >>> 5;
    const bit = 1 << (source & 31);
    // Spec "Interrupt Completion": "If the completion ID does not match an interrupt source that is currently enabled for the
    // target, the completion is silently ignored."
    if ((this.enable[ctx * WORDS + w] & bit) === 0 || (this.claimed[w] & bit) === 0) return;
    this.claimed[w] &= ~bit;
    // The gateway may forward the next request: a line still high is one.
    if ((this.level[w] & bit) !== 0) this.pending[w] |= bit;
    this.updateOutputs();
  }

  private writeWord(word: number, value: number): void {
    if (word >= PLIC_CONTEXT_BASE) {
      const ctx = ((word - PLIC_CONTEXT_BASE) / PLIC_CONTEXT_STRIDE) | 0;
      const reg = (word - PLIC_CONTEXT_BASE) % PLIC_CONTEXT_STRIDE;
      if (ctx >= this.contexts) return;
      if (reg === PLIC_CONTEXT_THRESHOLD) {
        // WARL: only the implemented priority bits are kept.
        this.threshold[ctx] = value & PLIC_MAX_PRIORITY;
        this.updateOutputs();
      } else if (reg === PLIC_CONTEXT_CLAIM) this.complete(ctx, value);
      return;
    }
    if (word >= PLIC_ENABLE_BASE) {
      const ctx = ((word - PLIC_ENABLE_BASE) / PLIC_ENABLE_STRIDE) | 0;
      const w = ((word - PLIC_ENABLE_BASE) % PLIC_ENABLE_STRIDE) >>> 2;
      if (ctx >= this.contexts || w >= WORDS) return;
      // Source 0 does not exist: its enable bit is hardwired to 0.
      this.enable[ctx * WORDS + w] = w === 0 ? value & ~1 : value;
      this.updateOutputs();
      return;
    }
    // The pending array is read-only (spec "Interrupt Pending Bits"); writes to it are ignored.
    if (word >= PLIC_PENDING_BASE) return;
    const source = (word - PLIC_PRIORITY_BASE) >>> 2;
    if (source === 0 || source >= PLIC_NUM_SOURCES) return;
    this.priority[source] = value & PLIC_MAX_PRIORITY;
    this.updateOutputs();
  }
}
