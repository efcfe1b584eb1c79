// The host inventory and etcd trouble, against a real etcd on 127.0.0.1: joining, a name taken by a live
// host, DOWN once a lease is gone, and "control plane unavailable" while etcd is stopped.
import assert from "node:assert/strict";
import { test } from "node:test";
import { useTestEtcd } from "../fixtures/test-etcd.ts";
import { VmNotFoundError } from "../store.ts";
import { ControlPlaneUnavailableError } from "./control-plane.ts";
import { EtcdVmRecords } from "./etcd-vm-records.ts";
import { HostInventory, HostNameTakenError } from "./host-inventory.ts";

const etcd = useTestEtcd();
const plane = (name: string) => etcd.plane(name);

const capacity = { vcpus: 8, memoryMiB: 4096 };

test("hosts join with their capacity; a live host's name is refused; a host that left is DOWN", async () => {
  const p = plane("hosts");
  const inventory = new HostInventory(p, 5);
  const h1 = await inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  const h2 = await inventory.join({ name: "h2", address: "http://127.0.0.1:7102", capacity });
  await assert.rejects(
    inventory.join({ name: "h1", address: "http://127.0.0.1:7103", capacity }),
    (e: Error) => e instanceof HostNameTakenError && /'h1' is taken/.test(e.message),
  );
  assert.deepEqual(
    (await inventory.list()).map((h) => `${h.record.name} ${h.status} ${h.record.address}`),
    ["h1 UP http://127.0.0.1:7101", "h2 UP http://127.0.0.1:7102"],
  );
  await h2.leave();
  assert.deepEqual(
    (await inventory.list()).map((h) => `${h.record.name} ${h.status}`),
    ["h1 UP", "h2 DOWN"],
  );
  // The name is free again once its host is gone.
  const again = await inventory.join({ name: "h2", address: "http://127.0.0.1:7104", capacity });
  assert.equal((await inventory.get("h2"))?.record.address, "http://127.0.0.1:7104");
  await again.leave();
  await h1.leave();
});

test("with etcd stopped, reads and writes fail as control-plane-unavailable; after it returns they work", async () => {
  const records = new EtcdVmRecords(plane("trouble"), "h1");
  await assert.rejects(records.read("web"), VmNotFoundError);
  await etcd.server().pause();
  try {
    const t0 = Date.now();
    await assert.rejects(
      records.read("web"),
      (e: Error) =>
        e instanceof ControlPlaneUnavailableError &&
        (e as ControlPlaneUnavailableError).code === "control-plane-unavailable" &&
        /^control plane unavailable: could not read the record of VM 'web' \(etcd at http/.test(e.message),
    );
    assert.ok(Date.now() - t0 < 15_000, "the failure comes within the call deadline");
  } finally {
    await etcd.server().resume();
  }
  // The client's circuit breaker may hold calls back a few seconds after the failures.
  const deadline = Date.now() + 20_000;
  for (;;) {
    try {
      await assert.rejects(records.read("web"), VmNotFoundError);
      break;
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 500));
    }
  }
});
