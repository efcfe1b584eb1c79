// A two-host cluster on this machine, as a user runs it: one real etcd, two daemons (`tsvm daemon --cluster`,
// their own TSVM_HOMEs and ports, one token) and the remote CLI (TSVM_API_URL / --api-url). VMs host the
// counting stand-in guest (engine "fixture"): placement, forwarding and records are what is tested here.
import assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { EtcdServer, freePort } from "../hypervisor/fixtures/etcd-server.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let dir: string;
let etcd: EtcdServer;
let tokenFile: string;
const daemons = new Map<string, { home: string; url: string; process: ChildProcess; log: () => string }>();

function tsvm(
  env: Record<string, string>,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(root, "bin/tsvm"),
      args,
      { env: { ...process.env, TSVM_HOME: join(dir, "client-home"), ...env }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** The CLI against host `name`'s API through the environment. */
function on(name: string, ...args: string[]) {
  return tsvm({ TSVM_API_URL: daemons.get(name)!.url, TSVM_API_TOKEN_FILE: tokenFile }, ...args);
}

async function json(name: string, ...args: string[]): Promise<any> {
  const r = await on(name, ...args, "--format", "json");
  assert.equal(r.code, 0, `${args.join(" ")} on ${name}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/** Starts `tsvm daemon --cluster …` for host `name` in its own data directory. */
function startDaemon(name: string, home: string, port: number): ChildProcess {
  const child = spawn(
    join(root, "bin/tsvm"),
    [
      "daemon",
      "--cluster",
      etcd.url,
      "--host",
      name,
      "--listen",
      `127.0.0.1:${port}`,
      "--token-file",
      tokenFile,
    ],
    { env: { ...process.env, TSVM_HOME: home, TSVM_VMM_SPARE: "0" }, stdio: ["ignore", "ignore", "pipe"] },
  );
  return child;
}

async function waitFor<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

before(async () => {
  dir = await mkdtemp(join(tmpdir(), "tsvm-cluster-"));
  etcd = await EtcdServer.start();
  tokenFile = join(dir, "token");
  await writeFile(tokenFile, "cluster-test-token-0123456789abcdef\n", { mode: 0o600 });
  await writeFile(join(dir, "disk.raw"), Buffer.alloc(4096));
  for (const name of ["h1", "h2"]) {
    const home = join(dir, name);
    await mkdir(home);
    await writeFile(
      join(home, "config.json"),
      JSON.stringify({
        defaultEngine: "fixture",
        engines: { fixture: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
        images: { default: join(dir, "disk.raw") },
        stopTimeoutMs: 2000,
      }),
    );
    const port = await freePort();
    const child = startDaemon(name, home, port);
    let log = "";
    child.stderr!.on("data", (d: Buffer) => {
      log = (log + d.toString()).slice(-16384);
    });
    daemons.set(name, { home, url: `http://127.0.0.1:${port}`, process: child, log: () => log });
  }
  for (const name of daemons.keys())
    await waitFor(`host ${name} to serve`, async () => {
      const r = await on(name, "hosts", "list", "--format", "json");
      if (r.code === 0 && (JSON.parse(r.stdout) as unknown[]).length === 2) return true;
      if (daemons.get(name)!.process.exitCode !== null)
        throw new Error(`the daemon of ${name} exited: ${daemons.get(name)!.log()}`);
      return undefined;
    });
});

after(async () => {
  if (daemons.size > 0) {
    const list = await on("h1", "list", "--format", "json").catch(() => undefined);
    if (list?.code === 0)
      for (const vm of JSON.parse(list.stdout) as Array<{ name: string }>) await on("h1", "delete", vm.name);
  }
  for (const d of daemons.values()) {
    if (d.process.exitCode !== null) continue;
    const exited = new Promise((resolve) => d.process.once("exit", resolve));
    d.process.kill("SIGTERM");
    await exited;
  }
  await etcd?.stop();
  await rm(dir, { recursive: true, force: true });
});

test("two hosts: placement by --host, any host's API serves the whole cluster and forwards to the VM's host", async () => {
  const hosts = await json("h1", "hosts", "list");
  assert.deepEqual(
    hosts.map((h: any) => `${h.name} ${h.status} ${h.address === daemons.get(h.name)!.url}`),
    ["h1 UP true", "h2 UP true"],
  );
  // Created through h1's API on h2, and through h2's API (the --api-url option this time) on h1.
  const web = await on("h1", "create", "web", "--host", "h2", "--machine-type", "t1-micro");
  assert.equal(web.code, 0, web.stderr);
  const db = await tsvm(
    {},
    "--api-url",
    daemons.get("h2")!.url,
    "--token-file",
    tokenFile,
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
  assert.ok(existsSync(join(daemons.get("h2")!.home, "vms/web")));
  assert.ok(!existsSync(join(daemons.get("h1")!.home, "vms/web")));
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
  const file = join(dir, "web.tsvm");
  const exported = await on("h1", "export", "web", file, "--no-progress");
  assert.equal(exported.code, 0, exported.stderr);
  const twin = await on("h1", "import", file, "--no-progress");
  assert.notEqual(twin.code, 0);
  assert.match(twin.stderr, /already exists/);
  assert.ok(!existsSync(join(daemons.get("h1")!.home, "vms/web")), "nothing left on h1");
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
  const home = join(dir, "h1-again");
  await mkdir(home);
  const twin = startDaemon("h1", home, port);
  let stderr = "";
  twin.stderr!.on("data", (d: Buffer) => (stderr += d.toString()));
  const code = await new Promise((resolve) => twin.once("exit", resolve));
  assert.notEqual(code, 0);
  assert.match(stderr, /the host name 'h1' is taken by a live host/);

  const pid = (await json("h1", "describe", "db")).vmmPid as number;
  await etcd.pause();
  try {
    const stop = await on("h1", "stop", "db");
    assert.notEqual(stop.code, 0);
    assert.match(stop.stderr, /control plane unavailable/);
    // What this host runs, it still answers for, and the guest runs on.
    const db = await json("h1", "describe", "db");
    assert.equal(db.status, "RUNNING");
    process.kill(pid, 0);
  } finally {
    await etcd.resume();
  }
  await waitFor("etcd to answer the daemon again", async () =>
    (await on("h1", "hosts", "list")).code === 0 ? true : undefined,
  );
  // All catches up: the same VMM ran through, the hosts kept their leases (no fencing) and changes work.
  assert.equal((await json("h2", "describe", "db")).vmmPid, pid);
  assert.deepEqual(
    (await json("h2", "hosts", "list")).map((h: any) => `${h.name} ${h.status}`),
    ["h1 UP", "h2 UP"],
  );
  assert.doesNotMatch(daemons.get("h1")!.log(), /fencing/);
  const stop = await on("h2", "stop", "db");
  assert.equal(stop.code, 0, stop.stderr);
  assert.equal((await json("h1", "describe", "db")).status, "TERMINATED");
  assert.equal((await on("h1", "start", "db")).code, 0);
});

test("a host whose daemon stops shows DOWN and cannot be reached; restarted, it re-attaches its VMs from etcd", async () => {
  const r = await on("h1", "create", "keep", "--host", "h2", "--machine-type", "t1-micro");
  assert.equal(r.code, 0, r.stderr);
  const pid = (await json("h1", "describe", "keep")).vmmPid as number;
  const h2 = daemons.get("h2")!;
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
  const port = Number(new URL(h2.url).port);
  const again = startDaemon("h2", h2.home, port);
  h2.process = again;
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
  const child = spawn(join(root, "bin/tsvm"), ["exec", "agent-x", "--", "cat"], {
    env: {
      ...process.env,
      TSVM_HOME: join(dir, "client-home"),
      TSVM_API_URL: daemons.get("h1")!.url,
      TSVM_API_TOKEN_FILE: tokenFile,
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
