// A two-host cluster on this machine, as a user runs it: one real etcd, two daemons (`tsvm daemon --cluster`,
// their own TSVM_HOMEs and ports, one token) and the remote CLI (TSVM_API_URL / --api-url). VMs host the
// counting stand-in guest (engine "fixture"): placement, forwarding and records are what is tested here.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdir } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { freePort } from "../hypervisor/fixtures/etcd-server.ts";
import { ROOT, TestCluster, waitFor } from "../hypervisor/fixtures/test-cluster.ts";

let cluster: TestCluster;
const on = (name: string, ...args: string[]) => cluster.on(name, ...args);
const json = (name: string, ...args: string[]) => cluster.json(name, ...args);
const host = (name: string) => cluster.hosts.get(name)!;

before(async () => {
  cluster = await TestCluster.start({ hosts: ["h1", "h2"] });
});

after(() => cluster?.stop());

test("two hosts: placement by --host, any host's API serves the whole cluster and forwards to the VM's host", async () => {
  const hosts = await json("h1", "hosts", "list");
  assert.deepEqual(
    hosts.map((h: any) => `${h.name} ${h.status} ${h.address === host(h.name)!.url}`),
    ["h1 UP true", "h2 UP true"],
  );
  // Created through h1's API on h2, and through h2's API (the --api-url option this time) on h1.
  const web = await on("h1", "create", "web", "--host", "h2", "--machine-type", "t1-micro");
  assert.equal(web.code, 0, web.stderr);
  const db = await cluster.tsvm(
    {},
    "--api-url",
    host("h2")!.url,
    "--token-file",
    cluster.tokenFile,
    "create",
    "db",
    "--host",
    "h1",
    "--machine-type",
    "t1-micro",
  );
  assert.equal(db.code, 0, db.stderr);
  for (const from of ["h1", "h2"]) {
    const described = await json(from, "describe", "web");
    assert.equal(described.host, "h2");
    assert.equal(described.status, "RUNNING");
    const list = await json(from, "list");
    assert.deepEqual(
      list.map((v: any) => `${v.name}@${v.host} ${v.status}`),
      ["db@h1 RUNNING", "web@h2 RUNNING"],
    );
  }
  // The VM's files and VMM are on its host only.
  const { existsSync } = await import("node:fs");
  assert.ok(existsSync(join(host("h2")!.home, "vms/web")));
  assert.ok(!existsSync(join(host("h1")!.home, "vms/web")));
  const usage = await json("h2", "hosts", "list");
  const h2 = usage.find((h: any) => h.name === "h2");
  assert.deepEqual(h2.vms, ["web"]);
  assert.equal(h2.used.vcpus, 1);
  // A change through the other host is forwarded and waited for there.
  const stop = await on("h1", "stop", "web");
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await json("h1", "describe", "web")).status, "TERMINATED");
  assert.equal((await json("h2", "hosts", "list")).find((h: any) => h.name === "h2").used.vcpus, 0);
  // Events are the cluster's (etcd-event-log.ts): both hosts list both VMs' events, numbered alike.
  const eventsOf = async (host: string) => {
    const r = await on(host, "events", "--format", "json");
    assert.equal(r.code, 0, r.stderr);
    return r.stdout
      .trim()
      .split("\n")
      .map((l) => JSON.parse(l))
      .map((e: any) => `${e.seq} ${e.vmName} ${e.from}→${e.to}`);
  };
  await waitFor("h1 to list web's stop on h2", async () =>
    (await eventsOf("h1")).some((e) => / web RUNNING→STOPPING$/.test(e)) ? true : undefined,
  );
  const seenOnH1 = await eventsOf("h1");
  assert.ok(
    seenOnH1.some((e) => / db STAGING→RUNNING$/.test(e)),
    seenOnH1.join("\n"),
  );
  await waitFor("h2 to list the same events", async () => {
    const seenOnH2 = await eventsOf("h2");
    return seenOnH2.slice(0, seenOnH1.length).join() === seenOnH1.join() ? true : undefined;
  });
  // Names are the cluster's: taken on h2, refused on h1.
  const taken = await on("h2", "create", "web", "--host", "h1");
  assert.notEqual(taken.code, 0);
  assert.match(taken.stderr, /already exists/);
  const unknown = await on("h1", "create", "other", "--host", "h9");
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /no host 'h9' in the cluster/);
  // An import creates the VM on the host that receives it, with its record in etcd: listed by every host,
  // and refused, leaving nothing, when another host has the name.
  const file = join(cluster.dir, "web.tsvm");
  const exported = await on("h1", "export", "web", file, "--no-progress");
  assert.equal(exported.code, 0, exported.stderr);
  const twin = await on("h1", "import", file, "--no-progress");
  assert.notEqual(twin.code, 0);
  assert.match(twin.stderr, /already exists/);
  assert.ok(!existsSync(join(host("h1")!.home, "vms/web")), "nothing left on h1");
  const copy = await on("h1", "import", file, "--name", "web-copy", "--no-progress");
  assert.equal(copy.code, 0, copy.stderr);
  assert.equal((await json("h2", "describe", "web-copy")).host, "h1");
  assert.equal((await on("h2", "delete", "web-copy")).code, 0);
});

