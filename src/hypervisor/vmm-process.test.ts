import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { VmStore } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";
import type { VmmHandle } from "./vmm.ts";
import { ProcessVmmLauncher, VmmStartError } from "./vmm-process.ts";

const roots: string[] = [];
const pids: number[] = [];
after(async () => {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function vmIn(name: string): Promise<{ store: VmStore; vm: VmRecord }> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-vmm-"));
  roots.push(dir);
  const store = await VmStore.open(dir);
  const vm: VmRecord = {
    formatVersion: 1,
    id: `id-${name}-${Date.now()}`,
    name,
    machineType: "t1-micro",
    cpus: 1,
    memoryMiB: 128,
    diskMiB: 0,
    image: "none",
    engine: "fixture",
    automaticRestart: true,
    cpuCapPercent: null,
    cpuWeight: 100,
    status: "STAGING",
    statusMessage: "",
    creationTimestamp: new Date().toISOString(),
    lastStartTimestamp: null,
    lastStopTimestamp: null,
    lastSuspendedTimestamp: null,
    history: [],
  };
  await store.create(vm);
  return { store, vm };
}

const launcher = new ProcessVmmLauncher(fixtureLauncherConfig);

async function launched(name: string, mode: "boot" | "restore" = "boot") {
  const { store, vm } = await vmIn(name);
  const handle = await launcher.launch(vm, store.paths(name), mode);
  pids.push(handle.pid);
  return { store, vm, handle, paths: store.paths(name) };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

async function countOf(h: VmmHandle): Promise<number> {
  return (await h.stats()).count!;
}

test("a VMM runs its guest in its own process, records pid and socket, and powers off on stop", async () => {
  const { handle, paths } = await launched("web");
  assert.notEqual(handle.pid, process.pid);
  assert.ok(alive(handle.pid));
  const run = JSON.parse(await readFile(paths.vmm, "utf8"));
  assert.equal(run.pid, handle.pid);
  const c1 = await countOf(handle);
  await new Promise((r) => setTimeout(r, 100));
  assert.ok((await countOf(handle)) > c1, "the guest advances while running");
  await handle.reset();
  assert.equal((await handle.stats()).resets, 1);
  const exit = await handle.stop(5000);
  assert.equal(exit.reason, "poweroff");
  assert.ok(!alive(handle.pid));
  assert.ok(!(await readdir(paths.dir)).includes("vmm.json"), "the run record is removed on exit");
});

test("a guest that ignores the power-off request is forced off after the timeout", async () => {
  const { handle } = await launched("stubborn-db");
  const t0 = Date.now();
  const exit = await handle.stop(300);
  assert.equal(exit.reason, "forced");
  assert.ok(Date.now() - t0 >= 300);
  assert.ok(!alive(handle.pid));
});

test("a guest powering itself off is reported as poweroff", async () => {
  const { handle } = await launched("selfoff-a");
  const exit = await handle.exited;
  assert.deepEqual(exit, { reason: "poweroff", detail: "the guest powered itself off" });
});

test("suspend writes the state and exits; restore continues from the saved count", async () => {
  const { store, vm, handle, paths } = await launched("sus");
  await new Promise((r) => setTimeout(r, 100));
  await handle.suspend();
  assert.equal((await handle.exited).reason, "suspended");
  const saved = JSON.parse(await readFile(join(paths.stateDir, "counter.json"), "utf8")).count as number;
  assert.ok(saved > 0);
  const again = await launcher.launch(vm, store.paths(vm.name), "restore");
  pids.push(again.pid);
  assert.ok((await countOf(again)) >= saved, "the count continues, it does not restart from 0");
  await again.stop(5000);
});

test("a corrupt state file makes restore fail with the reason, and leaves the file as it was", async () => {
  const { store, vm, handle, paths } = await launched("corrupt");
  await handle.suspend();
  await handle.exited;
  const file = join(paths.stateDir, "counter.json");
  await writeFile(file, '{"cou');
  await assert.rejects(
    launcher.launch(vm, store.paths(vm.name), "restore"),
    (e: unknown) => e instanceof VmmStartError && /could not be started: .*JSON/.test(e.message),
  );
  assert.equal(await readFile(file, "utf8"), '{"cou');
});

test("kill -9 of a VMM is detected as a crash naming the signal", async () => {
  const { handle } = await launched("victim");
  process.kill(handle.pid, "SIGKILL");
  const exit = await handle.exited;
  assert.equal(exit.reason, "crashed");
  assert.match(exit.detail, /SIGKILL/);
});

test("after the daemon lets go, a new launcher re-attaches by the recorded pid and socket", async () => {
  const { vm, handle, paths } = await launched("keep");
  handle.detach();
  assert.ok(alive(handle.pid), "detaching leaves the VM running");
  const other = new ProcessVmmLauncher(fixtureLauncherConfig);
  const again = await other.reattach(vm, paths);
  assert.ok("pid" in again);
  assert.equal(again.pid, handle.pid);
  assert.ok((await countOf(again)) > 0);
  process.kill(again.pid, "SIGKILL");
  const exit = await again.exited;
  assert.equal(exit.reason, "crashed");
  const gone = await other.reattach(vm, paths);
  assert.ok("exit" in gone && gone.exit.reason === "crashed");
});

test("a VMM that cannot boot, or an engine that does not exist, gives a start error", async () => {
  const { store, vm } = await vmIn("fail-boot");
  await assert.rejects(launcher.launch(vm, store.paths(vm.name), "boot"), /the kernel image is missing/);
  await assert.rejects(
    launcher.launch({ ...vm, engine: "kvm" }, store.paths(vm.name), "boot"),
    /the engine 'kvm' is not available/,
  );
});
