// The store contract, run against both implementations: the data directory's vm.json files and etcd (a
// real etcd on 127.0.0.1). Records (compare-and-set by revision) and the operation journal.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, describe, test } from "node:test";
import { EtcdOperationJournal } from "./cluster/etcd-operation-journal.ts";
import { EtcdVmRecords } from "./cluster/etcd-vm-records.ts";
import { useTestEtcd } from "./fixtures/test-etcd.ts";
import { fixtureVmRecord } from "./fixtures/fixture-vm-record.ts";
import { type OpenedJournal, type OperationView } from "./operations.ts";
import { VmExistsError, VmNotFoundError, VmStore } from "./store.ts";
import { CorruptRecordError, type VmRecord } from "./vm-record.ts";
import { RevisionConflictError, type VmRecordStore } from "./vm-record-store.ts";

interface Implementation {
  /** A fresh, empty store; `corrupt` puts an unusable record under a name; `journal` opens (again). */
  fresh(): Promise<{
    records: VmRecordStore;
    corrupt: (name: string) => Promise<void>;
    journal: () => Promise<OpenedJournal>;
    spoilOperation: (id: string) => Promise<void>;
  }>;
}

const roots: string[] = [];
const etcd = useTestEtcd();
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

let prefixes = 0;
const implementations: Record<string, Implementation> = {
  "vm.json files": {
    async fresh() {
      const root = await mkdtemp(join(tmpdir(), "tsvm-records-"));
      roots.push(root);
      const store = await VmStore.open(join(root, "home"));
      return {
        records: store.records,
        corrupt: async (name) => {
          await mkdir(store.paths(name).dir, { recursive: true });
          await writeFile(store.paths(name).definition, "{ not json");
        },
        journal: () => store.openOperations(),
        spoilOperation: (id) => writeFile(join(store.home, "operations", `${id}.json`), "{}"),
      };
    },
  },
  etcd: {
    async fresh() {
      const plane = etcd.plane(`contract-${++prefixes}`);
      return {
        records: new EtcdVmRecords(plane, "h1"),
        corrupt: async (name) => {
          await plane.client.put(plane.key(`vms/${name}`)).value("{ not json");
        },
        journal: () => EtcdOperationJournal.open(plane, "h1"),
        spoilOperation: async (id) => {
          await plane.client.put(plane.key(`operations/h1/${id}`)).value("{}");
        },
      };
    },
  },
};

/** A record as the contract stores it (fixed times and id, so that one read back equals it). */
function record(name: string, overrides: Partial<VmRecord> = {}): VmRecord {
  return fixtureVmRecord(name, {
    id: `id-${name}`,
    host: "h1",
    status: "PROVISIONING",
    creationTimestamp: "2026-12-07T06:00:00.000Z",
    history: [{ at: "2026-12-07T06:00:00.000Z", from: null, to: "PROVISIONING", reason: "insert" }],
    ...overrides,
  });
}

function operation(id: string, status: OperationView["status"]): OperationView {
  return {
    kind: "tsvm#operation",
    id,
    operationType: "start",
    targetName: "web",
    status,
    progress: status === "DONE" ? 100 : 0,
    statusMessage: "",
    insertTime: "2026-12-07T06:00:00.000Z",
    startTime: null,
    endTime: null,
    error: null,
  };
}

