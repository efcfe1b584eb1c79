// A VMM that dies while operations are using it or queued on its VM is handled once: one repair, one VMM,
// none leaked, and no operation reports what did not happen (found by the API storm,
// tests/integration/api-storm.test.ts). Real VMM processes hosting the counting guest; a VMM frozen with
// SIGSTOP holds a reset, so that later operations queue before its death is noticed.
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { FileImageCatalog, Hypervisor } from "./hypervisor.ts";
import { hostCapacity } from "./resources.ts";
import { VmStore } from "./store.ts";
import { ProcessVmmLauncher, type VmmRequestDeadlines } from "./vmm-process.ts";

let home: string | undefined;
let hv: Hypervisor | undefined;
after(async () => {
  if (hv) await closeAndKill(hv);
  for (const pid of vmmProcesses()) process.kill(pid, "SIGKILL");
  if (home) await rm(home, { recursive: true, force: true });
});

/** Processes whose command line names our temp home: the VMMs started for it. */
function vmmProcesses(): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return home !== undefined && readFileSync(`/proc/${e}/cmdline`, "utf8").includes(home);
      } catch {
        return false;
      }
    })
    .map(Number);
}

async function until(cond: () => boolean, ms = 60_000): Promise<void> {
  for (const t0 = Date.now(); !cond(); await new Promise((r) => setTimeout(r, 20)))
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
}

