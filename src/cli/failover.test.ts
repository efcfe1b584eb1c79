// Host maintenance and failover on a cluster on this machine (real etcd, three real daemons, the remote
// CLI): drain and undrain by onHostMaintenance; a host cut off from etcd (through a proxy the test cuts)
// kills its VMMs before the others see it DOWN, and its VM is marked and restarts when it returns; a whole
// host killed with SIGKILL has its VMs marked REPAIRING and restarted per automaticRestart on its return;
// VMs on the cluster's shared storage restart on another host instead, once, after their old VMMs are gone:
// a whole host killed, and a daemon killed alone (its VMMs fence themselves).
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { lockHolders } from "../engines/backends/file-lock.ts";
import { processRunning } from "../hypervisor/cluster/lease-fence.ts";
import { TestCluster, waitFor } from "../hypervisor/fixtures/test-cluster.ts";

/**
 * Short leases so that DOWN and failover come within seconds (fencing after 7.5 s without renewal; with
 * 6 s, a daemon restarting on a host loaded to 15 on 2 cores went 5.7 s without a renewal and fenced).
 */
const LEASE_TTL_SECONDS = 10;
let cluster: TestCluster;
const vmmPids = new Set<number>();

const running = processRunning;

async function vm(from: string, name: string): Promise<any> {
  return (await cluster.json(from, "list")).find((v: any) => v.name === name);
}

async function create(from: string, name: string, ...args: string[]): Promise<number> {
  const r = await cluster.on(from, "create", name, "--machine-type", "t1-micro", ...args);
  assert.equal(r.code, 0, r.stderr);
  const pid = (await cluster.json(from, "describe", name)).vmmPid as number;
  vmmPids.add(pid);
  return pid;
}

/** Whether host `name`'s liveness key is in etcd (its v3 JSON gateway: a range request on the key). */
async function hostAlive(name: string): Promise<boolean> {
  const key = Buffer.from(`/tsvm/hosts-alive/${name}`).toString("base64");
  const answer = await fetch(`${cluster.etcd.url}/v3/kv/range`, {
    method: "POST",
    body: JSON.stringify({ key }),
  }).then((r) => r.json() as Promise<{ count?: string }>);
  return Number(answer.count ?? 0) > 0;
}

async function hostStatus(from: string): Promise<string[]> {
  return (await cluster.json(from, "hosts", "list")).map((h: any) => `${h.name} ${h.status}`);
}

before(async () => {
  cluster = await TestCluster.start({ leaseTtlSeconds: LEASE_TTL_SECONDS, sharedStorage: true });
  await cluster.startHost("h1");
  await cluster.startHost("h2");
  await cluster.startHost("h3", { throughProxy: true });
});

after(async () => {
  const list = await cluster.on("h1", "list", "--format", "json").catch(() => undefined);
  if (list?.code === 0)
    for (const v of JSON.parse(list.stdout) as Array<{ name: string }>)
      await cluster.on("h1", "delete", v.name);
  for (const pid of vmmPids) if (running(pid)) process.kill(pid, "SIGKILL");
  await cluster.stop();
});