for (const [kind, impl] of Object.entries(implementations)) {
  describe(`the VM record store contract: ${kind}`, () => {
    test("a created record reads back whole, with its revision", async () => {
      const { records } = await impl.fresh();
      const revision = await records.create(record("web"));
      const read = await records.read("web");
      assert.deepEqual(read.record, record("web"));
      assert.equal(read.revision, revision);
      await assert.rejects(records.read("other"), VmNotFoundError);
    });

    test("a name is created once; the second create changes nothing", async () => {
      const { records } = await impl.fresh();
      const revision = await records.create(record("web"));
      await assert.rejects(records.create(record("web", { id: "another" })), VmExistsError);
      assert.deepEqual(await records.read("web"), { record: record("web"), revision });
    });

    test("a write at the current revision replaces the record and moves the revision on", async () => {
      const { records } = await impl.fresh();
      const first = await records.create(record("web"));
      const second = await records.write(record("web", { status: "STAGING" }), first);
      assert.ok(second > first, `${second} > ${first}`);
      const read = await records.read("web");
      assert.equal(read.record.status, "STAGING");
      assert.equal(read.revision, second);
    });

    test("a write at a stale revision is refused and changes nothing (compare-and-set)", async () => {
      const { records } = await impl.fresh();
      const first = await records.create(record("web"));
      const second = await records.write(record("web", { status: "STAGING" }), first);
      await assert.rejects(
        records.write(record("web", { status: "TERMINATED" }), first),
        (e: Error) => e instanceof RevisionConflictError && /changed meanwhile/.test(e.message),
      );
      assert.deepEqual(await records.read("web"), {
        record: record("web", { status: "STAGING" }),
        revision: second,
      });
      await assert.rejects(records.write(record("gone"), first), VmNotFoundError);
    });

    test("list gives every record by name, and unusable ones apart", async () => {
      const { records, corrupt } = await impl.fresh();
      await records.create(record("web"));
      await records.create(record("db"));
      await corrupt("bad");
      const { vms, broken } = await records.list();
      assert.deepEqual(
        vms.map((v) => v.record.name),
        ["db", "web"],
      );
      assert.deepEqual(
        broken.map((b) => b.name),
        ["bad"],
      );
      assert.ok(broken[0]!.error instanceof CorruptRecordError);
      await assert.rejects(records.read("bad"), CorruptRecordError);
    });

    test("remove: at a stale revision refused; then gone; a re-created name gets a newer revision", async () => {
      const { records } = await impl.fresh();
      const first = await records.create(record("web"));
      const second = await records.write(record("web", { status: "STAGING" }), first);
      await assert.rejects(records.remove("web", first), RevisionConflictError);
      await records.remove("web", second);
      await assert.rejects(records.read("web"), VmNotFoundError);
      await assert.rejects(records.remove("web"), VmNotFoundError);
      const again = await records.create(record("web"));
      assert.ok(again > second, `${again} > ${second}`);
    });

    test("the operation journal keeps what was saved, forgets what was removed, reports what it cannot read", async () => {
      const { journal, spoilOperation } = await impl.fresh();
      const { journal: j, views } = await journal();
      assert.deepEqual(views, []);
      await j.save(operation("operation-2000-00000002", "PENDING"));
      await j.save(operation("operation-1000-00000001", "RUNNING"));
      await j.save(operation("operation-1000-00000001", "DONE"));
      await j.save(operation("operation-3000-00000003", "DONE"));
      await j.remove("operation-3000-00000003");
      await spoilOperation("operation-4000-00000004");
      const reopened = await journal();
      assert.deepEqual(reopened.views, [
        operation("operation-1000-00000001", "DONE"),
        operation("operation-2000-00000002", "PENDING"),
      ]);
      assert.equal(reopened.unreadable.length, 1);
      assert.match(reopened.unreadable[0]!, /operation-4000-00000004/);
    });
  });
}

test("etcd: one host's store lists only its VMs, reads any host's, and stamps its host on a record", async () => {
  const plane = etcd.plane("hosts");
  const h1 = new EtcdVmRecords(plane, "h1");
  const h2 = new EtcdVmRecords(plane, "h2");
  await h1.create(record("web", { host: undefined }));
  await h2.create(record("db", { host: "h2" }));
  assert.deepEqual(
    (await h1.list()).vms.map((v) => v.record.name),
    ["web"],
  );
  assert.equal((await h2.read("web")).record.host, "h1");
  assert.deepEqual(
    (await h1.listAll()).vms.map((v) => `${v.record.name}@${v.record.host}`),
    ["db@h2", "web@h1"],
  );
  // A name is unique across the cluster, whichever host creates it.
  await assert.rejects(h2.create(record("web", { host: "h2" })), VmExistsError);
});
