// What the hypervisor asks of the place its VM records live: create, read, compare-and-set writes by
// revision, list and remove. Two implementations: the data directory's vm.json files (store.ts,
// FileVmRecords; the single-host default) and etcd (cluster/etcd-vm-records.ts; docs/cluster.md).

import { HypervisorError } from "./hypervisor-error.ts";
import type { VmRecord } from "./vm-record.ts";

/** A record with the revision it was read or written at; a write must name it (compare-and-set). */
export interface StoredVmRecord {
  readonly record: VmRecord;
  readonly revision: number;
}

/** A VM whose record cannot be used; listed so that a user sees it, never overwritten. */
export interface BrokenVm {
  readonly name: string;
  readonly error: HypervisorError;
}

/**
 * Revisions increase with every change of a record and are never reused for one name while the store
 * lives; a write or remove naming another revision than the record's current one changes nothing and
 * throws RevisionConflictError. That is what keeps two writers (two hosts, later: a host that lost its
 * lease and the host that took its VMs over) from overwriting each other's changes.
 */
export interface VmRecordStore {
  /** Stores a new record; VmExistsError, changing nothing, when the name is taken. Returns its revision. */
  create(record: VmRecord): Promise<number>;
  /** VmNotFoundError, or CorruptRecordError when the stored record is unusable. */
  read(name: string): Promise<StoredVmRecord>;
  /** Replaces the record when its revision is still `expectedRevision`; returns the new revision. */
  write(record: VmRecord, expectedRevision: number): Promise<number>;
  /** Every record by name; unusable ones separately. */
  list(): Promise<{ vms: StoredVmRecord[]; broken: BrokenVm[] }>;
  /** Removes the record (only at `expectedRevision` when given); VmNotFoundError when there is none. */
  remove(name: string, expectedRevision?: number): Promise<void>;
}

export class RevisionConflictError extends HypervisorError {
  constructor(name: string, expected: number, actual: number | null) {
    super(
      "revision-conflict",
      `the record of VM '${name}' changed meanwhile (expected revision ${expected}, found ${
        actual === null ? "none" : actual
      }); nothing was written`,
    );
  }
}
