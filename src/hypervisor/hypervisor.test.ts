// The hypervisor with real VMM processes (hosting the counting stand-in guest) in a temp data directory.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readdir, readFile, stat, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { readDiskInfo } from "../engines/backends/qcow2/index.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { done, ok, type TestHypervisor, TestHypervisors } from "./fixtures/test-hypervisors.ts";
import { IllegalActionError } from "./lifecycle.ts";
import { InvalidMachineTypeError } from "./machine-types.ts";
import { CapacityExceededError, hostCapacity } from "./resources.ts";
import { VmExistsError, VmNotFoundError } from "./store.ts";
import { ProcessVmmLauncher } from "./vmm-process.ts";

const hypervisors = new TestHypervisors("tsvm-hv-");

/** 4 vCPUs and 1 GiB for guests: small enough that admission is easy to exercise. */
function openHypervisor(home?: string): Promise<TestHypervisor> {
  return hypervisors.open({
    home,
    config: {
      capacity: hostCapacity(
        { cpuOvercommit: 2, memoryReserveMiB: 1024, diskReserveMiB: 0 },
        { cores: 2, totalMemoryMiB: 2048, diskAvailableMiB: 100 },
      ),
    },
  });
}

async function until(cond: () => boolean, ms = 90_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("insert provisions, makes the disk a qcow2 overlay of the image's base, starts a VMM and records PROVISIONING → STAGING → RUNNING", async () => {
  const { hv, store, home } = await openHypervisor();
  const template = join(home, "template.img");
  await ok(hv, hv.insert({ name: "web", cpus: 1, memoryMiB: 128 }));
  const vm = hv.get("web");
  assert.equal(vm.status, "RUNNING");
  assert.equal(vm.machineType, "t1-micro");
  assert.ok(vm.vmmPid && vm.vmmPid !== process.pid);
  assert.deepEqual(
    vm.history.map((h) => h.to),
    ["PROVISIONING", "STAGING", "RUNNING"],
  );
  // Its disk is a qcow2 overlay of the image's base node, which reads as the image does.
  const disk = store.paths("web").disk;
  const info = await readDiskInfo(disk);
  assert.equal(info.format, "qcow2");
  assert.match(info.backing?.name ?? "", /^\.\.\/\.\.\/disks\/base-[0-9a-f]{16}\.qcow2$/);
  execFileSync("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "raw", disk, template]);
  assert.deepEqual((await store.read("web")).status, "RUNNING");
  assert.deepEqual(
    hv.events.since(0).map((e) => `${e.vmName}:${e.to}`),
    ["web:PROVISIONING", "web:STAGING", "web:RUNNING"],
  );
  assert.deepEqual(hv.capacity().usage, { vcpus: 1, memoryMiB: 128 });
});

test("bad inserts are refused at once and leave nothing behind", async () => {
  const { hv, store } = await openHypervisor();
  assert.throws(() => hv.insert({ name: "a", memoryMiB: 0 }), InvalidMachineTypeError);
  assert.throws(() => hv.insert({ name: "a", memoryMiB: 1024 * 1024 }), /invalid memory size 1048576 MiB/);
  assert.throws(() => hv.insert({ name: "Bad_Name" }), /not a valid VM name/);
  assert.throws(() => hv.insert({ name: "a", machineType: "t1-micro", cpus: 2 }), /not both/);
  assert.throws(
    () => hv.insert({ name: "big", cpus: 8, memoryMiB: 512 }),
    (e: unknown) =>
      e instanceof CapacityExceededError && e.resource === "CPUS" && /only 4 of 4 are free/.test(e.message),
  );
  assert.throws(() => hv.insert({ name: "noimg", image: "nope" }), /unknown image 'nope'/);
  assert.throws(
    () => hv.insert({ name: "noeng", engine: "nope" }),
    /unknown engine 'nope'; available: fixture/,
  );
  for (const name of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
    assert.throws(() => hv.insert({ name: "a", image: name }), { code: "invalid-image" });
    assert.throws(() => hv.insert({ name: "a", engine: name }), { code: "invalid-engine" });
    assert.throws(() => hv.insert({ name: "a", machineType: name }), { code: "invalid-machine-type" });
  }
  assert.deepEqual(hv.list().vms, []);
  assert.deepEqual(await readdir(store.vmsDir), []);
  assert.deepEqual(hv.capacity().usage, { vcpus: 0, memoryMiB: 0 });
});

test("stop, illegal actions, start, duplicate names, reset, delete", async () => {
  const { hv, store } = await openHypervisor();
  await ok(hv, hv.insert({ name: "db", machineType: "t1-micro" }));
  assert.throws(() => hv.insert({ name: "db" }), VmExistsError);
  await ok(hv, hv.reset("db"));
  assert.ok(hv.events.since(0).some((e) => e.type === "reset" && e.vmName === "db"));
  const pid = hv.get("db").vmmPid!;
  await ok(hv, hv.stop("db"));
  const stopped = hv.get("db");
  assert.equal(stopped.status, "TERMINATED");
  assert.equal(stopped.vmmPid, null);
  assert.ok(stopped.lastStopTimestamp);
  assert.throws(() => process.kill(pid, 0), "the VMM process is gone");
  assert.deepEqual(hv.capacity().usage, { vcpus: 0, memoryMiB: 0 });
  for (const action of ["stop", "suspend", "resume", "reset"] as const)
    assert.throws(
      () => hv[action]("db"),
      (e: unknown) => e instanceof IllegalActionError && e.message.includes("TERMINATED"),
    );
  assert.equal(hv.get("db").history.length, 5, "the refused requests changed nothing");
  await ok(hv, hv.setMachineType("db", "t1-small"));
  assert.equal(hv.get("db").memoryMiB, 256);
  await ok(hv, hv.start("db"));
  assert.equal(hv.get("db").status, "RUNNING");
  assert.throws(() => hv.setMachineType("db", "t1-micro"), IllegalActionError);
  await ok(hv, hv.delete("db"));
  assert.throws(() => hv.get("db"), VmNotFoundError);
  assert.deepEqual(await readdir(store.vmsDir), []);
  assert.throws(() => hv.stop("ghost"), VmNotFoundError);
});

test("suspend writes the state and releases CPU and memory; resume continues; a corrupt state keeps it SUSPENDED", async () => {
  const { hv, store } = await openHypervisor();
  await ok(hv, hv.insert({ name: "s1", machineType: "t1-micro" }));
  await new Promise((r) => setTimeout(r, 200));
  await ok(hv, hv.suspend("s1"));
  assert.equal(hv.get("s1").status, "SUSPENDED");
  assert.equal(hv.get("s1").vmmPid, null);
  assert.deepEqual(hv.capacity().usage, { vcpus: 0, memoryMiB: 0 });
  const stateFile = join(store.paths("s1").stateDir, "counter.json");
  const saved = JSON.parse(await readFile(stateFile, "utf8")).count as number;
  assert.ok(saved > 0);

  await writeFile(stateFile, "{trunc");
  const failed = await done(hv, hv.resume("s1"));
  assert.equal(failed.error?.code, "vmm-start-failed");
  assert.equal(hv.get("s1").status, "SUSPENDED");
  assert.match(hv.get("s1").statusMessage, /resume failed/);
  assert.equal(await readFile(stateFile, "utf8"), "{trunc", "the state file is not overwritten");

  await writeFile(stateFile, JSON.stringify({ count: saved }));
  await ok(hv, hv.resume("s1"));
  assert.equal(hv.get("s1").status, "RUNNING");
  assert.ok(((await hv.stats("s1")).count ?? 0) >= saved, "the guest continues from the saved count");
  await assert.rejects(stat(store.paths("s1").stateDir), "the consumed state is removed");
  assert.deepEqual(
    hv.get("s1").history.map((h) => h.to),
    [
      "PROVISIONING",
      "STAGING",
      "RUNNING",
      "SUSPENDING",
      "SUSPENDED",
      "PROVISIONING",
      "STAGING",
      "SUSPENDED",
      "PROVISIONING",
      "STAGING",
      "RUNNING",
    ],
  );
});

test("a killed VMM: REPAIRING then a fresh boot (automaticRestart) or TERMINATED; the other VM is untouched", async () => {
  const { hv } = await openHypervisor();
  await ok(hv, hv.insert({ name: "r1", machineType: "t1-micro" }));
  await ok(hv, hv.insert({ name: "r2", machineType: "t1-micro", automaticRestart: false }));
  await ok(hv, hv.insert({ name: "bystander", machineType: "t1-micro" }));
  const bystanderPid = hv.get("bystander").vmmPid!;
  const pid1 = hv.get("r1").vmmPid!;
  process.kill(pid1, "SIGKILL");
  process.kill(hv.get("r2").vmmPid!, "SIGKILL");
  await until(
    () => hv.get("r1").status === "RUNNING" && hv.get("r1").vmmPid !== pid1 && hv.get("r1").vmmPid !== null,
  );
  await until(() => hv.get("r2").status === "TERMINATED");
  const h1 = hv
    .get("r1")
    .history.map((h) => h.to)
    .slice(3);
  assert.deepEqual(h1, ["REPAIRING", "STAGING", "RUNNING"]);
  assert.match(hv.get("r1").history[3]!.reason, /SIGKILL/);
  assert.match(hv.get("r2").statusMessage, /automaticRestart is off/);
  assert.equal(hv.get("bystander").vmmPid, bystanderPid);
  assert.equal(hv.get("bystander").status, "RUNNING");
});

test("a VMM that exited 'migrated' (its guest handed to another VMM) is never repaired here: the VM ends TERMINATED", async () => {
  const { hv, store } = await openHypervisor();
  await ok(hv, hv.insert({ name: "handed-over", machineType: "t1-micro" }));
  const vm = hv.get("handed-over");
  const pid = vm.vmmPid!;
  // What a VMM leaves when its migrateOut succeeded, seen by a daemon that did not ask for it.
  const exit = { reason: "migrated", detail: "the guest runs on at 127.0.0.1:9 now", vmId: vm.id };
  await writeFile(
    join(store.paths("handed-over").dir, "exit.json"),
    JSON.stringify({ ...exit, at: new Date().toISOString() }),
  );
  process.kill(pid, "SIGKILL");
  await until(() => hv.get("handed-over").status === "TERMINATED");
  const after = hv.get("handed-over");
  assert.deepEqual(
    after.history.slice(vm.history.length).map((h) => h.to),
    ["STOPPING", "TERMINATED"],
    "no REPAIRING, no fresh boot",
  );
  assert.match(after.statusMessage, /handed the guest over .* not restarted here/);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(hv.get("handed-over").status, "TERMINATED", "and stays so");
  assert.equal(hv.get("handed-over").vmmPid, null);
});

test("a guest that powers itself off goes STOPPING → TERMINATED; one that cannot boot ends TERMINATED with the reason", async () => {
  const { hv } = await openHypervisor();
  await ok(hv, hv.insert({ name: "selfoff-x", machineType: "t1-micro" }));
  await until(() => hv.get("selfoff-x").status === "TERMINATED");
  assert.deepEqual(
    hv
      .get("selfoff-x")
      .history.map((h) => h.to)
      .slice(3),
    ["STOPPING", "TERMINATED"],
  );
  const failed = await done(hv, hv.insert({ name: "fail-boot", machineType: "t1-micro" }));
  assert.match(failed.error?.message ?? "", /the kernel image is missing/);
  assert.equal(hv.get("fail-boot").status, "TERMINATED");
  assert.match(hv.get("fail-boot").statusMessage, /kernel image is missing/);
});

test("concurrent requests on one VM are serialized and none is lost", async () => {
  const { hv } = await openHypervisor();
  await ok(hv, hv.insert({ name: "c", machineType: "t1-micro" }));
  const ops = [hv.stop("c"), hv.start("c"), hv.stop("c"), hv.start("c")];
  const results = await Promise.all(ops.map((op) => done(hv, op)));
  assert.deepEqual(
    results.map((r) => r.error),
    [null, null, null, null],
  );
  assert.equal(hv.get("c").status, "RUNNING");
  // A queued request that turns out illegal when its turn comes fails as an operation, changing nothing.
  const [stop, suspend] = [hv.stop("c"), hv.suspend("c")];
  await ok(hv, stop);
  assert.equal((await done(hv, suspend)).error?.code, "illegal-action");
  assert.equal(hv.get("c").status, "TERMINATED");
});

test("the daemon can go away and come back: running VMs are re-attached, dead ones repaired, nothing lost", async () => {
  const { hv, home } = await openHypervisor();
  await ok(hv, hv.insert({ name: "keep", machineType: "t1-micro" }));
  await ok(hv, hv.insert({ name: "dies", machineType: "t1-micro" }));
  await ok(hv, hv.insert({ name: "off", machineType: "t1-micro" }));
  await ok(hv, hv.stop("off"));
  const keepPid = hv.get("keep").vmmPid!;
  const diesPid = hv.get("dies").vmmPid!;
  await hv.close();
  process.kill(diesPid, "SIGKILL");

  // A re-attach that takes its time (as one behind a busy network switch does): a request made meanwhile
  // waits for it rather than finding no VMM.
  const inner = new ProcessVmmLauncher(fixtureLauncherConfig);
  const slowLauncher: typeof inner = Object.assign(Object.create(inner), {
    reattach: async (...args: Parameters<typeof inner.reattach>) => {
      if (args[0].name === "keep") await new Promise((r) => setTimeout(r, 1000));
      return inner.reattach(...args);
    },
  });
  const again = (await hypervisors.open({ home, config: { launcher: slowLauncher } })).hv;
  assert.ok(((await again.stats("keep")).count ?? 0) > 0, "the re-attached VMM answers");
  await until(() => again.get("dies").status === "RUNNING" && again.get("dies").vmmPid !== null);
  assert.equal(again.get("keep").status, "RUNNING");
  assert.equal(again.get("keep").vmmPid, keepPid);
  assert.notEqual(again.get("dies").vmmPid, diesPid);
  assert.equal(again.get("off").status, "TERMINATED");
  assert.ok(again.events.since(0).length >= 12, "the histories are replayed as events");
});

test("start and resume are admitted against what is free: a stopped VM cannot take back room another took", async () => {
  const { hv } = await openHypervisor();
  await ok(hv, hv.insert({ name: "a", machineType: "t1-standard-2" })); // all 1024 MiB of guest memory
  await ok(hv, hv.stop("a"));
  await ok(hv, hv.insert({ name: "b", machineType: "t1-standard-2" }));
  assert.throws(
    () => hv.start("a"),
    (e: unknown) =>
      e instanceof CapacityExceededError &&
      e.resource === "MEMORY" &&
      /VM 'a' requests 1024 MiB, but only 0 MiB/.test(e.message),
  );
  assert.equal(hv.get("a").status, "TERMINATED", "the refused start changed nothing");
  await ok(hv, hv.suspend("b"));
  await ok(hv, hv.start("a"));
  assert.throws(() => hv.resume("b"), CapacityExceededError);
  assert.equal(hv.get("b").status, "SUSPENDED");
});

test("a VMM left running unrecorded for a TERMINATED or SUSPENDED VM is ended at recovery; the VM then starts", async () => {
  const { hv, home, store } = await openHypervisor();
  await ok(hv, hv.insert({ name: "orphan-off", machineType: "t1-micro" }));
  await ok(hv, hv.stop("orphan-off"));
  await ok(hv, hv.insert({ name: "orphan-sus", machineType: "t1-micro" }));
  await new Promise((r) => setTimeout(r, 200));
  await ok(hv, hv.suspend("orphan-sus"));
  await hv.close();
  // As when a daemon dies while it starts VMMs: they run, and the records still say TERMINATED / SUSPENDED.
  const launcher = new ProcessVmmLauncher(fixtureLauncherConfig);
  const off = await launcher.launch(await store.read("orphan-off"), store.paths("orphan-off"), "boot");
  const sus = await launcher.launch(await store.read("orphan-sus"), store.paths("orphan-sus"), "restore");
  await new Promise((r) => setTimeout(r, 300));
  const ran = (await sus.stats()).count!;
  off.detach();
  sus.detach();
  const alive = (pid: number) => {
    try {
      process.kill(pid, 0);
      return true;
    } catch {
      return false;
    }
  };

  const again = (await openHypervisor(home)).hv;
  await until(() => !alive(off.pid) && !alive(sus.pid), 30_000);
  assert.equal(again.get("orphan-off").status, "TERMINATED");
  assert.equal(again.get("orphan-sus").status, "SUSPENDED");
  const notes = again.events
    .since(0)
    .filter((e) => e.type === "notice" && /running unrecorded/.test(e.message))
    .map((e) => e.vmName)
    .sort();
  assert.deepEqual(notes, ["orphan-off", "orphan-sus"]);
  const saved = JSON.parse(await readFile(join(store.paths("orphan-sus").stateDir, "counter.json"), "utf8"));
  assert.ok(saved.count >= ran, "the orphan's guest was saved again: the state matches what ran on the disk");
  // One writer per disk from here on: both can be started again normally.
  await ok(again, again.start("orphan-off"));
  await ok(again, again.resume("orphan-sus"));
  assert.ok(((await again.stats("orphan-sus")).count ?? 0) >= saved.count);
});
