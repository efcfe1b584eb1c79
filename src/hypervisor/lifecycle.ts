// The VM lifecycle of Compute Engine (cloud.google.com/compute/docs/instances/instance-life-cycle): its
// states, the one table of legal transitions between them, and the states in which each action is legal.

import { VM_STATUSES } from "../api/schemas/vm-schemas.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export { VM_STATUSES };

export type VmStatus = (typeof VM_STATUSES)[number];

export function isVmStatus(value: unknown): value is VmStatus {
  return typeof value === "string" && (VM_STATUSES as readonly string[]).includes(value);
}

/**
 * Every legal transition, and the only place one is defined. Compute Engine's life cycle, plus the edges a
 * host needs when a step fails: the rollbacks go back to the state the action started from, so a failed
 * request "changes nothing" that the user can see.
 */
const TRANSITIONS: Readonly<Record<VmStatus, readonly VmStatus[]>> = {
  // Resources are reserved. Then the VMM is prepared; if reservation fails on start the VM stays
  // TERMINATED, and on resume it stays SUSPENDED (its state files untouched).
  // Every transitional status can also go to STOPPING: a stop of a VM stranded there by a status change
  // that could not be written (a full disk), with no operation running on it.
  PROVISIONING: ["STAGING", "TERMINATED", "SUSPENDED", "STOPPING"],
  // The VMM process is being started (fresh boot, or restoring a suspended state). A VMM that cannot start
  // rolls back like PROVISIONING does.
  STAGING: ["RUNNING", "TERMINATED", "SUSPENDED", "REPAIRING", "STOPPING"],
  // stop / guest power-off → STOPPING; suspend → SUSPENDING; VMM died or engine error → REPAIRING.
  // A guest reboot or an API reset keeps the VM RUNNING and is not a transition.
  RUNNING: ["STOPPING", "SUSPENDING", "REPAIRING"],
  // "CPU and memory released, disks kept."
  STOPPING: ["TERMINATED"],
  TERMINATED: ["PROVISIONING"],
  // The guest's whole state is written to files; a failed write resumes the guest (back to RUNNING), a VMM
  // that dies while suspending is repaired like one that dies while running.
  SUSPENDING: ["SUSPENDED", "RUNNING", "REPAIRING", "STOPPING"],
  // resume → PROVISIONING → STAGING → RUNNING; stop discards the saved state (Compute Engine allows
  // stopping a suspended instance).
  SUSPENDED: ["PROVISIONING", "STOPPING"],
  // Per the automaticRestart policy: a fresh boot (resources are still reserved, so straight to STAGING)
  // or TERMINATED.
  REPAIRING: ["STAGING", "TERMINATED", "STOPPING"],
};

export class IllegalTransitionError extends HypervisorError {
  constructor(
    readonly from: VmStatus,
    readonly to: VmStatus,
  ) {
    super(
      "illegal-transition",
      `a VM cannot go from ${from} to ${to}; from ${from} it can go only to ${TRANSITIONS[from].join(", ")}`,
    );
  }
}

export function canTransition(from: VmStatus, to: VmStatus): boolean {
  return TRANSITIONS[from].includes(to);
}

/** Returns `to` when the table allows from → to, else throws IllegalTransitionError naming both states. */
export function transition(from: VmStatus, to: VmStatus): VmStatus {
  if (!canTransition(from, to)) throw new IllegalTransitionError(from, to);
  return to;
}

export const VM_ACTIONS = [
  "start",
  "stop",
  "reset",
  "suspend",
  "resume",
  "delete",
  "setMachineType",
  "update",
  "exec",
  "export",
  "createSnapshot",
  "restoreSnapshot",
  "deleteSnapshot",
  "clone",
  "cloneSnapshot",
  "move",
] as const;
export type VmAction = (typeof VM_ACTIONS)[number];

/**
 * Where each API action is legal, and the first status it moves the VM to (undefined: the action does
 * not change the status by itself). Every target is checked against TRANSITIONS by the test.
 */
