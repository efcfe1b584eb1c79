// The contract of a device fuzz target (one device driven by seeded hostile inputs) and the loop that runs
// one: it counts inputs, host exceptions and broken invariants, so the same targets serve the test suite
// (a few thousand inputs) and bench/fuzz-devices.ts (millions).

import type { GuestRam } from "../../bus/guest-ram.ts";
import type { ComponentState, Stateful } from "../../state/stateful.ts";
import { SeededRandom } from "./seeded-random.ts";

/** An invariant a target checks was broken (not a host exception: the device misbehaved without throwing). */
export class FuzzViolation extends Error {}

export interface DeviceFuzzTarget {
  /** Applies one guest input: a register access, a ring edit, a notification, a host completion, … */
  step(): void;
  /** Throws FuzzViolation when an invariant no longer holds (RAM outside the named buffers, state round trip). */
  check(): void;
  /** How often the inputs reached the device's deeper paths (completed chains, errors signalled, …), so a
   *  test can tell a fuzzer that only ever hits the front door from one that goes through it. */
  readonly coverage: Record<string, number>;
}

export interface DeviceFuzzer {
  /** The device as the report names it. */
  readonly name: string;
  make(random: SeededRandom): DeviceFuzzTarget;
}

export interface FuzzRun {
  readonly inputs: number;
  /** Host exceptions thrown out of the device (never allowed). */
  readonly exceptions: number;
  /** Broken invariants (never allowed). */
  readonly violations: number;
  /** The first exception or violation, with the seed and input that reproduce it. */
  readonly firstFailure: string | null;
  readonly coverage: Record<string, number>;
}

/**
 * Runs `inputs` inputs of one target made from `seed`, checking its invariants every `checkEvery` inputs and
 * at the end. Awaits between checks so that completions a device deferred to a microtask land.
 */
export async function runFuzzer(
  fuzzer: DeviceFuzzer,
  seed: number,
  inputs: number,
  checkEvery = 500,
): Promise<FuzzRun> {
  const target = fuzzer.make(new SeededRandom(seed));
  let exceptions = 0;
  let violations = 0;
  let firstFailure: string | null = null;
  const failed = (what: string, at: number, e: unknown) => {
    const message = e instanceof Error ? (e.stack ?? e.message) : String(e);
    firstFailure ??= `${fuzzer.name}, seed ${seed}, input ${at}: ${what}: ${message}`;
  };
  const check = (at: number) => {
    try {
      target.check();
    } catch (e) {
      violations++;
      failed(e instanceof FuzzViolation ? "invariant broken" : "exception in check", at, e);
    }
  };
  for (let i = 0; i < inputs; i++) {
    try {
      target.step();
    } catch (e) {
      if (e instanceof FuzzViolation) {
        violations++;
        failed("invariant broken", i, e);
      } else {
        exceptions++;
        failed("host exception", i, e);
      }
    }
    if ((i + 1) % checkEvery === 0) {
      check(i);
      await Promise.resolve();
    }
  }
  check(inputs);
  await Promise.resolve();
  return { inputs, exceptions, violations, firstFailure, coverage: { ...target.coverage } };
}

/** Deep equality of two saved states: plain objects, arrays, typed arrays and primitives. */
export function statesEqual(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (ArrayBuffer.isView(a) || ArrayBuffer.isView(b)) {
    if (!ArrayBuffer.isView(a) || !ArrayBuffer.isView(b) || a.constructor !== b.constructor) return false;
    const x = a as unknown as ArrayLike<number>;
    const y = b as unknown as ArrayLike<number>;
    if (x.length !== y.length) return false;
    for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
    return true;
  }
  if (Array.isArray(a) || Array.isArray(b)) {
    if (!Array.isArray(a) || !Array.isArray(b) || a.length !== b.length) return false;
    return a.every((v, i) => statesEqual(v, b[i]));
  }
  if (a === null || b === null || typeof a !== "object" || typeof b !== "object") return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b).sort();
  if (ka.length !== kb.length || ka.some((k, i) => k !== kb[i])) return false;
  return ka.every((k) => statesEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k]));
}

/**
 * Whatever state a guest drives a device into must survive a snapshot: `device`'s state loads into the fresh
 * instance `fresh` and saves back equal. A guest that could make its own snapshot unloadable would break
 * suspend, resume and migration.
 */
export function checkStateRoundTrip<S extends ComponentState>(device: Stateful<S>, fresh: Stateful<S>): void {
  const saved = device.saveState();
  try {
    fresh.loadState(saved);
  } catch (e) {
    throw new FuzzViolation(`a state the guest produced does not load: ${(e as Error).message}`);
  }
  if (!statesEqual(fresh.saveState(), saved))
    throw new FuzzViolation("save → load → save gives a different state");
}

/**
 * A copy of guest RAM outside [arenaStart, arenaEnd) (offsets into `ram.u8`): the bytes no buffer the fuzzer
 * names may reach. `changedAt` finds the first changed byte.
 */
export class RamCanary {
  private readonly before: Uint8Array;

  constructor(
    private readonly ram: GuestRam,
    private readonly arenaStart: number,
    private readonly arenaEnd: number,
  ) {
    this.before = ram.u8.slice();
  }

  /** Throws FuzzViolation when a byte outside the arena changed. */
  check(): void {
    const now = this.ram.u8;
    const was = this.before;
    for (let i = 0; i < now.length; i++) {
      if (i === this.arenaStart) i = this.arenaEnd;
      if (i < now.length && now[i] !== was[i])
        throw new FuzzViolation(`RAM outside the named buffers changed at offset 0x${i.toString(16)}`);
    }
  }
}
