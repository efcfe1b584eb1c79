// The hypervisor's robustness through bin/tsvm and the real daemon in a temp TSVM_HOME: admission refused
// with the host's measured sizes, operations that survive kill -9 and a stop of the daemon, crash leftovers
// recovered at daemon start, and a console log that rotates under a guest printing without end. VMs host
// the counting stand-in guest (src/hypervisor/fixtures/counting-guest.ts): these behaviours are the
// hypervisor's, not the engine's.
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiClient } from "../api/client.ts";
import type { Operation } from "../api/types.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
let home: string;
/** Memory the daemon offers guests: the host's measured total minus a reserve chosen to leave this. */
const FREE_MIB = 512;

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-recovery-"));
  await writeFile(join(home, "disk.raw"), Buffer.alloc(4096));
  await writeFile(
    join(home, "config.json"),
    JSON.stringify({
      defaultEngine: "fixture",
      engines: { fixture: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
      images: { default: join(home, "disk.raw") },
      stopTimeoutMs: 3000,
      // 2 vCPUs and 512 MiB for guests on any host, so that "more than is free" is a real request.
      capacity: {
        cpuOvercommit: 2.5 / availableParallelism(),
        memoryReserveMiB: Math.floor(totalmem() / 1048576) - FREE_MIB,
      },
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

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function tsvm(...args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(
      join(root, "bin/tsvm"),
      args,
      { env: { ...process.env, TSVM_HOME: home }, timeout: 120_000, maxBuffer: 64 << 20 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** bin/tsvm in the background: `done` resolves when it exits. */
function tsvmInBackground(...args: string[]): { pid: number; done: Promise<Run> } {
  const child = spawn(join(root, "bin/tsvm"), args, { env: { ...process.env, TSVM_HOME: home } });
  const done = new Promise<Run>((resolve) => {
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (c: Buffer) => (stdout += c.toString()));
    child.stderr.on("data", (c: Buffer) => (stderr += c.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), 120_000);
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code: code ?? 1, stdout, stderr });
    });
  });
  return { pid: child.pid!, done };
}

/**
 * Whether process `pid` has a connection open to the daemon's API socket (from `ss -xpn`: the peer of one
 * of its Unix sockets is a socket bound to api.sock). bin/tsvm takes a second or more to start on a loaded
 * host; a daemon killed before its waiter connected would test nothing of "a waiting CLI follows".
 */
async function connectedToApi(pid: number): Promise<boolean> {
  const out = await new Promise<string>((resolve) =>
    execFile("ss", ["-xpn"], { maxBuffer: 16 << 20 }, (_e, stdout) => resolve(stdout ?? "")),
  );
  const apiInodes = new Set<string>();
  const peersOfPid: string[] = [];
  for (const line of out.split("\n")) {
    const m = /^u_str\s+ESTAB\s+\d+\s+\d+\s+(\S+)\s+(\d+)\s+\S+\s+(\d+)(.*)$/.exec(line);
    if (!m) continue;
    const [, local, inode, peer, users] = m;
    if (local === join(home, "api.sock")) apiInodes.add(inode);
    if (users.includes(`pid=${pid},`)) peersOfPid.push(peer);
  }
  return peersOfPid.some((peer) => apiInodes.has(peer));
}

async function ok(...args: string[]): Promise<Run> {
  const r = await tsvm(...args);
  assert.equal(r.code, 0, `tsvm ${args.join(" ")}: ${r.stderr}`);
  return r;
}

async function describe(name: string): Promise<{ status: string; vmmPid: number | null }> {
  return JSON.parse((await ok("describe", name, "--format", "json")).stdout);
}

async function operation(id: string): Promise<Operation> {
  return JSON.parse((await ok("operations", "describe", id, "--format", "json")).stdout);
}

async function until(cond: () => Promise<boolean>, ms = 60_000): Promise<void> {
  const t0 = Date.now();
  while (!(await cond())) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function killDaemon(): Promise<void> {
  const { pid } = JSON.parse(await readFile(join(home, "daemon.json"), "utf8")) as { pid: number };
  process.kill(pid, "SIGKILL");
  await until(async () => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  });
}

/** Every `.tmp-` entry in the data directory, two levels below vms/. */
async function tempLeftovers(): Promise<string[]> {
  const found: string[] = [];
  const scan = async (dir: string, depth: number) => {
    for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
      if (e.name.startsWith(".tmp-")) found.push(join(dir, e.name));
      else if (e.isDirectory() && depth > 0) await scan(join(dir, e.name), depth - 1);
    }
  };
  await scan(home, 2);
  return found;
}

test("admission refuses, with the sizes, what the measured host cannot hold; bad sizes and names are refused; nothing is left", async () => {
  await ok("list"); // starts the daemon, so that each refusal below is its command's only line
  const refusals: Array<[string[], RegExp]> = [
    [
      ["create", "big", "--memory", "1G"],
      new RegExp(
        `^tsvm create: Insufficient host capacity for 'MEMORY': VM 'big' requests 1024 MiB, but only ${FREE_MIB} MiB of ${FREE_MIB} MiB are free \\(\\d+ MiB total minus the host reserve; 0 MiB in use\\)\\.\\n$`,
      ),
    ],
    [
      ["create", "big", "--cpus", "3", "--memory", "64M"],
      /^tsvm create: Insufficient host capacity for 'CPUS': VM 'big' requests 3 vCPUs, but only 2 of 2 are free \(\d+ cores × overcommit [\d.]+; 0 in use\)\.\n$/,
    ],
  ];
  for (const [args, message] of refusals) {
    const r = await tsvm(...args);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, message);
  }
  assert.deepEqual(await readdir(join(home, "vms")), [], "nothing is left under vms/");
  assert.deepEqual(JSON.parse((await ok("list", "--format", "json")).stdout), []);

  await ok("create", "a", "--memory", "256M");
  await ok("stop", "a");
  await ok("create", "b", "--memory", "384M");
  const memory = await tsvm("start", "a");
  assert.equal(memory.code, 1);
  assert.match(
    memory.stderr,
    /^tsvm start: Insufficient host capacity for 'MEMORY': VM 'a' requests 256 MiB, but only 128 MiB of 512 MiB are free \(\d+ MiB total minus the host reserve; 384 MiB in use\)\.\n$/,
  );
  await ok("create", "c", "--memory", "32M");
  const cpus = await tsvm("start", "a");
  assert.equal(cpus.code, 1);
  assert.match(
    cpus.stderr,
    /^tsvm start: Insufficient host capacity for 'CPUS': VM 'a' requests 1 vCPU, but only 0 of 2 are free .*; 2 in use\)\.\n$/,
  );
  assert.equal((await describe("a")).status, "TERMINATED", "the refused start changed nothing");

  const bad: Array<[string[], number, RegExp]> = [
    [["create", "x", "--memory", "0"], 1, /^tsvm create: invalid memory size 0 MiB/],
    [["create", "x", "--memory", "1T"], 1, /^tsvm create: invalid memory size 1048576 MiB/],
    [["create", "x", "--cpus", "0"], 1, /^tsvm create: invalid vCPU count 0: a VM has 1 to 8 vCPUs/],
    [["create", "x", "--cpus", "two"], 2, /^tsvm create: --cpus must be a whole number/],
    [["create", "b"], 1, /^tsvm create: the VM 'b' already exists\n$/],
    [["start", "ghost"], 1, /^tsvm start: the VM 'ghost' was not found\n$/],
    [["delete", "ghost"], 1, /^tsvm delete: the VM 'ghost' was not found\n$/],
  ];
  for (const [args, code, message] of bad) {
    const r = await tsvm(...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(" "));
    assert.equal(r.stderr.trim().split("\n").length, 1, `one line: ${r.stderr}`);
  }
  assert.deepEqual((await readdir(join(home, "vms"))).sort(), ["a", "b", "c"]);
  for (const name of ["a", "b", "c"]) await ok("delete", name);
});

