// The save/restore contract every device and hart implements.
//
// A state is a plain object of named fields (never positional arrays) with its own `version`; typed arrays
// are allowed and are written as binary sections. `loadState` validates everything before it changes
// anything, and throws StateError naming the component and the field when the state is unusable.
// Host handles (backends, clocks) come from constructor arguments, never from a state.

import { MachineError } from "../base/machine-error.ts";

export interface ComponentState {
  readonly version: number;
}

export interface Stateful<S extends ComponentState> {
  saveState(): S;
  loadState(state: S): void;
}

export class StateError extends MachineError {
  constructor(component: string, problem: string) {
    super("bad-state", `saved state of ${component} is unusable: ${problem}`);
  }
}

/** Throws StateError unless `cond` holds; for the validation step of loadState. */
export function checkState(cond: unknown, component: string, problem: string): asserts cond {
  if (!cond) throw new StateError(component, problem);
}
