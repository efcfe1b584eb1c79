// Fault injection for the crash tests: with TSVM_CRASH_AT=<point> in its environment, the daemon or a VMM
// kills itself with SIGKILL (no handler runs, no file is closed: a power cut as far as tsvm can tell) when
// it reaches that point. Every point is listed here, with the operation that reaches it, so that a test can
// walk them all; a point the code never reaches makes that test fail.

/** The operations the crash test drives; `vmm` points are reached inside the VMM process. */
export type CrashOperation =
  | "insert"
  | "start"
  | "stop"
  | "suspend"
  | "resume"
  | "delete"
  | "reset"
  | "setMachineType"
  | "createSnapshot"
  | "restoreSnapshot";

export interface CrashPointInfo {
  readonly name: string;
  readonly operation: CrashOperation;
  /** Which process dies there. */
  readonly process: "daemon" | "vmm";
}

/** Before and after the durable write of each status an operation moves its VM through. */
function statusWrites(operation: CrashOperation, statuses: readonly string[]): CrashPointInfo[] {
  return statuses.flatMap((s) => [
    { name: `${operation}:${s}:before-write`, operation, process: "daemon" as const },
    { name: `${operation}:${s}:after-write`, operation, process: "daemon" as const },
  ]);
}

/** Points of the daemon are named after their operation; a VMM cannot tell which operation started it. */
function points(operation: CrashOperation, process: "daemon" | "vmm", names: readonly string[]) {
  return names.map((n) => ({ name: `${process === "vmm" ? "vmm" : operation}:${n}`, operation, process }));
}

export const CRASH_POINTS: readonly CrashPointInfo[] = [
  ...points("insert", "daemon", ["after-record", "after-disk-copy"]),
  ...statusWrites("insert", ["STAGING", "RUNNING"]),
  ...points("insert", "daemon", ["after-vmm-spawn"]),
  ...points("insert", "vmm", ["before-run-record", "after-run-record"]),
  ...statusWrites("start", ["PROVISIONING", "STAGING", "RUNNING"]),
  ...points("start", "daemon", ["after-vmm-spawn"]),
  ...statusWrites("stop", ["STOPPING", "TERMINATED"]),
  ...points("stop", "daemon", ["after-vmm-exit"]),
  ...points("stop", "vmm", ["before-exit-record", "after-exit-record"]),
  ...statusWrites("suspend", ["SUSPENDING", "SUSPENDED"]),
  ...points("suspend", "daemon", ["after-vmm-exit"]),
  ...points("suspend", "vmm", ["before-state-write", "after-state-write", "after-state-swap"]),
  ...statusWrites("resume", ["PROVISIONING", "STAGING", "RUNNING"]),
  ...points("resume", "daemon", ["after-vmm-spawn", "after-state-removed"]),
  ...points("delete", "daemon", ["before-remove", "after-remove"]),
  ...points("reset", "daemon", ["before-vmm-reset", "after-vmm-reset"]),
  ...points("setMachineType", "daemon", ["before-write", "after-write"]),
  // A running VM's snapshot: the VMM freezes the disk (disk-store.ts) while its guest is paused.
  ...points("createSnapshot", "vmm", ["before-freeze", "freeze-between-renames", "after-freeze"]),
  ...points("createSnapshot", "daemon", ["after-freeze", "after-record"]),
  ...points("restoreSnapshot", "daemon", ["after-disk-replaced", "after-state-linked"]),
];

const armed = process.env.TSVM_CRASH_AT;

/** Kills this process with SIGKILL when TSVM_CRASH_AT names `name`; otherwise does nothing. */
export function crashPoint(name: string): void {
  if (armed === undefined || armed !== name) return;
  process.stderr.write(`crash point ${name}: killing process ${process.pid} (TSVM_CRASH_AT)\n`);
  process.kill(process.pid, "SIGKILL");
}

/** `operation:STATUS:before-write` / `after-write` for a status change made on behalf of `operation`. */
export function statusWritePoint(
  operation: string | undefined,
  status: string,
  when: "before-write" | "after-write",
): void {
  if (armed !== undefined && operation !== undefined) crashPoint(`${operation}:${status}:${when}`);
}
