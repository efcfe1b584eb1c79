import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { fixtureVmRecord } from "./fixtures/fixture-vm-record.ts";
import { readProcessIdentity } from "./process-identity.ts";
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

async function vmIn(name: string, home?: string): Promise<{ store: VmStore; vm: VmRecord }> {
  const dir = home ?? (await mkdtemp(join(tmpdir(), "tsvm-vmm-")));
  if (!home) roots.push(dir);
  const store = await VmStore.open(dir);
  const vm = fixtureVmRecord(name);
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
  // The guest counts on through the re-attached handle (just launched, it may not have counted yet).
  const until = Date.now() + 10_000;
  let count = await countOf(again);
  while (count === 0 && Date.now() < until) {
    await new Promise((r) => setTimeout(r, 50));
    count = await countOf(again);
  }
  assert.ok(count > 0, "the re-attached VMM answers with its guest's count");
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

/** A live process that is not a VMM (as a reused pid would be): `sleep`, our child. */
function bystander(): ChildProcess {
  const child = spawn("sleep", ["60"], { stdio: "ignore" });
  pids.push(child.pid!);
  return child;
}

test("a run record naming a pid now used by another process never gets that process signalled", async () => {
  const { vm, store } = await vmIn("stale");
  const paths = store.paths(vm.name);
  const other = bystander();
  const pid = other.pid!;
  // As after a reboot: vmm.json names a pid that now belongs to an unrelated, live process; its socket is gone.
  const record = { protocol: 1, vmId: vm.id, pid, socketPath: join(paths.dir, "vmm.sock"), startedAt: "x" };
  await writeFile(paths.vmm, JSON.stringify(record));
  const found = await launcher.reattach(vm, paths);
  assert.ok("exit" in found, "no VMM is found");
  assert.match(found.exit.detail, new RegExp(`pid ${pid}\\) is gone`));
  // Same pid and even the same start time, but not this VM's VMM (its command line names no spec of it).
  const id = readProcessIdentity(pid)!;
  await writeFile(paths.vmm, JSON.stringify({ ...record, bootId: id.bootId, startTime: id.startTime }));
  assert.ok("exit" in (await launcher.reattach(vm, paths)));
  // A recorded start time that differs: a different process, whatever its command line.
  await writeFile(paths.vmm, JSON.stringify({ ...record, bootId: id.bootId, startTime: "1" }));
  assert.ok("exit" in (await launcher.reattach(vm, paths)));
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(
    alive(pid) && other.exitCode === null && other.signalCode === null,
    "the bystander was not killed",
  );
  other.kill("SIGKILL");
});

test("a second VMM refuses a disk another VMM holds, naming the holder, and disturbs nothing", async () => {
  const { store, vm } = await vmIn("twice");
  const paths = store.paths(vm.name);
  await writeFile(paths.disk, Buffer.alloc(4096));
  const first = await launcher.launch(vm, paths, "boot");
  pids.push(first.pid);
  const run = await readFile(paths.vmm, "utf8");
  // Through the launcher: refused before it touches the VM's files.
  await assert.rejects(
    launcher.launch(vm, paths, "boot"),
    (e: unknown) => e instanceof VmmStartError && e.message.includes(`held by pid ${first.pid}`),
  );
  // The VMM itself, started by hand on the same spec (as a launcher that did not look would): it refuses.
  const second = spawn(
    process.execPath,
    [...fixtureLauncherConfig.nodeArgs, fixtureLauncherConfig.vmmEntry, join(paths.dir, "vmm-spec.json")],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  pids.push(second.pid!);
  let stderr = "";
  second.stderr!.on("data", (c) => (stderr += c));
  const code = await new Promise((r) => second.on("exit", r));
  assert.equal(code, 1);
  assert.match(
    stderr,
    new RegExp(`disk .*disk.qcow2 is in use by another VMM \\(held by pid ${first.pid}\\)`),
  );
  assert.equal(await readFile(paths.vmm, "utf8"), run, "the first VMM's run record is untouched");
  assert.ok((await countOf(first)) >= 0, "the first VMM still answers on its socket");
  await first.stop(5000);
  // Once the first is gone the disk is free again.
  const again = await launcher.launch(vm, paths, "boot");
  pids.push(again.pid);
  await again.stop(5000);
});

test("suspend flushes the disks before the state is committed, and the VMM flushes them as it exits", async () => {
  const { handle, paths } = await launched("flushy");
  await handle.suspend();
  const lines = (await readFile(join(paths.dir, "flush.log"), "utf8"))
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  // The counting guest notes at each flush what the directory held: the new state written, not yet renamed.
  assert.deepEqual(lines[0], { stateCommitted: false, pendingStates: 1 });
  assert.deepEqual(lines.at(-1), { stateCommitted: true, pendingStates: 0 }, "a flush on exit");
  const off = await launched("flushy-off");
  await off.handle.stop(5000);
  assert.equal((await readFile(join(off.paths.dir, "flush.log"), "utf8")).trim().split("\n").length, 1);
});

test("the control socket stays in the VM's directory, mode 0600, even under a very long data directory", async () => {
  const base = await mkdtemp(join(tmpdir(), "tsvm-long-"));
  roots.push(base);
  const home = join(base, "a".repeat(60), "b".repeat(60));
  await mkdir(home, { recursive: true });
  const tmpBefore = (await readdir(tmpdir())).filter((n) => n.startsWith("tsvm-vmm-") && n.endsWith(".sock"));
  const { store, vm } = await vmIn("long-home-vm", home);
  const paths = store.paths(vm.name);
  assert.ok(Buffer.byteLength(join(paths.dir, "vmm.sock")) > 108, "the path is longer than sun_path");
  const handle = await launcher.launch(vm, paths, "boot");
  pids.push(handle.pid);
  const sock = await stat(join(paths.dir, "vmm.sock"));
  assert.ok(sock.isSocket());
  assert.equal(sock.mode & 0o777, 0o600);
  assert.equal(JSON.parse(await readFile(paths.vmm, "utf8")).socketPath, join(paths.dir, "vmm.sock"));
  const tmpAfter = (await readdir(tmpdir())).filter((n) => n.startsWith("tsvm-vmm-") && n.endsWith(".sock"));
  assert.deepEqual(tmpAfter, tmpBefore, "nothing is created in /tmp");
  assert.ok((await countOf(handle)) >= 0, "the daemon side reaches it");
  const other = new ProcessVmmLauncher(fixtureLauncherConfig);
  const again = await other.reattach(vm, paths);
  assert.ok("pid" in again, "a restarted daemon re-attaches through the long path");
  again.detach();
  await handle.stop(5000);
});
