// Failover's marking and drain's flag against a real etcd on 127.0.0.1: a DOWN host's running VMs are
// marked REPAIRING only a TTL after it was seen DOWN, by exactly one of two hosts racing, never while the
// host is alive again, and never over a record changed since it was read.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fixtureVmRecord } from "../fixtures/fixture-vm-record.ts";
import { useTestEtcd } from "../fixtures/test-etcd.ts";
import { EtcdVmRecords } from "./etcd-vm-records.ts";
import { HostFailover } from "./host-failover.ts";
import { HostInventory } from "./host-inventory.ts";

const etcd = useTestEtcd();
const capacity = { vcpus: 8, memoryMiB: 4096 };
const TTL = 5;

function member(plane: ReturnType<typeof etcd.plane>, host: string) {
  return { host, plane, inventory: new HostInventory(plane, TTL), records: new EtcdVmRecords(plane, host) };
}

test("a DOWN host's running VMs are marked once, a TTL after it was seen DOWN, by one of two racing hosts", async () => {
  const plane = etcd.plane("failover");
  const h1 = member(plane, "h1");
  const lines: string[] = [];
  const watchers = ["h2", "h3"].map(
    (h) => new HostFailover(member(plane, h), { ttlSeconds: TTL, log: (l) => lines.push(l) }),
  );
  const gone = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  await h1.records.create(fixtureVmRecord("web", { status: "RUNNING" }));
  await h1.records.create(fixtureVmRecord("off", { status: "TERMINATED" }));
  await h1.records.create(fixtureVmRecord("solo", { status: "RUNNING", automaticRestart: false }));
  const t0 = Date.now();
  assert.deepEqual(await watchers[0]!.check(t0), [], "h1 is UP: nothing to do");
  await gone.leave();
  assert.deepEqual(await watchers[0]!.check(t0), [], "just seen DOWN: not yet");
  assert.deepEqual(await watchers[1]!.check(t0), []);
  const later = t0 + TTL * 1000;
  const [a, b] = await Promise.all(watchers.map((w) => w.check(later)));
  assert.deepEqual([...a!, ...b!].sort(), ["solo", "web"], "each VM marked once");
  const web = (await h1.records.read("web")).record;
  assert.equal(web.status, "REPAIRING");
  assert.equal(web.host, "h1");
  assert.match(
    web.statusMessage,
    /^host 'h1' is DOWN \(its lease expired\); it restarts when the host returns/,
  );
  assert.deepEqual(web.history.at(-1)?.from, "RUNNING");
  assert.match((await h1.records.read("solo")).record.statusMessage, /automaticRestart is off/);
  assert.equal((await h1.records.read("off")).record.status, "TERMINATED");
  assert.deepEqual(await watchers[0]!.check(later + 1000), [], "nothing left to mark");
  assert.equal(lines.length, 2);
});

test("a host back before the marking keeps its VMs as they are", async () => {
  const plane = etcd.plane("back");
  const h1 = member(plane, "h1");
  const watcher = new HostFailover(member(plane, "h2"), { ttlSeconds: TTL, log: () => {} });
  const first = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  await h1.records.create(fixtureVmRecord("web", { status: "RUNNING" }));
  await first.leave();
  const t0 = Date.now();
  await watcher.check(t0);
  const again = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  assert.deepEqual(await watcher.check(t0 + TTL * 1000), []);
  assert.equal((await h1.records.read("web")).record.status, "RUNNING");
  await again.leave();
});

test("drain marks a host DRAINING and undrain UP again; an unknown host is named", async () => {
  const plane = etcd.plane("drain");
  const inventory = new HostInventory(plane, TTL);
  const h1 = await inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  assert.equal((await inventory.setDraining("h1", true)).status, "DRAINING");
  assert.equal((await inventory.get("h1"))?.status, "DRAINING");
  // A host joining again keeps its drain.
  await h1.leave();
  const again = await inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  assert.equal((await inventory.get("h1"))?.status, "DRAINING");
  assert.equal((await inventory.setDraining("h1", false)).status, "UP");
  await assert.rejects(inventory.setDraining("h9", true), /no host 'h9' in the cluster; hosts: h1/);
  await again.leave();
});

test("a DOWN host's VMs on shared storage are taken over and restarted by exactly one host with room", async () => {
  const plane = etcd.plane("restart");
  const h1 = member(plane, "h1");
  const restarted: string[] = [];
  const watcher = (host: string, room: boolean) =>
    new HostFailover(member(plane, host), {
      ttlSeconds: TTL,
      log: () => {},
      restarter: {
        hasRoom: () => room,
        restart: async (name, reason) => {
          restarted.push(`${host} ${name} ${reason}`);
        },
      },
    });
  const [h2, h3, full] = [watcher("h2", true), watcher("h3", true), watcher("h4", false)];
  const gone = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  await h1.records.create(fixtureVmRecord("roam", { status: "RUNNING", sharedStorage: true }));
  await h1.records.create(fixtureVmRecord("wait", { status: "RUNNING", sharedStorage: true }));
  await h1.records.create(fixtureVmRecord("home", { status: "RUNNING" }));
  await h1.records.create(
    fixtureVmRecord("manual", { status: "RUNNING", sharedStorage: true, automaticRestart: false }),
  );
  await gone.leave();
  const t0 = Date.now();
  for (const w of [h2, h3, full]) assert.deepEqual(await w.check(t0), []);
  const later = t0 + TTL * 1000;
  // The host without room goes first: it marks what it cannot take, and leaves it to the others.
  assert.deepEqual((await full.check(later)).sort(), ["home", "manual", "roam", "wait"]);
  const wait = (await h1.records.read("wait")).record;
  assert.equal(wait.host, "h1");
  assert.match(
    wait.statusMessage,
    /it restarts on the first host with room for it \(host 'h4' has none now\)/,
  );
  assert.match((await h1.records.read("manual")).record.statusMessage, /automaticRestart is off/);
  const [a, b] = await Promise.all([h2.check(later), h3.check(later)]);
  assert.deepEqual([...a!, ...b!].sort(), ["roam", "wait"], "each taken once");
  assert.equal(restarted.length, 2);
  for (const name of ["roam", "wait"]) {
    const { record } = await h1.records.read(name);
    assert.ok(record.host === "h2" || record.host === "h3");
    assert.equal(record.status, "REPAIRING");
    assert.equal(
      record.statusMessage,
      `host 'h1' is DOWN (its lease expired); restarted on host '${record.host}' (its disk is on the cluster's shared storage)`,
    );
    assert.ok(restarted.includes(`${record.host} ${name} ${record.statusMessage}`), restarted.join("\n"));
  }
  assert.equal((await h1.records.read("home")).record.host, "h1", "a local VM stays its host's");
  assert.deepEqual(
    [...(await h2.check(later + 1000)), ...(await h3.check(later + 1000))],
    [],
    "nothing twice",
  );
});
