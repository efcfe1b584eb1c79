// Fault injection: for every crash point of crash-point.ts, the real daemon (or a VMM it starts) is killed
// with SIGKILL there (TSVM_CRASH_AT), a daemon is started again without the switch, and then every VM must
// be in a stable status with its disk and saved state intact, no operation left unfinished, and the
// actions legal there must work. VMs host the counting stand-in guest: what is tested is the hypervisor's.
import assert from "node:assert/strict";
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, describe, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiClient } from "../../src/api/client.ts";
import type { Operation } from "../../src/api/types.ts";
import { daemonCommandLine } from "../../src/cli/daemon-connection.ts";
import { CRASH_POINTS, type CrashPointInfo } from "../../src/hypervisor/crash-point.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let templateDir: string;
let template: Buffer;
const homes: string[] = [];
const daemons = new Set<ChildProcess>();

before(async () => {
  templateDir = await mkdtemp(join(tmpdir(), "tsvm-crash-template-"));
  template = randomBytes(256 * 1024);
  await writeFile(join(templateDir, "disk.raw"), template);
});

after(async () => {
  for (const d of daemons) d.kill("SIGKILL");
  await rm(templateDir, { recursive: true, force: true });
});

interface Daemon {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stderr: string;
}

function startDaemon(home: string, crashAt?: string): Daemon {
  const { command, args } = daemonCommandLine();
  const env: NodeJS.ProcessEnv = { ...process.env, TSVM_HOME: home };
  delete env.TSVM_CRASH_AT;
  if (crashAt) env.TSVM_CRASH_AT = crashAt;
  const child = spawn(command, args, { env, stdio: ["ignore", "ignore", "pipe"] });
  daemons.add(child);
  const daemon: Daemon = {
    child,
    stderr: "",
    exited: new Promise((resolve) =>
      child.on("exit", (code, signal) => {
        daemons.delete(child);
        resolve({ code, signal });
      }),
    ),
  };
  child.stderr?.on("data", (c: Buffer) => (daemon.stderr += c.toString()));
  return daemon;
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = 60_000): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const value = await probe().catch(() => undefined);
    if (value !== undefined) return value;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function answering(home: string, daemon: Daemon): Promise<ApiClient> {
  const client = ApiClient.forDataDir(home);
  await until("the daemon to answer", async () => {
    if (daemon.child.exitCode !== null || daemon.child.signalCode !== null)
      throw new Error(`the daemon exited: ${daemon.stderr}`);
    return (await client.getHost()) ? true : undefined;
  });
  return client;
}

async function succeed(client: ApiClient, started: Promise<Operation>): Promise<Operation> {
  const op = await client.waitUntilDone((await started).id, undefined, 30);
  assert.equal(op.error, null, `${op.operationType} ${op.targetName}: ${op.error?.message}`);
  return op;
}

/** Brings VM `vm` to where `operation` is legal, through the crash daemon (none of its points lies on this path). */
async function prepare(client: ApiClient, point: CrashPointInfo, vm: string): Promise<void> {
  if (point.operation === "insert") return;
  await succeed(client, client.insertInstance({ name: vm, memoryMiB: 32 }));
  if (point.operation === "start" || point.operation === "setMachineType")
    await succeed(client, client.instanceAction(vm, "stop"));
  if (point.operation === "resume") await succeed(client, client.instanceAction(vm, "suspend"));
  if (point.operation === "restoreSnapshot") await succeed(client, client.createSnapshot(vm, { name: "s1" }));
}

function act(client: ApiClient, point: CrashPointInfo, vm: string): Promise<Operation> {
  switch (point.operation) {
    case "insert":
      return client.insertInstance({ name: vm, memoryMiB: 32 });
    case "delete":
      return client.deleteInstance(vm);
    case "setMachineType":
      return client.setMachineType(vm, "t1-micro");
    case "createSnapshot":
      return client.createSnapshot(vm, { name: "s2" });
    case "restoreSnapshot":
      return client.restoreSnapshot(vm, "s1");
    default:
      return client.instanceAction(vm, point.operation);
  }
}

async function vmmLogs(home: string, vm: string): Promise<string> {
  const dir = join(home, "vms", vm);
  const read = (f: string) => readFile(join(dir, f), "utf8").catch(() => "");
  return (await read("vmm.log.1")) + (await read("vmm.log"));
}