test("drain stops TERMINATE VMs, moves MIGRATE ones away, takes no new VMs until undrain", async () => {
  await create("h1", "term", "--host", "h1", "--on-host-maintenance", "TERMINATE");
  await create("h1", "mig", "--host", "h1");
  assert.equal((await cluster.json("h2", "describe", "term")).onHostMaintenance, "TERMINATE");
  const bad = await cluster.on("h1", "create", "odd", "--on-host-maintenance", "SOMETIMES");
  assert.equal(bad.code, 2, bad.stderr);
  assert.match(bad.stderr, /--on-host-maintenance must be MIGRATE or TERMINATE \(got 'SOMETIMES'\)/);

  // Asked of h2, run by h1 (forwarded): the host whose VMs they are.
  const drain = await cluster.on("h2", "host", "drain", "h1");
  assert.equal(drain.code, 0, drain.stderr);
  assert.match(drain.stdout, /^h1: DRAINING\n/);
  assert.match(drain.stdout, /term: stopped \(onHostMaintenance TERMINATE\)/);
  const to = /mig: moved to (h2|h3)\n/.exec(drain.stdout)?.[1];
  assert.ok(to, drain.stdout);
  assert.equal((await vm("h3", "term")).status, "TERMINATED");
  const mig = await vm("h3", "mig");
  assert.equal(mig.status, "RUNNING");
  assert.equal(mig.host, to);
  vmmPids.add((await cluster.json("h1", "describe", "mig")).vmmPid);
  assert.deepEqual(
    (await cluster.json("h1", "hosts", "list")).find((h: any) => h.name === "h1").vms,
    ["term"],
    "only the stopped VM is left on h1",
  );
  assert.deepEqual(await hostStatus("h3"), ["h1 DRAINING", "h2 UP", "h3 UP"]);

  const refused = await cluster.on("h2", "create", "late", "--host", "h1");
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /host 'h1' is DRAINING and takes no new VMs/);
  await create("h1", "placed");
  assert.notEqual((await vm("h1", "placed")).host, "h1");
  // A second drain finds nothing more to stop; an unknown host is named.
  const again = await cluster.json("h1", "host", "drain", "h1");
  assert.equal(again.host.status, "DRAINING");
  assert.deepEqual([again.stopped, again.moved, again.remaining], [[], [], []]);
  const unknown = await cluster.on("h1", "host", "drain", "h9");
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /no host 'h9' in the cluster; hosts: h1, h2, h3/);

  const undrain = await cluster.on("h3", "host", "undrain", "h1");
  assert.equal(undrain.code, 0, undrain.stderr);
  assert.equal(undrain.stdout, "h1: UP\n");
  await create("h2", "back", "--host", "h1");
  for (const name of ["term", "mig", "placed", "back"])
    assert.equal((await cluster.on("h1", "delete", name)).code, 0);
});

test("a VM on shared storage moves without copying: suspended, handed over, resumed where it was", async () => {
  const pid = await create("h1", "wander", "--host", "h1", "--shared-storage");
  const dir = join(cluster.sharedDir!, "vms", "wander");
  const moved = await cluster.on("h2", "move", "wander", "--host", "h2");
  assert.equal(moved.code, 0, moved.stderr);
  assert.match(moved.stdout, /moved to host 'h2' in [\d.]+ s, 0 bytes sent, guest stopped for/);
  console.log(`shared move: ${moved.stdout.trim()}`);
  const there = await cluster.json("h3", "describe", "wander");
  vmmPids.add(there.vmmPid);
  assert.deepEqual([there.host, there.status, there.sharedStorage], ["h2", "RUNNING", true]);
  assert.ok(!running(pid), "the old VMM is gone");
  assert.deepEqual(diskHolders("wander"), [there.vmmPid], "one VMM has the disk, from the same directory");
  assert.equal(boots("wander"), 1, "resumed, not booted again");
  assert.match(there.history.at(-1).reason, /moved here from host 'h1'|resume/);
  assert.ok(readFileSync(join(dir, "console.log"), "utf8").length > 0, "its directory stayed on the storage");
  // At rest it is handed over as it is.
  assert.equal((await cluster.on("h1", "stop", "wander")).code, 0);
  const cold = await cluster.on("h1", "move", "wander", "--host", "h3");
  assert.equal(cold.code, 0, cold.stderr);
  const rest = await cluster.json("h1", "describe", "wander");
  assert.deepEqual([rest.host, rest.status], ["h3", "TERMINATED"]);
  assert.equal((await cluster.on("h1", "delete", "wander")).code, 0);
});

