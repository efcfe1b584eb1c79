// How the daemon and a spare VMM talk (spare-vmm.ts starts it, spare-adoption.ts is its side): a VMM process
// started before any VM needs it, with its engine loaded and warmed up, that the daemon later gives one
// VM's spec. Until then it knows no VM and touches no VM file; from then on it is that VM's VMM exactly as a
// spawned one (vmm-main.ts, vmm-protocol.ts). Messages go over the IPC channel a VMM is spawned with:
//
//   spare → daemon   {"type":"spare-ready"}         engine loaded and prepared; idle from now on
//   daemon → spare   {"type":"adopt","specPath","logPath","engineModule"}   sent once, to one spare
//   spare → daemon   {"type":"adopted"}             its command line names specPath, its output goes to logPath
//                    {"type":"refused","message"}   nothing of the VM touched; it exits
//   then, as any VMM: {"type":"ready"} or {"type":"failed","message"}
//
// A spare whose IPC channel closes before it is adopted (its daemon stopped or died) exits.

import type { GuestFactory } from "./vmm-protocol.ts";

/** vmm-main.ts's first argument for a spare: `vmm-main <SPARE_FLAG> <engine module> <code stamp> [padding]`. */
export const SPARE_FLAG = "--spare";

/**
 * What an engine module exports: `createGuest`, and optionally `prepareGuest`, which a spare runs before it
 * has a VM (loading and warming up whatever every VM of the engine needs) so that a VM's start need not.
 */
export interface EngineModule {
  readonly createGuest?: GuestFactory;
  readonly prepareGuest?: () => Promise<void>;
}

export interface SpareArguments {
  readonly engineModule: string;
  /** The code the spare was started from (SpareVmmOptions.codeStamp), for `ps` and the logs. */
  readonly codeStamp: string;
}

/**
 * The spare's arguments after SPARE_FLAG. The padding makes its command line long enough to be rewritten
 * as the spec path of whichever VM adopts it (process.title cannot make it longer than it started).
 */
export function spareArguments(spare: SpareArguments, padBytes: number): string[] {
  return [SPARE_FLAG, spare.engineModule, spare.codeStamp, ...(padBytes > 0 ? ["=".repeat(padBytes)] : [])];
}

export function parseSpareArguments(args: readonly string[]): SpareArguments | undefined {
  const [flag, engineModule, codeStamp] = args;
  if (flag !== SPARE_FLAG || !engineModule || !codeStamp) return undefined;
  return { engineModule, codeStamp };
}

export type SpareToDaemon =
  | { readonly type: "spare-ready" }
  | { readonly type: "adopted" }
  | { readonly type: "refused"; readonly message: string };

export interface AdoptMessage {
  readonly type: "adopt";
  /** The VM's vmm-spec.json: what the spare runs, and what its command line must name from then on. */
  readonly specPath: string;
  /** The VM's vmm.log, where its stdout and stderr go from then on (as a spawned VMM's do). */
  readonly logPath: string;
  /** The engine module the VM needs: a spare prepared another refuses. */
  readonly engineModule: string;
}

export function isAdoptMessage(msg: unknown): msg is AdoptMessage {
  const m = msg as Partial<AdoptMessage> | null;
  return (
    typeof m === "object" &&
    m !== null &&
    m.type === "adopt" &&
    typeof m.specPath === "string" &&
    typeof m.logPath === "string" &&
    typeof m.engineModule === "string"
  );
}