test("operations survive kill -9 of the daemon and its stop, each with a truthful final state; a waiting CLI follows", async () => {
  const inserted = (await ok("create", "web", "--memory", "32M", "--async")).stdout.trim();
  await ok("operations", "wait", inserted);
  // A stubborn guest ignores the power-off request, so its stop runs for the whole stop timeout (3 s).
  await ok("create", "stubborn-x", "--memory", "32M");
  const stopping = (await ok("stop", "stubborn-x", "--async")).stdout.trim();
  const queued = (await ok("reset", "stubborn-x", "--async")).stdout.trim();
  assert.equal((await operation(queued)).status, "PENDING");
  const waiter = tsvmInBackground("operations", "wait", stopping, "--format", "json");
  await until(async () => (await describe("stubborn-x")).status === "STOPPING");
  await until(() => connectedToApi(waiter.pid));
  await killDaemon();

  const waited = await waiter.done;
  assert.equal(waited.code, 0, waited.stderr);
  assert.match(waited.stderr, /lost the daemon while waiting/);
  const stop = JSON.parse(waited.stdout) as Operation;
  assert.equal(stop.status, "DONE");
  assert.equal(stop.error, null);
  assert.match(stop.statusMessage, /^completed across a daemon restart: the VM 'stubborn-x' is TERMINATED/);
  assert.equal((await describe("stubborn-x")).status, "TERMINATED");

  const reset = await operation(queued);
  assert.equal(reset.status, "DONE");
  assert.equal(reset.error?.code, "daemon-restarted");
  const failedWait = await tsvm("operations", "wait", queued);
  assert.equal(failedWait.code, 1);
  assert.match(
    failedWait.stderr,
    /^tsvm operations: reset of 'stubborn-x' failed: the tsvm daemon restarted before this reset ran, so it was not carried out; the VM 'stubborn-x' is TERMINATED/,
  );
  const before = await operation(inserted);
  assert.equal(before.status, "DONE");
  assert.equal(before.error, null, "an operation that completed before the kill stays as it was");
  // The same record over the API.
  assert.deepEqual(await ApiClient.forDataDir(home).getOperation(stopping), stop);

  // A daemon asked to stop finishes what runs first, and records it.
  await ok("start", "stubborn-x");
  const second = (await ok("stop", "stubborn-x", "--async")).stdout.trim();
  await ok("daemon", "stop");
  const recorded = await operation(second);
  assert.equal(recorded.status, "DONE");
  assert.equal(recorded.error, null);
  assert.equal((await describe("stubborn-x")).status, "TERMINATED");
  const listed = JSON.parse((await ok("operations", "list", "--format", "json")).stdout) as Operation[];
  for (const id of [inserted, stopping, queued, second])
    assert.ok(
      listed.some((o) => o.id === id),
      id,
    );
  await ok("delete", "stubborn-x");
  await ok("delete", "web");
});

