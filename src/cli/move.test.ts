// Moving VMs between the hosts of a cluster (`tsvm move NAME --host H`, docs/cluster.md "Moving VMs") with
// one real etcd and three daemons on this machine, their VMs the counting stand-in guest (engine "fixture";
// h3 has no such engine, so it refuses those VMs). What is checked: a RUNNING VM moves and its counter goes
// on from where it was; a VM at rest moves as its files; and every bad input leaves the VM where it was,
// a RUNNING one running: unknown, same, DOWN and full hosts, two moves at once, the target refusing the VM,
// the incoming route with a wrong token or a corrupted export file.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { Etcd3 } from "etcd3";
import { HOST_RECORD_FORMAT_VERSION } from "../api/schemas/host-schemas.ts";
import { TestCluster, waitFor } from "../hypervisor/fixtures/test-cluster.ts";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let cluster: TestCluster;
const on = (name: string, ...args: string[]) => cluster.on(name, ...args);
const json = (name: string, ...args: string[]) => cluster.json(name, ...args);
const api = (...args: Parameters<TestCluster["api"]>) => cluster.api(...args);
const home = (name: string) => cluster.hosts.get(name)!.home;

const count = async (vm: string): Promise<number> =>
  (await api("h1", "GET", `/instances/${vm}/stats`)).body.stats.count;

/** Waits until the VM's counter is past `than` (it runs). */
const countsPast = (vm: string, than: number) =>
  waitFor(`${vm}'s counter to pass ${than}`, async () => {
    const c = await count(vm);
    return c > than ? c : undefined;
  });

