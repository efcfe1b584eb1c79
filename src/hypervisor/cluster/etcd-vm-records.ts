// VM records in etcd: one key per VM (`<prefix>vms/<name>`, the record as JSON), its etcd mod revision as
// the record's revision, and every create, write and remove a transaction comparing it (docs/cluster.md).
// A store for one host sees the whole cluster's records in read() and only that host's in list().

import { CorruptRecordError, parseVmRecord, serializeVmRecord, type VmRecord } from "../vm-record.ts";
import { VmExistsError, VmNotFoundError } from "../store.ts";
import {
  type BrokenVm,
  RevisionConflictError,
  type StoredVmRecord,
  type VmRecordStore,
} from "../vm-record-store.ts";
import type { ControlPlane } from "./control-plane.ts";

/** A record is a few KiB; etcd's own request limit is 1.5 MiB. */
const MAX_RECORD_BYTES = 1 << 20;

interface KeyValue {
  readonly key: Buffer;
  readonly value: Buffer;
  readonly mod_revision: string;
}

export class EtcdVmRecords implements VmRecordStore {
  constructor(
    private readonly plane: ControlPlane,
    /** The host whose VMs list() returns and whose name create() and write() put in each record. */
    readonly host: string,
  ) {}

  private key(name: string): string {
    return this.plane.key(`vms/${name}`);
  }

  private parse(name: string, kv: KeyValue): StoredVmRecord {
    const where = `etcd key ${kv.key.toString()}`;
    if (kv.value.length > MAX_RECORD_BYTES)
      throw new CorruptRecordError(where, `it is ${kv.value.length} bytes, larger than any definition`);
    const record = parseVmRecord(kv.value.toString("utf8"), where);
    if (record.name !== name)
      throw new CorruptRecordError(
        where,
        `it names the VM '${record.name}' but lies under the key of '${name}'`,
      );
    return { record, revision: Number(kv.mod_revision) };
  }

  private stamped(record: VmRecord): string {
    return serializeVmRecord({ ...record, host: record.host ?? this.host });
  }

  async create(record: VmRecord): Promise<number> {
    const key = this.key(record.name);
    const result = await this.plane.call(`create the record of VM '${record.name}'`, (c) =>
      c
        .if(key, "Create", "==", 0)
        .then(c.put(key).value(this.stamped(record)))
        .commit(),
    );
    if (!result.succeeded) throw new VmExistsError(record.name);
    return Number(result.header.revision);
  }

  async read(name: string): Promise<StoredVmRecord> {
    const response = await this.plane.call(`read the record of VM '${name}'`, (c) =>
      c.get(this.key(name)).exec(),
    );
    const kv = response.kvs[0];
    if (!kv) throw new VmNotFoundError(name);
    return this.parse(name, kv);
  }

  async write(record: VmRecord, expectedRevision: number): Promise<number> {
    const key = this.key(record.name);
    const result = await this.plane.call(`write the record of VM '${record.name}'`, (c) =>
      c
        .if(key, "Mod", "==", expectedRevision)
        .then(c.put(key).value(this.stamped(record)))
        .else(c.get(key))
        .commit(),
    );
    if (!result.succeeded) throw await this.conflict(record.name, expectedRevision, result.responses);
    return Number(result.header.revision);
  }

  /** Every record of this host's VMs (the cluster's: listAll). */
  async list(): Promise<{ vms: StoredVmRecord[]; broken: BrokenVm[] }> {
    const all = await this.listAll();
    return {
      vms: all.vms.filter((v) => v.record.host === this.host),
      broken: all.broken.filter((b) => b.host === this.host || b.host === undefined),
    };
  }

  /** Every record in the cluster; an unusable one names its host when that much could be read. */
  async listAll(): Promise<{ vms: StoredVmRecord[]; broken: Array<BrokenVm & { host?: string }> }> {
    const prefix = this.key("");
    const response = await this.plane.call("list the VM records", (c) =>
      c.getAll().prefix(prefix).sort("Key", "Ascend").exec(),
    );
    const vms: StoredVmRecord[] = [];
    const broken: Array<BrokenVm & { host?: string }> = [];
    for (const kv of response.kvs) {
      const name = kv.key.toString().slice(prefix.length);
      try {
        vms.push(this.parse(name, kv));
      } catch (e) {
        if (!(e instanceof CorruptRecordError)) throw e;
        broken.push({ name, error: e, host: hostNamed(kv.value) });
      }
    }
    return { vms, broken };
  }

  async remove(name: string, expectedRevision?: number): Promise<void> {
    const key = this.key(name);
    const result = await this.plane.call(`remove the record of VM '${name}'`, (c) =>
      expectedRevision === undefined
        ? c.if(key, "Create", ">", 0).then(c.delete().key(key)).commit()
        : c.if(key, "Mod", "==", expectedRevision).then(c.delete().key(key)).else(c.get(key)).commit(),
    );
    if (result.succeeded) return;
    if (expectedRevision === undefined) throw new VmNotFoundError(name);
    throw await this.conflict(name, expectedRevision, result.responses);
  }

  /** The error for a failed compare: not found when the key is gone, else a revision conflict. */
  private async conflict(
    name: string,
    expected: number,
    responses: ReadonlyArray<{ response_range?: { kvs: KeyValue[] } | null }>,
  ): Promise<Error> {
    const kv = responses[0]?.response_range?.kvs[0];
    if (!kv) return new VmNotFoundError(name);
    return new RevisionConflictError(name, expected, Number(kv.mod_revision));
  }
}

/** The `host` of a record that does not parse, when its JSON has one (so a broken VM is listed where it is). */
function hostNamed(value: Buffer): string | undefined {
  try {
    const host = (JSON.parse(value.toString("utf8")) as { host?: unknown }).host;
    return typeof host === "string" ? host : undefined;
  } catch {
    return undefined;
  }
}