test("a suspend the VMM is still writing when the daemon is killed completes: the operation and the VM end SUSPENDED", async () => {
  // This guest takes 3 s to write its state, so the daemon dies while the VMM writes it.
  await ok("create", "slowsave-y", "--memory", "32M");
  await new Promise((r) => setTimeout(r, 200));
  const id = (await ok("suspend", "slowsave-y", "--async")).stdout.trim();
  await until(async () => (await describe("slowsave-y")).status === "SUSPENDING");
  await killDaemon();
  const waited = await tsvm("operations", "wait", id, "--format", "json");
  assert.equal(waited.code, 0, waited.stderr);
  const op = JSON.parse(waited.stdout) as Operation;
  assert.equal(op.error, null);
  assert.match(op.statusMessage, /^completed across a daemon restart: the VM 'slowsave-y' is SUSPENDED/);
  const vm = JSON.parse((await ok("describe", "slowsave-y", "--format", "json")).stdout) as {
    status: string;
    vmmPid: number | null;
    history: Array<{ reason: string }>;
  };
  assert.equal(vm.status, "SUSPENDED");
  assert.equal(vm.vmmPid, null);
  assert.equal(vm.history.at(-1)!.reason, "suspended (completed after a daemon restart)");
  await ok("resume", "slowsave-y");
  assert.match((await ok("logs", "slowsave-y")).stdout, /\nrestore at count [1-9]\d*\n/);
  await ok("delete", "slowsave-y");
});

