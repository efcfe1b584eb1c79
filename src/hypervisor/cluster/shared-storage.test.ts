// The cluster's shared-storage directory against a real etcd on 127.0.0.1: the first host to name one sets
// it, hosts racing agree, and a host that sees it otherwise (another path, none, no marker, another
// directory's marker, a file, a relative path) is refused in one line, with nothing changed.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { useTestEtcd } from "../fixtures/test-etcd.ts";
import { ok, TestHypervisors } from "../fixtures/test-hypervisors.ts";
import { VmStore } from "../store.ts";
import { joinSharedStorage, refuseOnSharedStorage, SHARED_STORAGE_MARKER } from "./shared-storage.ts";

const etcd = useTestEtcd();
const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-shared-"));
  roots.push(dir);
  return dir;
}

test("the first host sets the cluster's shared storage; racing hosts agree; none given and none set is none", async () => {
  const plane = etcd.plane("set");
  assert.equal(await joinSharedStorage(plane, undefined), undefined);
  const dir = await tempDir();
  const joined = await Promise.all([1, 2, 3].map(() => joinSharedStorage(plane, dir)));
  const ids = new Set(joined.map((j) => j?.id));
  assert.equal(ids.size, 1, "one id for all");
  assert.equal(joined[0]!.dir, dir);
  const marker = JSON.parse(await readFile(join(dir, SHARED_STORAGE_MARKER), "utf8"));
  assert.deepEqual(marker, { magic: "tsvm-shared-storage", version: 1, id: joined[0]!.id });
  assert.equal(
    (await joinSharedStorage(plane, `${dir}/`))?.id,
    joined[0]!.id,
    "the same path written otherwise",
  );
});

test("a host whose view differs is refused, naming what differs", async () => {
  const plane = etcd.plane("differs");
  const dir = await tempDir();
  await joinSharedStorage(plane, dir);
  const other = await tempDir();
  await assert.rejects(
    joinSharedStorage(plane, other),
    new RegExp(
      `cannot join the cluster: --shared-storage ${other} differs from the cluster's shared storage ${dir}`,
    ),
  );
  await assert.rejects(
    joinSharedStorage(plane, undefined),
    new RegExp(
      `the cluster keeps VMs on shared storage at ${dir}: start this daemon with --shared-storage ${dir}`,
    ),
  );
  // Another directory at the same path (not mounted on this host): no marker, or another cluster's.
  const marker = join(dir, SHARED_STORAGE_MARKER);
  const saved = await readFile(marker, "utf8");
  await rm(marker);
  await assert.rejects(
    joinSharedStorage(plane, dir),
    /is not the cluster's shared storage on this host \(no tsvm-shared-storage\.json in it: is it mounted\?\)/,
  );
  await writeFile(marker, JSON.stringify({ magic: "tsvm-shared-storage", version: 1, id: "0".repeat(32) }));
  await assert.rejects(
    joinSharedStorage(plane, dir),
    /is another directory than the cluster's shared storage \(its tsvm-shared-storage\.json has id 0{32}/,
  );
  await writeFile(marker, "not json");
  await assert.rejects(
    joinSharedStorage(plane, dir),
    /tsvm-shared-storage\.json is not a tsvm shared-storage marker \(not JSON\)/,
  );
  await writeFile(marker, saved);
  assert.ok(await joinSharedStorage(plane, dir));

  await assert.rejects(
    joinSharedStorage(etcd.plane("relative"), "shared"),
    /--shared-storage 'shared' must be an absolute path/,
  );
  await assert.rejects(joinSharedStorage(etcd.plane("file"), marker), /is not a directory/);
  await assert.rejects(
    joinSharedStorage(etcd.plane("missing"), join(dir, "nope")),
    /cannot be used \(ENOENT/,
  );
});

test("what is not built for a VM on shared storage is refused by name", () => {
  assert.throws(
    () => refuseOnSharedStorage({ name: "web", sharedStorage: true }, "move"),
    /cannot move VM 'web': it is on the cluster's shared storage, where move is not supported yet/,
  );
  refuseOnSharedStorage({ name: "web" }, "move");
});

test("a host without shared storage refuses a VM asked to be there, and creates nothing", async () => {
  const { hv, store } = await new TestHypervisors("tsvm-noshared-").open();
  assert.throws(
    () => hv.insert({ name: "web", sharedStorage: true }),
    /this host has no shared storage: start the cluster's daemons with --shared-storage DIR/,
  );
  assert.deepEqual((await store.list()).vms, []);
  assert.equal(store.sharedVmsDir, undefined);
});

test("a VM on shared storage: its snapshots' nodes and its clones go there; its export imports on a host without any", async () => {
  const shared = await tempDir();
  const hypervisors = new TestHypervisors("tsvm-shared-vm-");
  const home = await mkdtemp(join(tmpdir(), "tsvm-shared-home-"));
  roots.push(home);
  await writeFile(join(home, "template.img"), Buffer.alloc(8192, 7));
  for (const sub of ["vms", "disks"]) await mkdir(join(shared, sub));
  const store = await VmStore.open(home, { sharedDir: shared });
  const { hv } = await hypervisors.open({ home, config: { store } });
  await ok(hv, hv.insert({ name: "web", sharedStorage: true }));
  await ok(hv, hv.insert({ name: "loc" }));
  await ok(hv, hv.stop("web"));
  await ok(hv, await hv.createSnapshot("web", "s1"));
  const [s1] = await hv.listSnapshots("web");
  assert.ok(existsSync(join(shared, "disks", `${s1!.id}.qcow2`)), "the snapshot's node is on shared storage");
  assert.ok(!existsSync(join(home, "disks", `${s1!.id}.qcow2`)));

  assert.throws(
    () => hv.insert({ name: "solo", sourceInstance: "web", sourceSnapshot: "s1", sharedStorage: false }),
    /a clone of 'web' is on the cluster's shared storage, as its source is/,
  );
  assert.throws(
    () => hv.insert({ name: "far", sourceInstance: "loc", sharedStorage: true }),
    /a clone of 'loc' cannot go on shared storage: its disk shares its source's nodes/,
  );
  await ok(hv, hv.insert({ name: "twin", sourceInstance: "web", sourceSnapshot: "s1" }));
  assert.equal(hv.get("twin").sharedStorage, true);
  assert.ok(existsSync(join(shared, "vms", "twin", "disk.qcow2")));

  await ok(hv, hv.stop("twin"));
  const archive = await hv.exportVm("twin", {}, async ({ stream }) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c);
    return Buffer.concat(chunks);
  });
  const other = (await hypervisors.open()).hv;
  await ok(
    other,
    await other.importVm(
      (async function* () {
        yield archive;
      })(),
    ),
  );
  const copy = other.get("twin");
  assert.equal(copy.sharedStorage, undefined, "imported onto the importer's own storage");
  assert.equal(copy.status, "TERMINATED");
});
