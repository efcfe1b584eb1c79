// The definition of one VM as persisted in its directory (vm.json): what it is, its status and the
// recorded history of its transitions, with the validation every read goes through.

import { HypervisorError } from "./hypervisor-error.ts";
import { isVmStatus, type VmStatus } from "./lifecycle.ts";

export const VM_RECORD_FORMAT_VERSION = 1;
/** Older entries are dropped so that a VM that flaps for months keeps a bounded definition file. */
export const MAX_HISTORY_ENTRIES = 500;

/** Compute Engine's instance names (RFC 1035 labels): also safe as a directory name. */
export const VM_NAME_PATTERN = /^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

export interface TransitionRecord {
  /** ISO 8601 time of the transition. */
  readonly at: string;
  /** null for the first entry (the VM was created). */
  readonly from: VmStatus | null;
  readonly to: VmStatus;
  /** Why, in a user's words: "insert", "stop requested", "guest powered off", "VMM exited with signal SIGKILL". */
  readonly reason: string;
}

export interface VmRecord {
  readonly formatVersion: number;
  /** Stable unique id (a VM deleted and re-created with the same name gets a new one). */
  readonly id: string;
  readonly name: string;
  readonly machineType: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly diskMiB: number;
  readonly image: string;
  readonly engine: string;
  /** Compute Engine's scheduling.automaticRestart: after a VMM crash, boot again (true) or stay TERMINATED. */
  readonly automaticRestart: boolean;
  /** CPU cap in percent of one host core (100 = one full core), or null for no cap. */
  readonly cpuCapPercent: number | null;
  /** Relative share under contention, 1..10000 (cgroup v2 cpu.weight semantics), default 100. */
  readonly cpuWeight: number;
  readonly status: VmStatus;
  /** The last error or notice a user should see next to the status ("" when none). */
  readonly statusMessage: string;
  readonly creationTimestamp: string;
  readonly lastStartTimestamp: string | null;
  readonly lastStopTimestamp: string | null;
  readonly lastSuspendedTimestamp: string | null;
  readonly history: readonly TransitionRecord[];
}

export class CorruptRecordError extends HypervisorError {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super("corrupt-record", `the VM definition ${path} is unusable: ${problem}; the file was left as it is`);
  }
}

function isIsoTime(v: unknown): v is string {
  return typeof v === "string" && v.length <= 40 && !Number.isNaN(Date.parse(v));
}

function isInt(v: unknown, min: number, max: number): v is number {
  return typeof v === "number" && Number.isInteger(v) && v >= min && v <= max;
}

/**
 * Parses and validates the text of a vm.json. Every field is checked before anything uses the record;
 * the first problem found is reported with the field's name.
 */
export function parseVmRecord(text: string, path: string): VmRecord {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CorruptRecordError(path, `it is not valid JSON (${(e as Error).message})`);
  }
  const bad = (field: string, want: string): never => {
    throw new CorruptRecordError(path, `field '${field}' must be ${want}`);
  };
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) bad("(top level)", "an object");
  const r = raw as Record<string, unknown>;
  if (r.formatVersion !== VM_RECORD_FORMAT_VERSION)
    bad("formatVersion", `${VM_RECORD_FORMAT_VERSION} (this tsvm reads only that version)`);
  if (typeof r.id !== "string" || r.id.length === 0 || r.id.length > 64) bad("id", "a non-empty string");
  if (typeof r.name !== "string" || !VM_NAME_PATTERN.test(r.name)) bad("name", "a valid VM name");
  if (typeof r.machineType !== "string" || r.machineType.length === 0 || r.machineType.length > 64)
    bad("machineType", "a non-empty string");
  if (!isInt(r.cpus, 1, 1024)) bad("cpus", "an integer from 1 to 1024");
  if (!isInt(r.memoryMiB, 1, 1 << 30)) bad("memoryMiB", "a positive integer");
  if (!isInt(r.diskMiB, 0, 1 << 30)) bad("diskMiB", "a non-negative integer");
  if (typeof r.image !== "string" || r.image.length > 256) bad("image", "a string");
  if (typeof r.engine !== "string" || r.engine.length === 0 || r.engine.length > 64)
    bad("engine", "a non-empty string");
  if (typeof r.automaticRestart !== "boolean") bad("automaticRestart", "true or false");
  if (r.cpuCapPercent !== null && !isInt(r.cpuCapPercent, 1, 100 * 1024))
    bad("cpuCapPercent", "null or a positive integer");
  if (!isInt(r.cpuWeight, 1, 10000)) bad("cpuWeight", "an integer from 1 to 10000");
  if (!isVmStatus(r.status)) bad("status", "a VM status");
  if (typeof r.statusMessage !== "string") bad("statusMessage", "a string");
  if (!isIsoTime(r.creationTimestamp)) bad("creationTimestamp", "an ISO 8601 time");
  for (const f of ["lastStartTimestamp", "lastStopTimestamp", "lastSuspendedTimestamp"] as const)
    if (r[f] !== null && !isIsoTime(r[f])) bad(f, "null or an ISO 8601 time");
  if (!Array.isArray(r.history) || r.history.length > MAX_HISTORY_ENTRIES)
    bad("history", `an array of at most ${MAX_HISTORY_ENTRIES} entries`);
  (r.history as unknown[]).forEach((h, i) => {
    const e = h as Record<string, unknown>;
    if (typeof h !== "object" || h === null) bad(`history[${i}]`, "an object");
    if (!isIsoTime(e.at)) bad(`history[${i}].at`, "an ISO 8601 time");
    if (e.from !== null && !isVmStatus(e.from)) bad(`history[${i}].from`, "null or a VM status");
    if (!isVmStatus(e.to)) bad(`history[${i}].to`, "a VM status");
    if (typeof e.reason !== "string") bad(`history[${i}].reason`, "a string");
  });
  return r as unknown as VmRecord;
}

export function serializeVmRecord(record: VmRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** The history of `record` with `entry` appended, trimmed to the newest MAX_HISTORY_ENTRIES. */
export function withHistory(record: VmRecord, entry: TransitionRecord): VmRecord["history"] {
  const history = [...record.history, entry];
  return history.length > MAX_HISTORY_ENTRIES ? history.slice(history.length - MAX_HISTORY_ENTRIES) : history;
}