before(async () => {
  cluster = await TestCluster.start({
    hosts: ["h1", "h2", "h3"],
    config: (name, dir) => {
      const engine = name === "h3" ? "other" : "fixture";
      return {
        defaultEngine: engine,
        engines: { [engine]: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
        images: { default: join(dir, "disk.raw") },
        stopTimeoutMs: 2000,
      };
    },
  });
  // Two hosts that have no daemon: "gone" (its lease is gone: DOWN) and "tiny" (UP, but with no room).
  const client = new Etcd3({ hosts: cluster.etcd.url });
  const record = (name: string, memoryMiB: number) =>
    JSON.stringify({
      formatVersion: HOST_RECORD_FORMAT_VERSION,
      name,
      address: "http://127.0.0.1:9",
      capacity: { vcpus: 1, memoryMiB },
      draining: false,
      joinedAt: new Date().toISOString(),
    });
  await client.put("/tsvm/hosts/gone").value(record("gone", 65536));
  await client.put("/tsvm/hosts/tiny").value(record("tiny", 16));
  await client.put("/tsvm/hosts-alive/tiny").value(new Date().toISOString());
  client.close();
});

after(() => cluster?.stop());

test("a RUNNING VM moves h1 → h2 and counts on; at rest it moves as its files; the operation has the figures", async () => {
  assert.equal((await on("h2", "create", "web", "--host", "h1", "--machine-type", "t1-micro")).code, 0);
  const before = await countsPast("web", 20);
  const moved = await on("h3", "move", "web", "--host", "h2", "--format", "json");
  assert.equal(moved.code, 0, moved.stderr);
  const op = JSON.parse(moved.stdout);
  assert.equal(op.operationType, "move");
  assert.equal(op.error, null);
  assert.equal(op.migration.from, "h1");
  assert.equal(op.migration.to, "h2");
  assert.equal(op.migration.rounds, 0);
  assert.ok(op.migration.bytes > 0);
  // The stand-in guest's VMM cannot send its guest live: the move says so and went the stop-and-copy way.
  assert.match(op.statusMessage, /not moved live: its engine cannot migrate a running guest/);
  assert.ok(op.migration.downtimeMs > 0 && op.migration.downtimeMs <= op.migration.totalMs);
  const web = await json("h1", "describe", "web");
  assert.equal(web.host, "h2");
  assert.equal(web.status, "RUNNING");
  assert.ok(
    web.history.some((h: any) => /moved here from host 'h1'/.test(h.reason)),
    JSON.stringify(web.history),
  );
  // The guest went on from its saved count, not from 0 (a reboot would start again).
  const after = await count("web");
  assert.ok(after >= before, `count ${after} after the move, ${before} before`);
  await countsPast("web", after);
  assert.ok(!existsSync(join(home("h1"), "vms/web")), "h1 keeps no files of web");
  assert.ok(existsSync(join(home("h2"), "vms/web")));
  const hosts = await json("h1", "hosts", "list");
  assert.deepEqual(hosts.find((h: any) => h.name === "h2").vms, ["web"]);

  // At rest: stopped on h2, moved back to h1 as its files, and it starts there.
  assert.equal((await on("h1", "stop", "web")).code, 0);
  const back = await on("h2", "move", "web", "--host", "h1");
  assert.equal(back.code, 0, back.stderr);
  assert.match(back.stdout, /moved to host 'h1' in [\d.]+ s, \d+ bytes sent/);
  const rest = await json("h2", "describe", "web");
  assert.equal(rest.host, "h1");
  assert.equal(rest.status, "TERMINATED");
  assert.ok(!existsSync(join(home("h2"), "vms/web")));
  assert.equal((await on("h2", "start", "web")).code, 0);
  assert.equal((await json("h3", "describe", "web")).status, "RUNNING");
});

test("bad moves are refused with one line and leave the VM running where it is", async () => {
  assert.equal((await on("h1", "create", "db", "--host", "h1", "--machine-type", "t1-micro")).code, 0);
  let pid = (await json("h1", "describe", "db")).vmmPid as number;
  const refused = async (host: string, pattern: RegExp) => {
    const r = await on("h2", "move", "db", "--host", host);
    assert.equal(r.code, 1, `${host}: ${r.stdout}`);
    assert.match(r.stderr, pattern);
    // One line from the command (bin/tsvm may say other things before it runs the command).
    assert.equal(r.stderr.split("\n").filter((l) => l.startsWith("tsvm move:")).length, 1, r.stderr);
    const db = await json("h2", "describe", "db");
    // Refused before it was suspended, the VM keeps its VMM; refused by the target, it runs in a new one.
    assert.equal(`${db.host} ${db.status} ${pid === 0 || db.vmmPid === pid}`, "h1 RUNNING true");
  };
  await refused("h9", /no host 'h9' in the cluster/);
  await refused("h1", /already on host 'h1'/);
  await refused("gone", /host 'gone' is DOWN/);
  await refused("tiny", /host 'tiny' has no room/);
  // h3 has no engine "fixture": it refuses the VM once sent, and the suspended VM resumes on h1.
  const before = await count("db");
  pid = 0;
  await refused("h3", /moving 'db' to host 'h3' failed: .*invalid-engine/);
  await countsPast("db", before);
  assert.ok(!existsSync(join(home("h3"), "vms/db")));
  const usage = await on("h1", "move", "db");
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /give the host to move to/);
  // Two moves at once: the second is refused while the first runs; the first succeeds.
  const [first, second] = await Promise.all([
    api("h1", "POST", "/instances/db/move", { host: "h2" }),
    api("h1", "POST", "/instances/db/move", { host: "h2" }),
  ]);
  const statuses = [first.status, second.status].sort();
  assert.deepEqual(statuses, [200, 409], JSON.stringify([first.body, second.body]));
  const loser = first.status === 409 ? first : second;
  assert.equal(loser.body.error.errors[0].reason, "move-in-progress");
  const winner = first.status === 200 ? first : second;
  const done = (await api("h3", "POST", `/operations/${winner.body.id}/wait?timeoutSec=60`)).body;
  assert.equal(done.error, null, JSON.stringify(done));
  assert.equal((await json("h3", "describe", "db")).host, "h2");
});