async function openHypervisor(deadlines?: VmmRequestDeadlines): Promise<Hypervisor> {
  if (hv) await closeAndKill(hv);
  if (home) await rm(home, { recursive: true, force: true });
  // A home of its own per test: its VMMs are the processes that name it.
  home = await mkdtemp(join(tmpdir(), "tsvm-race-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096));
  hv = await Hypervisor.open({
    store: await VmStore.open(home),
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 1024, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 2048, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher({ ...fixtureLauncherConfig, requestDeadlines: deadlines }),
    images: new FileImageCatalog({ default: join(home, "template.img") }),
    defaultEngine: "fixture",
    defaultImage: "default",
    stopTimeoutMs: 1000,
  });
  return hv;
}

/** Waits until every operation, the hypervisor's own repairs included, has settled. */
async function settled(vm: Hypervisor): Promise<void> {
  await until(() => vm.listOperations().every((op) => op.status === "DONE"));
  await new Promise((r) => setTimeout(r, 500));
  await until(() => vm.listOperations().every((op) => op.status === "DONE"));
}

test("a VMM killed while it writes a suspend's state: one repair, one VMM left running, none leaked", async () => {
  const vm = await openHypervisor();
  // "slowsave-": the counting guest takes 3 s to write its state, time enough to kill its VMM meanwhile.
  const insert = vm.insert({ name: "slowsave-a", machineType: "custom-1-32" });
  assert.equal((await vm.waitOperation(insert.id, 60_000)).error, null);
  const first = vm.get("slowsave-a").vmmPid!;
  const suspend = vm.suspend("slowsave-a");
  await until(() => vm.get("slowsave-a").status === "SUSPENDING");
  await new Promise((r) => setTimeout(r, 300));
  process.kill(first, "SIGKILL");
  const failed = await vm.waitOperation(suspend.id, 60_000);
  assert.equal(failed.error?.code, "suspend-failed");
  await settled(vm);

  const now = vm.get("slowsave-a");
  assert.equal(now.status, "RUNNING");
  assert.deepEqual(
    now.history.slice(3).map((h) => h.to),
    ["SUSPENDING", "REPAIRING", "STAGING", "RUNNING"],
    "repaired once",
  );
  assert.deepEqual(vmmProcesses(), [now.vmmPid], "exactly the VM's own VMM runs");
});

test("a suspend queued while the VMM dies fails and changes nothing; the crash is repaired once", async () => {
  const vm = await openHypervisor();
  const insert = vm.insert({ name: "b", machineType: "custom-1-32" });
  assert.equal((await vm.waitOperation(insert.id, 60_000)).error, null);
  const pid = vm.get("b").vmmPid!;
  // A frozen VMM holds a reset (no answer), so the suspend waits behind it; then the VMM dies.
  process.kill(pid, "SIGSTOP");
  const reset = vm.reset("b");
  const suspend = vm.suspend("b");
  await new Promise((r) => setTimeout(r, 200));
  process.kill(pid, "SIGKILL");
  assert.equal((await vm.waitOperation(reset.id, 60_000)).error?.code, "vmm-gone");
  const suspended = await vm.waitOperation(suspend.id, 60_000);
  assert.ok(suspended.error, "a suspend that suspended nothing did not succeed");
  await settled(vm);

  const now = vm.get("b");
  assert.equal(now.status, "RUNNING");
  assert.deepEqual(
    now.history.slice(3).map((h) => h.to),
    now.history.some((h) => h.to === "SUSPENDING")
      ? ["SUSPENDING", "REPAIRING", "STAGING", "RUNNING"] // the suspend met the dying VMM itself
      : ["REPAIRING", "STAGING", "RUNNING"],
    "repaired once",
  );
  assert.deepEqual(vmmProcesses(), [now.vmmPid], "exactly the VM's own VMM runs");
});

test("a crash repair queued behind a stop and a start that already gave the VM a new VMM does nothing", async () => {
  const vm = await openHypervisor();
  const insert = vm.insert({ name: "c", machineType: "custom-1-32" });
  assert.equal((await vm.waitOperation(insert.id, 60_000)).error, null);
  const pid = vm.get("c").vmmPid!;
  process.kill(pid, "SIGSTOP");
  const reset = vm.reset("c");
  const stop = vm.stop("c");
  const start = vm.start("c");
  await new Promise((r) => setTimeout(r, 200));
  process.kill(pid, "SIGKILL");
  await vm.waitOperation(reset.id, 60_000);
  assert.equal((await vm.waitOperation(stop.id, 60_000)).error, null);
  assert.equal((await vm.waitOperation(start.id, 60_000)).error, null);
  await settled(vm);

  const now = vm.get("c");
  assert.equal(now.status, "RUNNING");
  assert.deepEqual(
    now.history.slice(3).map((h) => h.to),
    ["STOPPING", "TERMINATED", "PROVISIONING", "STAGING", "RUNNING"],
    "the start's VMM is the VM's; the stale crash was not repaired over it",
  );
  assert.deepEqual(vmmProcesses(), [now.vmmPid], "exactly the VM's own VMM runs");
});

test("a VMM frozen with SIGSTOP: a reset fails (vmm-unresponsive) at its deadline instead of blocking the VM for ever; the VMM is ended and the VM repaired", async () => {
  const vm = await openHypervisor({ controlMs: 1500, suspendMs: 1500 });
  const insert = vm.insert({ name: "frozen", machineType: "custom-1-32" });
  assert.equal((await vm.waitOperation(insert.id, 60_000)).error, null);
  const frozen = vm.get("frozen").vmmPid!;
  process.kill(frozen, "SIGSTOP");
  const reset = await vm.waitOperation(vm.reset("frozen").id, 20_000);
  assert.equal(reset.status, "DONE", "the reset did not end: a deaf VMM blocks its VM's queue");
  assert.equal(reset.error?.code, "vmm-unresponsive");
  assert.match(reset.error?.message ?? "", /did not answer 'reset' within 1\.5 s/);
  await until(() => !vmmProcesses().includes(frozen), 20_000);
  await until(() => {
    const now = vm.get("frozen");
    return now.status === "RUNNING" && now.vmmPid !== null && now.vmmPid !== frozen;
  });
  await settled(vm);
  const stop = await vm.waitOperation(vm.stop("frozen").id, 30_000);
  assert.equal(stop.error, null);
  assert.equal(vm.get("frozen").status, "TERMINATED");
  assert.deepEqual(vmmProcesses(), []);
});