test("a crash's leftovers are recovered at daemon start: saved states kept or put back, temp files gone, an interrupted suspend truthful", async () => {
  await ok("create", "sus", "--memory", "32M");
  await ok("create", "swap", "--memory", "32M");
  await new Promise((r) => setTimeout(r, 300)); // let the counters count
  await ok("suspend", "sus");
  await ok("suspend", "swap");
  await ok("create", "mid", "--memory", "32M"); // the host has room for two running VMs
  const vms = join(home, "vms");
  const saved = async (name: string) => readFile(join(vms, name, "state", "counter.json"), "utf8");
  const susState = await saved("sus");
  const swapState = await saved("swap");
  const swapCount = (JSON.parse(swapState) as { count: number }).count;
  assert.ok(swapCount > 0);
  const midVmm = (await describe("mid")).vmmPid!;
  await killDaemon();
  process.kill(midVmm, "SIGKILL");

  // What a crash at each step leaves behind, made by hand:
  await mkdir(join(vms, ".tmp-aaaaaaaaaaaa")); // a VM directory being assembled
  await writeFile(join(vms, ".tmp-aaaaaaaaaaaa", "vm.json"), "{}");
  await mkdir(join(vms, ".tmp-bbbbbbbbbbbb")); // a deleted VM's directory renamed away
  await writeFile(join(vms, ".tmp-bbbbbbbbbbbb", "disk.img"), Buffer.alloc(4096));
  await writeFile(join(home, ".tmp-cccccccccccc"), '{"pid":'); // daemon.json being written
  await writeFile(join(home, "operations", ".tmp-dddddddddddd"), '{"kind":'); // an operation record
  await writeFile(join(vms, "sus", ".tmp-eeeeeeeeeeee"), '{"formatVersion":'); // vm.json being written
  // sus: a suspend's new state half written beside the previous state.
  await mkdir(join(vms, "sus", ".tmp-state-ffffffffffff"));
  await writeFile(join(vms, "sus", ".tmp-state-ffffffffffff", "counter.json"), '{"cou');
  // swap: a suspend interrupted between the two renames of its swap — no state/, the previous one aside.
  await rename(join(vms, "swap", "state"), join(vms, "swap", ".tmp-old-state-111111111111"));
  await mkdir(join(vms, "swap", ".tmp-state-222222222222"));
  await writeFile(join(vms, "swap", ".tmp-state-222222222222", "counter.json"), '{"count":999999999}');
  // mid: daemon and VMM killed while suspending (the record says SUSPENDING), the new state half written.
  const midRecord = JSON.parse(await readFile(join(vms, "mid", "vm.json"), "utf8"));
  midRecord.status = "SUSPENDING";
  midRecord.history.push({
    at: new Date().toISOString(),
    from: "RUNNING",
    to: "SUSPENDING",
    reason: "suspend requested",
  });
  await writeFile(join(vms, "mid", "vm.json"), JSON.stringify(midRecord));
  await mkdir(join(vms, "mid", ".tmp-state-333333333333"));
  await writeFile(join(vms, "mid", ".tmp-state-333333333333", "counter.json"), "{");

  // half: an insert interrupted while copying the disk (PROVISIONING, nothing after), and its operation.
  const halfRecord = JSON.parse(await readFile(join(vms, "sus", "vm.json"), "utf8"));
  halfRecord.name = "half";
  halfRecord.id = "00000000-0000-4000-8000-000000000001";
  halfRecord.status = "PROVISIONING";
  halfRecord.history = halfRecord.history.slice(0, 1);
  await mkdir(join(vms, "half"));
  await writeFile(join(vms, "half", "vm.json"), JSON.stringify(halfRecord));
  await writeFile(join(vms, "half", ".tmp-444444444444"), Buffer.alloc(1000)); // the disk being copied
  // resuming / starting: a resume and a start from TERMINATED interrupted in STAGING, both with a state/
  // (for the start a stale one): only the resume goes back to SUSPENDED.
  for (const [name, action, from, n] of [
    ["resuming", "resume", "SUSPENDED", 2],
    ["starting", "start", "TERMINATED", 3],
  ] as const) {
    const r = JSON.parse(await readFile(join(vms, "sus", "vm.json"), "utf8"));
    const when = new Date().toISOString();
    r.name = name;
    r.id = `00000000-0000-4000-8000-00000000000${n}`;
    r.status = "STAGING";
    r.history.push(
      { at: when, from, to: "PROVISIONING", reason: `${action}: resources reserved` },
      { at: when, from: "PROVISIONING", to: "STAGING", reason: `${action}: starting` },
    );
    await mkdir(join(vms, name, "state"), { recursive: true });
    await writeFile(join(vms, name, "vm.json"), JSON.stringify(r));
    await writeFile(join(vms, name, "state", "counter.json"), '{"count":5}');
  }
  const insertId = `operation-${Date.now()}-abcdef01`;
  const at = new Date().toISOString();
  await writeFile(
    join(home, "operations", `${insertId}.json`),
    JSON.stringify({
      kind: "tsvm#operation",
      id: insertId,
      operationType: "insert",
      targetName: "half",
      status: "RUNNING",
      progress: 0,
      statusMessage: "copying the root disk",
      insertTime: at,
      startTime: at,
      endTime: null,
      error: null,
    }),
  );

  const listed = await ok("list", "--format", "json"); // starts the daemon
  assert.match(listed.stderr, /started the daemon/);
  await until(async () => (await describe("mid")).status === "RUNNING");
  const waitedInsert = await tsvm("operations", "wait", insertId, "--format", "json");
  assert.equal(waitedInsert.code, 1, "a failed operation fails its wait");
  const insert = JSON.parse(waitedInsert.stdout);
  assert.equal(insert.error.code, "daemon-restarted");
  assert.match(
    insert.error.message,
    /^the tsvm daemon restarted while this insert ran; afterwards the VM 'half' does not exist/,
  );
  assert.equal((await tsvm("describe", "half")).code, 1, "a half-created VM is removed, as a failed insert");
  assert.deepEqual(await tempLeftovers(), []);
  assert.deepEqual((await readdir(vms)).sort(), ["mid", "resuming", "starting", "sus", "swap"]);
  await until(async () => (await describe("resuming")).status === "SUSPENDED");
  await until(async () => (await describe("starting")).status === "TERMINATED");
  assert.equal((await describe("sus")).status, "SUSPENDED");
  assert.equal((await describe("swap")).status, "SUSPENDED");
  assert.equal(await saved("sus"), susState, "the previous state is intact");
  assert.equal(await saved("swap"), swapState, "the state before the interrupted swap is back");
  const mid = JSON.parse((await ok("describe", "mid", "--format", "json")).stdout) as {
    history: Array<{ to: string; reason: string }>;
  };
  assert.deepEqual(
    mid.history.slice(-3).map((h) => h.to),
    ["REPAIRING", "STAGING", "RUNNING"],
    "the interrupted suspend is recorded as what it was: the VM crashed and was booted again",
  );
  assert.ok(!existsSync(join(vms, "mid", "state")), "no half-written state was taken for a saved one");
  const events = (await ok("events", "--format", "json")).stdout;
  assert.match(events, /recovered after a crash: removed the unfinished state of an interrupted suspend/);
  assert.match(events, /recovered after a crash: put back the previous saved state/);

  await ok("resume", "swap");
  const stats = await ApiClient.forDataDir(home).getStats("swap");
  assert.ok(stats.stats.count! >= swapCount && stats.stats.count! < 999999999, `count ${stats.stats.count}`);
  assert.match((await ok("logs", "swap")).stdout, new RegExp(`restore at count ${swapCount}\\n`));
  for (const name of ["mid", "resuming", "starting", "sus", "swap"]) await ok("delete", name);
});