const ACTIONS: Readonly<Record<VmAction, { readonly from: readonly VmStatus[]; readonly first?: VmStatus }>> =
  {
    start: { from: ["TERMINATED"], first: "PROVISIONING" },
    // A suspended VM can be stopped: its saved state is discarded. A VM is found in a transitional status
    // with no operation running on it (operations on a VM are queued, and legality is checked when its
    // turn comes) only when a status change could not be written: stop ends it there (from STOPPING it
    // only finishes the stop).
    stop: {
      from: ["RUNNING", "SUSPENDED", "PROVISIONING", "STAGING", "STOPPING", "SUSPENDING", "REPAIRING"],
      first: "STOPPING",
    },
    // A hard reset of the machine: the VM stays RUNNING.
    reset: { from: ["RUNNING"] },
    suspend: { from: ["RUNNING"], first: "SUSPENDING" },
    resume: { from: ["SUSPENDED"], first: "PROVISIONING" },
    // Any status, so that no VM is ever stuck (and deleting frees space on a full disk); a VM with a running
    // VMM is stopped first (STOPPING, applied by the hypervisor only then).
    delete: { from: VM_STATUSES },
    // Compute Engine changes the machine type only of a stopped instance.
    setMachineType: { from: ["TERMINATED"] },
    // The definition (port forwards) changes only while no VMM runs with the old one (Compute Engine's
    // instances.update of a stopped instance); it takes effect at the next start.
    update: { from: ["TERMINATED"] },
    // A command runs in the guest through its agent: there must be a running guest.
    exec: { from: ["RUNNING"] },
    // An export reads the VM's files, which must be at rest: no guest writes its disk meanwhile (a running
    // VM is suspended or stopped first; docs/export-format.md).
    export: { from: ["TERMINATED", "SUSPENDED"] },
    // Snapshots (snapshots.ts) only of a VM at rest or running: never mid-transition. A restore moves the
    // VM through the statuses of a stop and a resume itself, as the snapshot needs.
    createSnapshot: { from: ["RUNNING", "TERMINATED", "SUSPENDED"] },
    restoreSnapshot: { from: ["RUNNING", "TERMINATED", "SUSPENDED"] },
    deleteSnapshot: { from: ["RUNNING", "TERMINATED", "SUSPENDED"] },
    // The source of a clone (clones.ts): its present disk is frozen and shared, so no guest may be writing
    // it; a saved state, if any, is shared too. A snapshot is immutable: any stable status will do.
    clone: { from: ["TERMINATED", "SUSPENDED"] },
    cloneSnapshot: { from: ["RUNNING", "TERMINATED", "SUSPENDED"] },
    // A move to another host (cluster/vm-moves.ts): a VM at rest goes as its files; a RUNNING one is
    // suspended, sent, and resumed there. Never mid-transition.
    move: { from: ["RUNNING", "TERMINATED", "SUSPENDED"] },
  };

export class IllegalActionError extends HypervisorError {
  constructor(
    readonly action: VmAction,
    readonly status: VmStatus,
    vmName: string,
  ) {
    super(
      "illegal-action",
      `cannot ${action} VM '${vmName}' while it is ${status}; ${action} is allowed only when the VM is ` +
        `${ACTIONS[action].from.join(" or ")}`,
    );
  }
}

export function isActionLegal(action: VmAction, status: VmStatus): boolean {
  return ACTIONS[action].from.includes(status);
}

/** The statuses in which `action` is legal. */
export function legalStatuses(action: VmAction): readonly VmStatus[] {
  return ACTIONS[action].from;
}

/** The status `action` moves a VM to first, or undefined when the action itself keeps the status. */
export function firstStatusOf(action: VmAction): VmStatus | undefined {
  return ACTIONS[action].first;
}

/** Throws IllegalActionError (naming the VM, the action, its status and where it is legal) unless legal. */
export function checkAction(action: VmAction, status: VmStatus, vmName: string): void {
  if (!isActionLegal(action, status)) throw new IllegalActionError(action, status, vmName);
}

/** Stable statuses: no operation is in progress on the VM. */
export const STABLE_STATUSES: readonly VmStatus[] = ["RUNNING", "TERMINATED", "SUSPENDED"];