test("a host cut off from etcd kills its VMMs before the others see it DOWN; its VM is marked, then runs again on its return", async () => {
  const pid = await create("h1", "cut", "--host", "h3");
  const h3 = cluster.hosts.get("h3")!;
  // Watched closely (not through the CLI, too slow to tell the order): when the VMM ends, when h3's
  // liveness key leaves etcd (the lease expired: from then on the others count it DOWN).
  let vmmGoneAt: number | undefined;
  let downAt: number | undefined;
  const watch = setInterval(async () => {
    const now = Date.now();
    if (vmmGoneAt === undefined && !running(pid)) vmmGoneAt = now;
    if (downAt === undefined && !(await hostAlive("h3").catch(() => true))) downAt = now;
  }, 50);
  await cluster.proxies[0]!.cut();
  try {
    assert.equal(await h3.exited, 4, h3.log());
    assert.match(h3.log(), /fenced: every VMM of host 'h3' is gone/);
    await waitFor("h3's lease to expire", async () => downAt, 60_000);
  } finally {
    clearInterval(watch);
  }
  assert.ok(vmmGoneAt !== undefined, "the VMM was gone when h3 fenced itself");
  // Its lease expires a quarter TTL (2.5 s) after the fence; a daemon stalled past that is covered by the
  // other hosts' wait of a further TTL, so the order is logged, and the guarantee asserted below.
  console.log(`h3's VMM gone ${downAt! - vmmGoneAt!} ms before its lease expired`);

  const marked = await waitFor("cut to be marked REPAIRING", async () => {
    const v = await vm("h1", "cut");
    return v.status === "REPAIRING" ? v : undefined;
  });
  assert.ok(vmmGoneAt < downAt! + LEASE_TTL_SECONDS * 1000, "the VMM was gone before any host could act");
  assert.equal(marked.host, "h3");
  assert.match(
    marked.statusMessage,
    /host 'h3' is DOWN \(its lease expired\); it restarts when the host returns/,
  );
  // Changes go on through the hosts that are UP.
  await create("h1", "meanwhile", "--host", "h2");

  await cluster.startHost("h3"); // now reaching etcd directly
  const back = await waitFor("cut to run again on h3", async () => {
    const d = await cluster.on("h1", "describe", "cut", "--format", "json");
    const v = d.code === 0 ? JSON.parse(d.stdout) : undefined;
    return v?.status === "RUNNING" ? v : undefined;
  });
  vmmPids.add(back.vmmPid);
  assert.equal(back.host, "h3");
  assert.notEqual(back.vmmPid, pid);
  assert.ok(!running(pid));
  assert.ok(
    back.history.some((h: any) => h.to === "REPAIRING" && /host 'h3' is DOWN/.test(h.reason)),
    JSON.stringify(back.history),
  );
});

test("kill -9 of a whole host: its VMs are marked REPAIRING, and on its return restart per automaticRestart", async () => {
  const again = await create("h1", "again", "--host", "h2");
  const once = await create("h1", "once", "--host", "h2", "--no-automatic-restart");
  const h2 = cluster.hosts.get("h2")!;
  // The daemon proper (`tsvm daemon` runs it as its child), its VMMs, then the `tsvm daemon` process.
  const daemonPid = JSON.parse(readFileSync(join(h2.home, "daemon.json"), "utf8")).pid as number;
  for (const pid of [daemonPid, again, once]) process.kill(pid, "SIGKILL");
  h2.process.kill("SIGKILL");
  await h2.exited;
  const marked = await waitFor("again and once to be marked", async () => {
    const list = await cluster.json("h3", "list");
    const mine = list.filter((v: any) => v.name === "again" || v.name === "once");
    return mine.every((v: any) => v.status === "REPAIRING") ? mine : undefined;
  });
  assert.match(marked.find((v: any) => v.name === "once").statusMessage, /automaticRestart is off/);
  assert.deepEqual(await hostStatus("h1"), ["h1 UP", "h2 DOWN", "h3 UP"]);

  await cluster.startHost("h2");
  const settled = await waitFor("again RUNNING and once TERMINATED", async () => {
    const list = await cluster.json("h1", "list");
    const a = list.find((v: any) => v.name === "again");
    const o = list.find((v: any) => v.name === "once");
    return a.status === "RUNNING" && o.status === "TERMINATED" ? { a, o } : undefined;
  });
  assert.equal(settled.a.host, "h2");
  assert.match(settled.o.statusMessage, /automaticRestart is off/);
  vmmPids.add((await cluster.json("h1", "describe", "again")).vmmPid);
});