test("the incoming route wants the cluster's token and a whole export file; a refused one changes nothing", async () => {
  const { bytes, revision } = await stoppedExport("cold");
  const path = `/migrations/incoming?name=cold&revision=${revision}&from=h1&resume=false`;
  const octets = { contentType: "application/octet-stream" };
  const wrong = await api("h2", "POST", path, bytes, { ...octets, token: "not-the-cluster-token-at-all" });
  assert.equal(wrong.status, 401);
  const corrupted = bytes.slice();
  corrupted[Math.floor(corrupted.length / 2)]! ^= 0xff;
  const bad = await api("h2", "POST", path, corrupted, octets);
  assert.equal(bad.status, 400, JSON.stringify(bad.body));
  assert.equal(bad.body.error.errors[0].reason, "bad-archive");
  const stale = await api("h2", "POST", path.replace(`revision=${revision}`, "revision=1"), bytes, octets);
  assert.equal(stale.status, 409, JSON.stringify(stale.body));
  assert.equal(stale.body.error.errors[0].reason, "revision-conflict");
  const query = await api("h2", "POST", path.replace("&resume=false", ""), bytes, octets);
  assert.equal(query.status, 400);
  assert.match(query.body.error.message, /query parameter 'resume' is missing/);
  for (const h of ["h2", "h3"]) assert.ok(!existsSync(join(home(h), "vms/cold")), h);
  const cold = await json("h2", "describe", "cold");
  assert.equal(`${cold.host} ${cold.status}`, "h1 TERMINATED");
  assert.ok(existsSync(join(home("h1"), "vms/cold")));
});

async function etcdRevision(name: string): Promise<number> {
  const client = new Etcd3({ hosts: cluster.etcd.url });
  try {
    const r = await client.get(`/tsvm/vms/${name}`).exec();
    return Number(r.kvs[0]!.mod_revision);
  } finally {
    client.close();
  }
}

test("the live route wants the cluster's token and a live move's file; a refused one leaves nothing on the target", async () => {
  const { bytes, revision } = await stoppedExport("still");
  const path = `/migrations/live?name=still&revision=${revision}&from=h1&diskBytes=1048576`;
  const octets = { contentType: "application/octet-stream" };
  const wrong = await api("h2", "POST", path, bytes, { ...octets, token: "not-the-cluster-token-at-all" });
  assert.equal(wrong.status, 401);
  // A whole, valid export, but of a VM at rest with its disk: not what a live move sends.
  const atRest = await api("h2", "POST", path, bytes, octets);
  assert.equal(atRest.status, 400, JSON.stringify(atRest.body));
  assert.equal(atRest.body.error.errors[0].reason, "bad-archive");
  assert.match(atRest.body.error.message, /a live move's file holds a RUNNING VM/);
  const size = await api("h2", "POST", path.replace("diskBytes=1048576", "diskBytes=1000"), bytes, octets);
  assert.equal(size.status, 400);
  assert.match(size.body.error.message, /'diskBytes' must be a whole number of 512-byte sectors/);
  for (const h of ["h2", "h3"]) assert.ok(!existsSync(join(home(h), "vms/still")), h);
  const still = await json("h2", "describe", "still");
  assert.equal(`${still.host} ${still.status}`, "h1 TERMINATED");
});

/** A VM `name` created on h1 and stopped: its export file's bytes and its record's revision in etcd. */
async function stoppedExport(name: string): Promise<{ bytes: Uint8Array; revision: string }> {
  assert.equal((await on("h1", "create", name, "--host", "h1", "--machine-type", "t1-micro")).code, 0);
  assert.equal((await on("h1", "stop", name)).code, 0);
  const file = join(cluster.dir, `${name}.tsvm`);
  assert.equal((await on("h1", "export", name, file)).code, 0);
  return { bytes: new Uint8Array(await readFile(file)), revision: (await etcdRevision(name)).toString() };
}
