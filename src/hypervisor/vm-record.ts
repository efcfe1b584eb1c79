// The definition of one VM as persisted in its directory (vm.json): what it is, its status and the
// recorded history of its transitions. Its shape is the schema VmRecord (src/api/schemas/vm-schemas.ts,
// shared with the API's Instance); every read is checked against it.

import { randomUUID } from "node:crypto";
import { schemaCheck } from "../api/schemas/schema-check.ts";
import {
  MAX_HISTORY_ENTRIES,
  type TransitionEntry,
  VM_RECORD_FORMAT_VERSION,
  VmRecord,
} from "../api/schemas/vm-schemas.ts";
import { newIdentity } from "./guest-identity.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export {
  MAX_HISTORY_ENTRIES,
  VM_NAME_PATTERN,
  VM_RECORD_FORMAT_VERSION,
  VmRecord,
} from "../api/schemas/vm-schemas.ts";
export type TransitionRecord = TransitionEntry;

export class CorruptRecordError extends HypervisorError {
  constructor(
    readonly path: string,
    problem: string,
  ) {
    super("corrupt-record", `the VM definition ${path} is unusable: ${problem}; the file was left as it is`);
  }
}

const checkRecord = schemaCheck(VmRecord);

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
  const result = checkRecord(raw);
  if (!result.ok)
    throw new CorruptRecordError(
      path,
      `field '${result.problem.field || "(top level)"}' ${result.problem.text}`,
    );
  return result.value;
}

export function serializeVmRecord(record: VmRecord): string {
  return `${JSON.stringify(record, null, 2)}\n`;
}

/** The history of `record` with `entry` appended, trimmed to the newest MAX_HISTORY_ENTRIES. */
export function withHistory(record: VmRecord, entry: TransitionRecord): VmRecord["history"] {
  const history = [...record.history, entry];
  return history.length > MAX_HISTORY_ENTRIES ? history.slice(history.length - MAX_HISTORY_ENTRIES) : history;
}

/**
 * What every new VM's record starts with, however the VM was made (insert, clone): a new id and a new
 * identity, PROVISIONING since `at` for `reason`, never started, stopped or suspended.
 */
export function newRecordBasics(name: string, at: string, reason: string) {
  return {
    formatVersion: VM_RECORD_FORMAT_VERSION,
    id: randomUUID(),
    name,
    identity: newIdentity(name),
    status: "PROVISIONING",
    statusMessage: "",
    creationTimestamp: at,
    lastStartTimestamp: null,
    lastStopTimestamp: null,
    lastSuspendedTimestamp: null,
    history: [{ at, from: null, to: "PROVISIONING", reason }],
  } satisfies Partial<VmRecord>;
}