async function walk(point: CrashPointInfo): Promise<void> {
  const home = await mkdtemp(join(tmpdir(), "tsvm-crash-"));
  homes.push(home);
  await writeFile(
    join(home, "config.json"),
    JSON.stringify({
      defaultEngine: "fixture",
      engines: { fixture: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
      images: { default: join(templateDir, "disk.raw") },
      stopTimeoutMs: 2000,
      capacity: { cpuOvercommit: 4, memoryReserveMiB: 0, diskReserveMiB: 0 },
    }),
  );
  const vm = "crash";
  const crashing = startDaemon(home, point.name);
  let client = await answering(home, crashing);
  await prepare(client, point, vm);
  const started = act(client, point, vm).catch((e: Error) => e);
  if (point.process === "daemon") {
    const exit = await Promise.race([
      crashing.exited,
      new Promise<undefined>((r) => setTimeout(() => r(undefined), 60_000).unref()),
    ]);
    assert.equal(exit?.signal, "SIGKILL", `the daemon was not killed at ${point.name}: ${crashing.stderr}`);
    assert.match(crashing.stderr, new RegExp(`crash point ${point.name}: killing process`));
  } else {
    const op = await started;
    if (!(op instanceof Error)) await client.waitUntilDone(op.id, undefined, 30);
    assert.match(await vmmLogs(home, vm), new RegExp(`crash point ${point.name}: killing process`));
    crashing.child.kill("SIGKILL");
    await crashing.exited;
  }

  const restarted = startDaemon(home);
  try {
    client = await answering(home, restarted);
    // Recovery settles every VM and every operation the crash left unfinished.
    await until("recovery to settle", async () => {
      const ops = (await client.listOperations(1000)).items;
      const vms = (await client.listInstances()).items;
      const settled =
        ops.every((o) => o.status === "DONE") &&
        vms.every((v) => ["RUNNING", "TERMINATED", "SUSPENDED"].includes(v.status));
      return settled ? true : undefined;
    });
    const vms = (await client.listInstances()).items;
    if (point.operation !== "insert" && point.operation !== "delete")
      assert.equal(vms.length, 1, `the VM is still there after ${point.name}`);
    for (const v of vms) {
      const dir = join(home, "vms", v.name);
      // The guest never writes its disk: through its whole chain it reads as the image did, and qemu-img
      // finds every file of the chain sound.
      const disk = join(dir, "disk.qcow2");
      execFileSync("qemu-img", ["check", "-q", disk]);
      execFileSync("qemu-img", [
        "compare",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        disk,
        join(templateDir, "disk.raw"),
      ]);
      // Every snapshot still listed can be restored (and the VM is RUNNING or TERMINATED afterwards).
      for (const s of (await client.listSnapshots(v.name)).items)
        await succeed(client, client.restoreSnapshot(v.name, s.name));
      v.status = (await client.getInstance(v.name)).status;
      if (v.status === "SUSPENDED") {
        const saved = JSON.parse(await readFile(join(dir, "state", "counter.json"), "utf8"));
        assert.equal(typeof saved.count, "number", `${point.name}: the saved state is intact`);
        await succeed(client, client.instanceAction(v.name, "resume"));
      } else if (v.status === "TERMINATED") {
        await succeed(client, client.instanceAction(v.name, "start"));
      }
      // Whatever it was, it runs now: the legal actions from RUNNING work.
      assert.equal((await client.getInstance(v.name)).status, "RUNNING");
      await succeed(client, client.instanceAction(v.name, "stop"));
      await succeed(client, client.deleteInstance(v.name));
    }
    assert.deepEqual((await client.listInstances()).items, []);
  } finally {
    restarted.child.kill("SIGTERM");
    await restarted.exited;
  }
  await rm(home, { recursive: true, force: true });
}

// Each point has its own data directory, so several walk at once (each costs two daemon starts and a few
// VMM starts, mostly waiting).
describe("every crash point leaves every VM in a legal, usable state with its data intact", {
  concurrency: 4,
}, () => {
  for (const point of CRASH_POINTS) test(point.name, () => walk(point));
});
