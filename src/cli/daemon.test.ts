// The CLI as a user runs it (bin/tsvm, real processes): the daemon started on demand, VM commands as API
// clients, the daemon killed and restarted under running VMs. VMs host the counting stand-in guest
// (engine "fixture", configured in the temp data directory's config.json) until a real guest can boot.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let home: string;

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-cli-"));
  await writeFile(join(home, "disk.raw"), Buffer.alloc(4096));
  await writeFile(
    join(home, "config.json"),
    JSON.stringify({
      defaultEngine: "fixture",
      engines: { fixture: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
      images: { default: join(home, "disk.raw") },
      stopTimeoutMs: 2000,
    }),
  );
});

after(async () => {
  const vms = await tsvm("list", "--format", "json").catch(() => undefined);
  if (vms?.code === 0)
    for (const vm of JSON.parse(vms.stdout) as Array<{ name: string }>) await tsvm("delete", vm.name);
  await tsvm("daemon", "stop");
  await rm(home, { recursive: true, force: true });
});

function tsvm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(root, "bin/tsvm"),
      args,
      { env: { ...process.env, TSVM_HOME: home }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** Runs bin/tsvm with `input` piped to its stdin. */
function tsvmWithInput(
  input: string,
  ...args: string[]
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(join(root, "bin/tsvm"), args, { env: { ...process.env, TSVM_HOME: home } });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 60_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
    child.stdin.end(input);
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test("create starts the daemon on demand; list and describe show the VM; bad sizes and names are refused", async () => {
  const created = await tsvm("create", "web", "--cpus", "1", "--memory", "128M");
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stderr, /started the daemon/);
  assert.match(created.stdout, /Created web .*RUNNING/);

  const list = await tsvm("list", "--format", "json");
  assert.equal(list.code, 0, list.stderr);
  const [vm] = JSON.parse(list.stdout) as Array<Record<string, unknown>>;
  for (const key of [
    "name",
    "status",
    "engine",
    "cpus",
    "memoryMiB",
    "creationTimestamp",
    "lastStartTimestamp",
  ])
    assert.ok(key in vm!, key);
  assert.equal(vm!.status, "RUNNING");
  assert.equal(vm!.memoryMiB, 128);
  assert.match((await tsvm("list")).stdout, /^NAME +STATUS +ENGINE/);

  const described = JSON.parse((await tsvm("describe", "web", "--format", "json")).stdout);
  assert.ok(alive(described.vmmPid));
  assert.deepEqual(
    described.history.map((h: { to: string }) => h.to),
    ["PROVISIONING", "STAGING", "RUNNING"],
  );

  const cases: Array<[string[], number, RegExp]> = [
    [["create", "web"], 1, /the VM 'web' already exists/],
    [["create", "x", "--memory", "0"], 1, /invalid memory size 0 MiB/],
    [["create", "x", "--memory", "1T"], 1, /invalid memory size 1048576 MiB/],
    [["create", "x", "--memory", "lots"], 2, /'lots' is not a size/],
    [["create", "Bad!"], 1, /not a valid VM name/],
    [["describe", "ghost"], 1, /the VM 'ghost' was not found/],
    [["resume", "web"], 1, /cannot resume VM 'web' while it is RUNNING/],
  ];
  for (const [args, code, message] of cases) {
    const r = await tsvm(...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
  }
  assert.equal(JSON.parse((await tsvm("list", "--format", "json")).stdout).length, 1, "nothing half-created");

  const logs = await tsvm("logs", "web");
  assert.equal(logs.code, 0, logs.stderr);
  assert.match(logs.stdout, /^boot at count 0\n/);
  const attached = await tsvmWithInput("hi there\n", "console", "web");
  assert.equal(attached.code, 0, attached.stderr);
  assert.match(attached.stdout, /HI THERE/, "typed input reached the guest, whose echo came back");
  const top = await tsvm("top", "--iterations", "1", "--interval", "0.5", "--format", "json");
  assert.equal(top.code, 0, top.stderr);
  const [row] = JSON.parse(top.stdout) as Array<{ name: string; cpuPercent: number | null; rssMiB: number }>;
  assert.equal(row!.name, "web");
  assert.ok(row!.cpuPercent !== null && row!.cpuPercent >= 0 && row!.rssMiB > 0);
});

test("--async returns an operation id that 'operations wait' waits for; events record the transitions", async () => {
  const r = await tsvm("stop", "web", "--async");
  assert.equal(r.code, 0, r.stderr);
  const id = r.stdout.trim();
  assert.match(id, /^operation-/);
  const waited = await tsvm("operations", "wait", id, "--format", "json");
  assert.equal(waited.code, 0, waited.stderr);
  assert.equal(JSON.parse(waited.stdout).status, "DONE");
  assert.equal(JSON.parse((await tsvm("describe", "web", "--format", "json")).stdout).status, "TERMINATED");
  const events = (await tsvm("events", "web", "--format", "json")).stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l).to);
  assert.deepEqual(events.slice(-2), ["STOPPING", "TERMINATED"]);
  assert.equal((await tsvm("start", "web")).code, 0);
});

test("kill -9 of the daemon leaves the VM running; the next command restarts the daemon, which re-attaches", async () => {
  const before = JSON.parse((await tsvm("describe", "web", "--format", "json")).stdout);
  const daemon = JSON.parse(await readFile(join(home, "daemon.json"), "utf8")) as { pid: number };
  process.kill(daemon.pid, "SIGKILL");
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(alive(before.vmmPid), "the VMM outlives its daemon");
  const again = await tsvm("describe", "web", "--format", "json");
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stderr, /started the daemon/);
  const vm = JSON.parse(again.stdout);
  assert.equal(vm.status, "RUNNING");
  assert.equal(vm.vmmPid, before.vmmPid);

  const second = await tsvm("daemon");
  assert.equal(second.code, 3, "a second daemon for the same data directory refuses to start");
  assert.match(second.stderr, /a tsvm daemon \(pid \d+\) already runs/);
  const status = await tsvm("daemon", "status");
  assert.equal(status.code, 0);
  assert.match(status.stdout, /1\/\d+ vCPUs/);

  const stopped = await tsvm("daemon", "stop");
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.equal((await tsvm("daemon", "status")).code, 1);
  assert.ok(alive(before.vmmPid), "stopping the daemon does not stop VMs");
});
