// Host maintenance and failover on a cluster on this machine (real etcd, three real daemons, the remote
// CLI): drain and undrain by onHostMaintenance; a host cut off from etcd (through a proxy the test cuts)
// kills its VMMs before the others see it DOWN, and its VM is marked and restarts when it returns; a whole
// host killed with SIGKILL has its VMs marked REPAIRING and restarted per automaticRestart on its return.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
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
  cluster = await TestCluster.start({ leaseTtlSeconds: LEASE_TTL_SECONDS });
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