/** The pid of the process running host `name`'s daemon proper (`tsvm daemon` runs it as its child). */
function daemonPidOf(name: string): number {
  return JSON.parse(readFileSync(join(cluster.hosts.get(name)!.home, "daemon.json"), "utf8")).pid as number;
}

/** The processes holding the lock of a shared-storage VM's disk: its VMM, and never more than one. */
function diskHolders(name: string): number[] {
  return lockHolders(join(cluster.sharedDir!, "vms", name, "disk.qcow2"));
}

/** How many times the stand-in guest booted, by its console (on shared storage, so every host's boots). */
function boots(name: string): number {
  const log = readFileSync(join(cluster.sharedDir!, "vms", name, "console.log"), "utf8");
  return log.split("boot at count 0").length - 1;
}

const restartedHere =
  /^host '(h\d)' is DOWN \(its lease expired\); restarted on host '(h\d)' \(its disk is on the cluster's shared storage\)$/;

/** Waits until `name` runs on a host other than `from`, and checks it was restarted there once. */
async function restartedElsewhere(name: string, from: string, asker: string): Promise<any> {
  const moved = await waitFor(
    `${name} to run on another host than ${from}`,
    async () => {
      const d = await cluster.on(asker, "describe", name, "--format", "json");
      const v = d.code === 0 ? JSON.parse(d.stdout) : undefined;
      return v?.status === "RUNNING" && v.host !== from && v.vmmPid !== null ? v : undefined;
    },
    90_000,
  );
  vmmPids.add(moved.vmmPid);
  const takeovers = moved.history.filter((h: any) => restartedHere.test(h.reason));
  assert.equal(takeovers.length, 1, JSON.stringify(moved.history));
  assert.deepEqual(restartedHere.exec(takeovers[0].reason)!.slice(1), [from, moved.host]);
  assert.equal(moved.sharedStorage, true);
  return moved;
}

test("kill -9 of a whole host: its VM on shared storage restarts on another host, once, and boots there", async () => {
  const pid = await create("h2", "roam", "--host", "h1", "--shared-storage");
  assert.deepEqual(diskHolders("roam"), [pid]);
  assert.equal(boots("roam"), 1);
  // A snapshot's disk node goes on the shared storage too: the host that restarts the VM reaches it.
  const snap = await cluster.on("h2", "snapshot", "create", "roam", "s1");
  assert.equal(snap.code, 0, snap.stderr);
  const h1 = cluster.hosts.get("h1")!;
  for (const p of [daemonPidOf("h1"), pid]) process.kill(p, "SIGKILL");
  h1.process.kill("SIGKILL");
  await h1.exited;
  const moved = await restartedElsewhere("roam", "h1", "h2");
  assert.notEqual(moved.vmmPid, pid);
  assert.ok(!running(pid));
  assert.deepEqual(diskHolders("roam"), [moved.vmmPid], "one VMM has the disk");
  await waitFor("the guest to boot on its new host", async () => (boots("roam") === 2 ? true : undefined));

  // The old host returns: the VM stays where it runs now, not started a second time.
  await cluster.startHost("h1");
  await new Promise((r) => setTimeout(r, 3000));
  const after = await cluster.json("h1", "describe", "roam");
  assert.equal(after.host, moved.host);
  assert.equal(after.vmmPid, moved.vmmPid);
  assert.deepEqual(diskHolders("roam"), [moved.vmmPid]);
  assert.equal(boots("roam"), 2);
  assert.ok(
    !(await cluster.json("h1", "hosts", "list")).find((h: any) => h.name === "h1").vms.includes("roam"),
  );

  // Its snapshot, taken on h1, is usable where it runs now: cloned (the clone on shared storage with it),
  // the clone exported and imported as a VM of a host's own storage, and restored.
  assert.deepEqual(
    (await cluster.json("h3", "snapshot", "list", "roam")).map((s: any) => s.name),
    ["s1"],
  );
  const clone = await cluster.on("h1", "clone", "roam", "twin", "--snapshot", "s1");
  assert.equal(clone.code, 0, clone.stderr);
  const twin = await cluster.json("h1", "describe", "twin");
  vmmPids.add(twin.vmmPid);
  assert.deepEqual([twin.host, twin.sharedStorage, twin.status], [moved.host, true, "RUNNING"]);
  for (const step of [
    ["stop", "twin"],
    ["export", "twin", join(cluster.dir, "twin.tsvm")],
    ["import", join(cluster.dir, "twin.tsvm"), "--name", "twin-copy"],
  ]) {
    const r = await cluster.on("h3", ...step);
    assert.equal(r.code, 0, `${step.join(" ")}: ${r.stderr}`);
  }
  const copy = await cluster.json("h3", "describe", "twin-copy");
  assert.deepEqual([copy.host, copy.sharedStorage ?? false, copy.status], ["h3", false, "TERMINATED"]);
  const restored = await cluster.on("h1", "snapshot", "restore", "roam", "s1");
  assert.equal(restored.code, 0, restored.stderr);
  const back = await cluster.json("h1", "describe", "roam");
  vmmPids.add(back.vmmPid);
  assert.equal(back.status, "RUNNING");
  assert.deepEqual(diskHolders("roam"), [back.vmmPid]);
  for (const name of ["twin", "twin-copy"]) assert.equal((await cluster.on("h1", "delete", name)).code, 0);
});

test("kill -9 of the daemon alone: its shared-storage VM's VMM stops within the deadline, then the VM restarts elsewhere, never twice", async () => {
  // The daemon's deadline (three quarters of the TTL) and two heartbeats (src/api/server/daemon.ts).
  const fenceMs = LEASE_TTL_SECONDS * 1000 * 0.75 + 1000;
  const shared = await create("h1", "lone", "--host", "h3", "--shared-storage");
  const local = await create("h1", "homebody", "--host", "h3");
  const h3 = cluster.hosts.get("h3")!;
  const killedAt = Date.now();
  process.kill(daemonPidOf("h3"), "SIGKILL");
  await h3.exited;
  const goneAt = await waitFor(
    "the shared-storage VM's VMM to fence itself",
    async () => (running(shared) ? undefined : Date.now()),
    fenceMs + 5000,
  );
  console.log(`its VMM gone ${goneAt - killedAt} ms after its daemon was killed (deadline ${fenceMs} ms)`);
  const vmmLog = readFileSync(join(cluster.sharedDir!, "vms", "lone", "vmm.log"), "utf8");
  assert.match(vmmLog, /fenced: no heartbeat from the daemon told of a lease renewal/);

  const moved = await restartedElsewhere("lone", "h3", "h1");
  assert.ok(Date.parse(moved.lastStartTimestamp) > goneAt, "started after the old VMM was gone");
  assert.deepEqual(diskHolders("lone"), [moved.vmmPid]);
  // The local VM keeps today's behaviour: its VMM runs on (no other host may restart it), it is marked, and
  // its host's return re-attaches it.
  assert.ok(running(local), "a VM not on shared storage outlives its daemon");
  const home = await vm("h1", "homebody");
  assert.equal(home.status, "REPAIRING");
  assert.equal(home.host, "h3");
  assert.match(home.statusMessage, /it restarts when the host returns/);
  // Several more failover checks of both survivors: nothing more happens to the restarted VM.
  await new Promise((r) => setTimeout(r, 5000));
  const later = await cluster.json("h2", "describe", "lone");
  assert.equal(later.vmmPid, moved.vmmPid);
  assert.equal(later.history.filter((h: any) => restartedHere.test(h.reason)).length, 1);
  assert.deepEqual(diskHolders("lone"), [moved.vmmPid]);
  assert.equal(boots("lone"), 2);

  await cluster.startHost("h3");
  const back = await waitFor("homebody to be re-attached on h3", async () => {
    const v = await vm("h1", "homebody");
    return v?.status === "RUNNING" ? v : undefined;
  });
  assert.equal(back.host, "h3");
  assert.equal((await cluster.json("h3", "describe", "homebody")).vmmPid, local, "the same VMM");
  assert.equal((await cluster.json("h3", "describe", "lone")).host, moved.host, "lone stays where it runs");
});
