// What a crash mid-move leaves in a host's data directory, against a real etcd on 127.0.0.1: at start, a
// cluster host removes the VM directories no record of its own names (a VM moved away, a VM moved here
// whose record was never taken over, a VM deleted while the host was away), keeps those a VMM still runs
// from, and keeps its own. A single host (vm.json records) removes nothing.
import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fixtureVmRecord } from "../fixtures/fixture-vm-record.ts";
import { useTestEtcd } from "../fixtures/test-etcd.ts";
import { VmStore } from "../store.ts";
import { EtcdVmRecords } from "./etcd-vm-records.ts";

const etcd = useTestEtcd();
const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function home(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "tsvm-strays-"));
  roots.push(root);
  return join(root, "home");
}

test("a cluster host removes the VM directories no record of its own names, except where a VMM runs", async () => {
  const plane = etcd.plane("strays");
  const store = await VmStore.open(await home(), { records: () => new EtcdVmRecords(plane, "h1") });
  await store.create(fixtureVmRecord("mine"));
  // Moved away: the record is h2's now, the files were not let go of here.
  await new EtcdVmRecords(plane, "h2").create(fixtureVmRecord("moved"));
  for (const name of ["moved", "deleted", "running"]) await mkdir(join(store.vmsDir, name));
  const { vms, broken } = await store.list();
  const mine = new Set([...vms, ...broken].map((v) => v.name));
  assert.deepEqual([...mine], ["mine"]);
  const removed = await store.removeStrays(mine, (dir) => dir.endsWith("/running"));
  assert.deepEqual(removed.sort(), ["deleted", "moved"]);
  assert.deepEqual((await readdir(store.vmsDir)).sort(), ["mine", "running"]);
  assert.equal((await new EtcdVmRecords(plane, "h2").read("moved")).record.name, "moved", "its record stays");
});

test("a single host's store removes nothing: its directories are its records", async () => {
  const store = await VmStore.open(await home());
  await store.create(fixtureVmRecord("mine"));
  await mkdir(join(store.vmsDir, "other"));
  assert.deepEqual(await store.removeStrays(new Set(), () => false), []);
  assert.deepEqual((await readdir(store.vmsDir)).sort(), ["mine", "other"]);
});