test("the console log of a guest printing without end is rotated at 4 MiB; positions stay absolute; logs works", async () => {
  const LIMIT = 4 * 1024 * 1024;
  const client = ApiClient.forDataDir(home);
  await ok("create", "chatty-log", "--memory", "32M");
  const dir = join(home, "vms", "chatty-log");
  const size = (file: string) => stat(join(dir, file)).then((s) => s.size);
  let largest = 0;
  // Polled while the VM prints: a rotation renames console.log before it creates the new one, so the file can
  // be missing for a moment (the daemon's reader treats that as empty, and so does this).
  const sizeNow = (file: string) =>
    size(file).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") return 0;
      throw e;
    });
  await until(async () => {
    largest = Math.max(largest, await sizeNow("console.log"));
    assert.ok(!existsSync(join(dir, "console.log.2")));
    return ((await client.getStats("chatty-log")).stats.printed ?? 0) > 3 * LIMIT;
  });
  await ok("stop", "chatty-log");
  assert.ok(largest <= LIMIT, `console.log reached ${largest} bytes`);
  assert.equal(await size("console.log.1"), LIMIT);
  const current = await size("console.log");
  assert.ok(current <= LIMIT);
  const { start: currentStart } = JSON.parse(await readFile(join(dir, "console.log.start"), "utf8")) as {
    start: number;
  };
  const end = currentStart + current;
  assert.ok(end > 3 * LIMIT, `${end} bytes printed`);

  // What the guest printed at any position: a 16-byte first line, then numbered 20-byte lines.
  const FIRST = "boot at count 0\n";
  const expected = (from: number, length: number): string => {
    let k = Math.floor((from - FIRST.length) / 20);
    let s = "";
    while (s.length < length + 20) s += `${String(k++).padStart(19, "0")}\n`;
    const skip = (from - FIRST.length) % 20;
    return s.slice(skip, skip + length);
  };
  const head = await client.getSerialPortOutput("chatty-log", 0);
  assert.equal(
    head.start,
    end - current - LIMIT,
    "a start before the kept window answers from its first byte",
  );
  assert.equal(head.next, head.start + 1024 * 1024);
  assert.equal(head.contents.slice(0, 4000), expected(head.start, 4000));
  const inCurrent = await client.getSerialPortOutput("chatty-log", currentStart + 12345);
  assert.equal(inCurrent.start, currentStart + 12345);
  assert.equal(inCurrent.contents.slice(0, 4000), expected(inCurrent.start, 4000));
  const across = await client.getSerialPortOutput("chatty-log", currentStart - 30);
  assert.equal(across.contents.slice(0, 100), expected(currentStart - 30, 100), "across the two files");

  const logs = await ok("logs", "chatty-log");
  assert.equal(logs.stdout.length, LIMIT + current, "logs prints the whole kept window, then returns");
  assert.equal(logs.stdout.slice(0, 200), expected(end - current - LIMIT, 200));
  assert.match(
    logs.stderr,
    new RegExp(`^tsvm logs: ${end - current - LIMIT} bytes of older output are no longer kept`),
  );
  await ok("delete", "chatty-log");
});
