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

test("a DOWN host's VMs on shared storage restart where the scheduler places them, each taken once", async () => {
  const plane = etcd.plane("restart");
  const h1 = member(plane, "h1");
  const restarted: string[] = [];
  const watcher = (host: string, room: boolean, shared = true) =>
    new HostFailover(member(plane, host), {
      ttlSeconds: TTL,
      log: () => {},
      ...(shared
        ? {
            restarter: {
              hasRoom: () => room,
              restart: async (name: string, reason: string) => {
                restarted.push(`${host} ${name} ${reason}`);
              },
            },
          }
        : {}),
    });
  // h2 has the most free memory, h3 the next; h4 does not see the shared storage, h5 sees it but is full.
  const join = (name: string, memoryMiB: number, sharedStorage: boolean) =>
    member(plane, name).inventory.join({
      name,
      address: "http://127.0.0.1:9",
      capacity: { vcpus: 8, memoryMiB },
      sharedStorage,
    });
  const alive = await Promise.all([
    join("h2", 1024, true),
    join("h3", 896, true),
    join("h4", 8192, false),
    join("h5", 64, true),
  ]);
  const gone = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  // In name order: "a-roam" to h2 (1024 free), then "b-roam" to h3 (896 > 1024-256), then "c-roam" to h2.
  await h1.records.create(
    fixtureVmRecord("a-roam", { status: "RUNNING", sharedStorage: true, memoryMiB: 256 }),
  );
  await h1.records.create(
    fixtureVmRecord("b-roam", { status: "RUNNING", sharedStorage: true, memoryMiB: 256 }),
  );
  await h1.records.create(
    fixtureVmRecord("c-roam", { status: "RUNNING", sharedStorage: true, memoryMiB: 256 }),
  );
  await h1.records.create(
    fixtureVmRecord("huge", { status: "RUNNING", sharedStorage: true, memoryMiB: 4096 }),
  );
  await h1.records.create(fixtureVmRecord("home", { status: "RUNNING" }));
  await h1.records.create(
    fixtureVmRecord("manual", { status: "RUNNING", sharedStorage: true, automaticRestart: false }),
  );
  await gone.leave();
  const [h2, h3, h4, h5] = [
    watcher("h2", true),
    watcher("h3", true),
    watcher("h4", true, false),
    watcher("h5", false),
  ];
  const t0 = Date.now();
  for (const w of [h2, h3, h4, h5]) assert.deepEqual(await w.check(t0), []);
  const later = t0 + TTL * 1000;
  // The hosts that are not the pick go first: they mark what they do not take, naming the pick.
  assert.deepEqual((await h4.check(later)).sort(), ["a-roam", "b-roam", "c-roam", "home", "huge", "manual"]);
  assert.deepEqual(await h5.check(later), []);
  const b = (await h1.records.read("b-roam")).record;
  assert.equal(b.host, "h1");
  assert.equal(
    b.statusMessage,
    "host 'h1' is DOWN (its lease expired); it restarts on host 'h3', the scheduler's pick among the hosts that see the shared storage",
  );
  assert.match(
    (await h1.records.read("huge")).record.statusMessage,
    /no host that sees the shared storage has room for it now: it restarts on the first that has$/,
  );
  assert.match((await h1.records.read("manual")).record.statusMessage, /automaticRestart is off/);
  const [took2, took3] = await Promise.all([h2.check(later), h3.check(later)]);
  assert.deepEqual(took2!.sort(), ["a-roam", "c-roam"]);
  assert.deepEqual(took3, ["b-roam"]);
  assert.equal(restarted.length, 3);
  for (const [name, host] of [
    ["a-roam", "h2"],
    ["b-roam", "h3"],
    ["c-roam", "h2"],
  ] as const) {
    const { record } = await h1.records.read(name);
    assert.equal(record.host, host);
    assert.equal(record.status, "REPAIRING");
    assert.equal(
      record.statusMessage,
      `host 'h1' is DOWN (its lease expired); restarted on host '${host}' (its disk is on the cluster's shared storage)`,
    );
    assert.ok(restarted.includes(`${host} ${name} ${record.statusMessage}`), restarted.join("\n"));
  }
  assert.equal((await h1.records.read("home")).record.host, "h1", "a local VM stays its host's");
  assert.equal((await h1.records.read("huge")).record.host, "h1", "no host had room");
  assert.deepEqual(
    [...(await h2.check(later + 1000)), ...(await h3.check(later + 1000))],
    [],
    "nothing twice",
  );
  for (const m of alive) await m.leave();
});

test("a DOWN host's VM on shared storage whose pick does not take it is taken by another host a TTL later", async () => {
  const plane = etcd.plane("overdue");
  const h1 = member(plane, "h1");
  const restarted: string[] = [];
  const joined = await Promise.all(
    [
      ["h2", 2048],
      ["h3", 512],
    ].map(([name, memoryMiB]) =>
      member(plane, name as string).inventory.join({
        name: name as string,
        address: "http://127.0.0.1:9",
        capacity: { vcpus: 8, memoryMiB: memoryMiB as number },
        sharedStorage: true,
      }),
    ),
  );
  const gone = await h1.inventory.join({ name: "h1", address: "http://127.0.0.1:7101", capacity });
  await h1.records.create(fixtureVmRecord("roam", { status: "RUNNING", sharedStorage: true }));
  await gone.leave();
  // h2 is the pick but never checks (its daemon hangs); h3 waits for it a further TTL, then takes the VM.
  const h3 = new HostFailover(member(plane, "h3"), {
    ttlSeconds: TTL,
    log: () => {},
    restarter: { hasRoom: () => true, restart: async (name) => void restarted.push(name) },
  });
  const t0 = Date.now();
  assert.deepEqual(await h3.check(t0), []);
  assert.deepEqual(await h3.check(t0 + TTL * 1000), ["roam"], "marked, naming the pick");
  assert.match((await h1.records.read("roam")).record.statusMessage, /it restarts on host 'h2'/);
  assert.deepEqual(await h3.check(t0 + 2 * TTL * 1000 - 1), [], "not before the pick's TTL is up");
  assert.deepEqual(restarted, []);
  assert.deepEqual(await h3.check(t0 + 2 * TTL * 1000), ["roam"]);
  assert.deepEqual(restarted, ["roam"]);
  assert.equal((await h1.records.read("roam")).record.host, "h3");
  for (const m of joined) await m.leave();
});
