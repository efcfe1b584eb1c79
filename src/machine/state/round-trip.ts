// The shared save/restore check every stateful component's test runs (state/stateful.ts contract):
// save → load into a fresh instance → save is equal, a mutation changes the state, a load copies rather
// than aliases, and a state with an unknown version is refused without touching the instance.
//
// It lives in the machine layer (no node:* imports) so any test can use it; the caller passes its own
// `assert` (node:assert/strict satisfies `StateAssert`).

import type { ComponentState, Stateful } from "./stateful.ts";
import { StateError } from "./stateful.ts";

/** The part of node:assert/strict the round trip needs. */
export interface StateAssert {
  deepStrictEqual(actual: unknown, expected: unknown, message?: string): void;
  notDeepStrictEqual(actual: unknown, expected: unknown, message?: string): void;
  ok(value: unknown, message?: string): void;
}

/** A deep copy of a state: plain objects, arrays and typed arrays are copied, primitives kept. */
export function cloneState<T>(value: T): T {
  if (ArrayBuffer.isView(value)) {
    const view = value as unknown as { slice(): unknown };
    return view.slice() as T;
  }
  if (Array.isArray(value)) return value.map((v) => cloneState(v)) as T;
  if (value !== null && typeof value === "object") {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) out[k] = cloneState(v);
    return out as T;
  }
  return value;
}

/**
 * Check the save/restore contract of one component type.
 * @param make builds a fresh instance (with its host handles: clocks, sinks, IRQ lines)
 * @param mutate changes the instance's guest-visible state (through its registers or inputs); applied
 *   once to the original and once to the restored copy. Omit it only for a component without state.
 */
export function assertRoundTrip<S extends ComponentState, D extends Stateful<S>>(
  assert: StateAssert,
  make: () => D,
  mutate?: (device: D) => void,
): void {
  const original = make();
  const before = original.saveState();
  mutate?.(original);
  const after = original.saveState();
  if (mutate) assert.notDeepStrictEqual(after, before, "the mutation must change the saved state");

  const kept = cloneState(after);
  const restored = make();
  restored.loadState(after);
  assert.deepStrictEqual(restored.saveState(), kept, "save → load → save must give the same state");
  assert.deepStrictEqual(after, kept, "loadState must not change the state it is given");

  // A restored instance must own its state: changing it must not reach back into the saved object.
  mutate?.(restored);
  assert.deepStrictEqual(after, kept, "loadState must copy, not alias, the state's arrays");

  // "validates everything before it changes anything": an unknown version is refused, nothing changes.
  const victim = make();
  victim.loadState(after);
  let refused = false;
  try {
    victim.loadState({ ...cloneState(after), version: after.version + 1000 });
  } catch (e) {
    refused = e instanceof StateError;
  }
  assert.ok(refused, "loadState must throw StateError for an unknown version");
  assert.deepStrictEqual(victim.saveState(), kept, "a refused loadState must leave the instance unchanged");
}