test("without --host the scheduler places a VM on the UP host with the most free memory", async () => {
  const before = await json("h1", "hosts", "list");
  const free = (h: any) => h.capacity.memoryMiB - h.used.memoryMiB;
  const expected = [...before].sort((a: any, b: any) => free(b) - free(a) || a.name.localeCompare(b.name))[0]
    .name;
  const r = await on("h2", "create", "auto", "--machine-type", "t1-micro");
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await json("h1", "describe", "auto")).host, expected);
  assert.equal((await on("h1", "delete", "auto")).code, 0);
});

test("a second daemon with a live host's name is refused; with etcd down changes fail clearly, VMs run on, all catches up", async () => {
  const port = await freePort();
  const home = join(cluster.dir, "h1-again");
  await mkdir(home);
  const twin = cluster.spawnDaemon("h1", home, port);
  let stderr = "";
  twin.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise((resolve) => twin.once("exit", resolve));
  assert.notEqual(code, 0);
  assert.match(stderr, /the host name 'h1' is taken by a live host/);

  const pid = (await json("h1", "describe", "db")).vmmPid as number;
  await cluster.etcd.pause();
  try {
    const stop = await on("h1", "stop", "db");
    assert.notEqual(stop.code, 0);
    assert.match(stop.stderr, /control plane unavailable/);
    // What this host runs, it still answers for, and the guest runs on.
    const db = await json("h1", "describe", "db");
    assert.equal(db.status, "RUNNING");
    process.kill(pid, 0);
  } finally {
    await cluster.etcd.resume();
  }
  // Each daemon's etcd client holds calls back for a few seconds after failures, each on its own clock.
  await waitFor("etcd to answer both daemons again", async () => {
    for (const h of ["h1", "h2"]) if ((await on(h, "hosts", "list")).code !== 0) return undefined;
    return true;
  });
  // All catches up: the same VMM ran through, the hosts kept their leases (no fencing) and changes work.
  assert.equal((await json("h2", "describe", "db")).vmmPid, pid);
  assert.deepEqual(
    (await json("h2", "hosts", "list")).map((h: any) => `${h.name} ${h.status}`),
    ["h1 UP", "h2 UP"],
  );
  assert.doesNotMatch(host("h1")!.log(), /fencing/);
  const stop = await on("h2", "stop", "db");
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await json("h1", "describe", "db")).status, "TERMINATED");
  assert.equal((await on("h1", "start", "db")).code, 0);
});

test("a host whose daemon stops shows DOWN and cannot be reached; restarted, it re-attaches its VMs from etcd", async () => {
  const r = await on("h1", "create", "keep", "--host", "h2", "--machine-type", "t1-micro");
  assert.equal(r.code, 0, r.stderr);
  const pid = (await json("h1", "describe", "keep")).vmmPid as number;
  const h2 = host("h2")!;
  const exited = new Promise((resolve) => h2.process.once("exit", resolve));
  h2.process.kill("SIGTERM");
  await exited;
  const hosts = await json("h1", "hosts", "list");
  assert.deepEqual(
    hosts.map((h: any) => `${h.name} ${h.status}`),
    ["h1 UP", "h2 DOWN"],
  );
  const unreachable = await on("h1", "describe", "keep");
  assert.notEqual(unreachable.code, 0);
  assert.match(unreachable.stderr, /host 'h2' \(DOWN, http:\/\/127\.0\.0\.1:\d+\) did not answer/);
  process.kill(pid, 0); // the VM runs on without its daemon
  await cluster.startHost("h2");
  await waitFor("h2 to serve again", async () => {
    const list = await on("h1", "hosts", "list", "--format", "json");
    return list.code === 0 && JSON.parse(list.stdout).every((h: any) => h.status === "UP") ? true : undefined;
  });
  const keep = await waitFor("keep to be re-attached", async () => {
    const d = await on("h1", "describe", "keep", "--format", "json");
    return d.code === 0 ? JSON.parse(d.stdout) : undefined;
  });
  assert.equal(keep.status, "RUNNING");
  assert.equal(keep.vmmPid, pid);
  assert.equal(keep.host, "h2");
});

test("through another host: the console history and an agent session (a WebSocket, relayed) reach the VM's host", async () => {
  const r = await on("h1", "create", "agent-x", "--host", "h2", "--machine-type", "t1-micro");
  assert.equal(r.code, 0, r.stderr);
  const logs = await waitFor("the guest's first console line", async () => {
    const l = await on("h1", "logs", "agent-x");
    return l.code === 0 && /boot at count/.test(l.stdout) ? l.stdout : undefined;
  });
  assert.match(logs, /boot at count/);
  // stdin is a pipe, so exec runs as a session: the WebSocket upgrade goes h1 → h2.
  const child = spawn(join(ROOT, "bin/tsvm"), ["exec", "agent-x", "--", "cat"], {
    env: {
      ...process.env,
      TSVM_HOME: join(cluster.dir, "client-home"),
      TSVM_API_URL: host("h1")!.url,
      TSVM_API_TOKEN_FILE: cluster.tokenFile,
    },
  });
  let stdout = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
  child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
  child.stdin.end("relayed through h1\n");
  const code = await new Promise((resolve) => child.once("close", resolve));
  assert.equal(code, 0, stderr);
  assert.equal(stdout, "relayed through h1\n");
});
