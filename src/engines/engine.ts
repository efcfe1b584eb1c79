// The interface the hypervisor sees of an engine that runs one VM (emulator or KVM): lifecycle, the exit
// event with a typed reason, statistics and declared capabilities.

import type { HartThreadStats } from "../machine/index.ts";

/** Why a VM stopped running. */
export type ExitReason =
  /** The guest powered off (sifive_test FINISHER_PASS or FINISHER_FAIL with its code). */
  | { readonly kind: "poweroff"; readonly code: number }
  /** The guest asked for a reset and the engine was told to exit on reset instead of rebooting. */
  | { readonly kind: "reset" }
  /** A bare-metal program ended through HTIF `tohost` with this exit code. */
  | { readonly kind: "htif-exit"; readonly code: number }
  /** The host stopped the VM (`stop()`). */
  | { readonly kind: "stopped" }
  /** The engine failed; the message is written for a user. */
  | { readonly kind: "error"; readonly message: string };

export interface EngineCapabilities {
  readonly snapshot: boolean;
  readonly dirtyPageTracking: boolean;
  readonly liveMigration: boolean;
}

export interface EngineStats {
  /** Instructions retired per vCPU since power-on. */
  readonly instret: readonly number[];
  /** Guest instructions per host second over the last measurement window. */
  readonly instructionsPerSecond: number;
  /** Host milliseconds spent running guest code since start. */
  readonly busyMs: number;
  /** Host milliseconds since start. */
  readonly uptimeMs: number;
  /** Guest resets so far. */
  readonly resets: number;
  /** Per vCPU 1… on a worker thread of its own: where that thread's time went (riscv hartThreads). */
  readonly hartThreads?: readonly HartThreadStats[];
}

export type EngineState = "created" | "running" | "paused" | "exited";

/** A VM's whole state (vCPUs, devices, RAM) as one engine saved it; only that kind of engine loads it. */
export interface EngineSnapshot {
  /** Which engine wrote it, e.g. "riscv". */
  readonly engine: string;
  readonly version: number;
  /** Named fields and typed arrays (the hypervisor writes the arrays as binary sections). */
  readonly data: unknown;
}

export interface Engine {
  readonly capabilities: EngineCapabilities;
  readonly state: EngineState;
  /** Resolves with the exit reason once the VM has stopped for good. */
  readonly exited: Promise<ExitReason>;
  /** Starts the vCPUs. Legal once, from "created". */
  start(): Promise<void>;
  /** Resolves once every vCPU is parked. Legal from "running". */
  pause(): Promise<void>;
  /** Legal from "paused". */
  resume(): Promise<void>;
  /** Stops the VM for good (exit reason "stopped" unless it had already exited). Legal in every state. */
  stop(): Promise<void>;
  /** Resets the machine as its reset button would: the guest boots again. Legal from "running" and "paused". */
  reset(): Promise<void>;
  /**
   * The VM's state, for suspend or migration. Legal from "paused", when capabilities.snapshot. With
   * `shareRam` the snapshot may hold the live RAM instead of a copy: true only until the VM runs again (a
   * suspend writes it while the VM stays paused).
   */
  saveState(options?: { readonly shareRam?: boolean }): Promise<EngineSnapshot>;
  /** Replaces the VM's state with a saved one (same configuration). Legal from "created" and "paused". */
  restoreState(snapshot: EngineSnapshot): Promise<void>;
  stats(): EngineStats;
  /**
   * Starts dirty-page tracking of guest RAM (when capabilities.dirtyPageTracking), with no page dirty: from
   * here on every write by a vCPU or a device marks its 4 KiB page.
   */
  startDirtyPageTracking?(): void;
  /** The guest RAM pages (numbers of 4 KiB pages from RAM's start) written since tracking started or since the last call, sorted; clears them. */
  takeDirtyPages?(): Uint32Array;
  stopDirtyPageTracking?(): void;
}

/** A lifecycle call made in a state where it is not legal. */
export class EngineStateError extends Error {
  readonly code = "engine-state";
  constructor(action: string, state: EngineState) {
    super(`cannot ${action} a VM that is ${state}`);
    this.name = "EngineStateError";
  }
}
