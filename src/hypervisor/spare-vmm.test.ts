// The spare VMM with real processes (vmm-main.ts under tsx hosting the counting stand-in guest): adopted by
// a start and by a resume, used once, replaced after each launch, never adopted when it is gone or was
// started from other code, and ended with its launcher or when its daemon goes away.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { fixtureVmRecord } from "./fixtures/fixture-vm-record.ts";
import { FileImageCatalog, Hypervisor } from "./hypervisor.ts";
import { processAlive } from "./process-alive.ts";
import { processArguments, readProcessIdentity } from "./process-identity.ts";
import { hostCapacity } from "./resources.ts";
import { VmStore } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";
import { ProcessVmmLauncher } from "./vmm-process.ts";

const here = dirname(fileURLToPath(import.meta.url));
const roots: string[] = [];
const pids: number[] = [];
const launchers: ProcessVmmLauncher[] = [];
const hypervisors: Hypervisor[] = [];
after(async () => {
  for (const hv of hypervisors) await closeAndKill(hv);
  for (const l of launchers) await l.close();
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {}
  }
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function home(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-spare-"));
  roots.push(dir);
  return dir;
}

/** A launcher keeping a spare of the counting guest; `stamp` is the code a VMM started now would run. */
function spareLauncher(dir: string, stamp: { value: string } = { value: "code-1" }) {
  const lines: string[] = [];
  const launcher = new ProcessVmmLauncher({
    ...fixtureLauncherConfig,
    spare: {
      engine: "fixture",
      logPath: join(dir, "vmm-spare.log"),
      maxSpecPathBytes: Buffer.byteLength(join(dir, "vms", "a".repeat(63), "vmm-spec.json")),
      codeStamp: () => stamp.value,
      log: (line) => lines.push(line),
    },
  });
  launchers.push(launcher);
  return { launcher, lines, stamp };
}

/** Starts a spare (when none waits) and resolves its pid once it is ready. */
async function readySpare(launcher: ProcessVmmLauncher): Promise<number> {
  const spare = launcher.spare!;
  spare.replenish();
  assert.ok(await spare.whenReady(), "the spare became ready");
  pids.push(spare.pid!);
  return spare.pid!;
}

async function vmIn(dir: string, name: string, patch: Partial<VmRecord> = {}) {
  const store = await VmStore.open(dir);
  const vm = fixtureVmRecord(name, patch);
  await store.create(vm);
  return { vm, paths: store.paths(name) };
}

async function gone(pid: number, ms = 10_000): Promise<boolean> {
  for (const t0 = Date.now(); Date.now() - t0 < ms; ) {
    if (!processAlive(pid)) return true;
    await new Promise((r) => setTimeout(r, 50));
  }
  return !processAlive(pid);
}

/** The nice value of every thread of `pid` (field 19 of /proc/PID/task/TID/stat). */
async function nicesOf(pid: number): Promise<number[]> {
  const { readdir } = await import("node:fs/promises");
  const out: number[] = [];
  for (const tid of await readdir(`/proc/${pid}/task`)) {
    const stat = await readFile(`/proc/${pid}/task/${tid}/stat`, "utf8");
    out.push(Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19 - 3]));
  }
  return out;
}

test("a start adopts the waiting spare: same process, records, log and weight as a spawned VMM; a new spare follows", async () => {
  const dir = await home();
  const { launcher, lines } = spareLauncher(dir);
  const sparePid = await readySpare(launcher);
  const spareIdentity = readProcessIdentity(sparePid)!;
  const { vm, paths } = await vmIn(dir, "web", { cpuWeight: 50 });
  const handle = await launcher.launch(vm, paths, "boot");
  pids.push(handle.pid);
  assert.equal(handle.pid, sparePid, "the VM runs in the spare's process");
  // vmm.json names the process by its identity, whose start time is the spare's (before the VM existed).
  const run = JSON.parse(await readFile(paths.vmm, "utf8"));
  assert.deepEqual(
    [run.pid, run.bootId, run.startTime],
    [sparePid, spareIdentity.bootId, spareIdentity.startTime],
  );
  // Its command line names the VM's spec, which is how daemons, deletes and signals recognise a VM's VMM.
  assert.deepEqual(processArguments(sparePid)?.[0], join(paths.dir, "vmm-spec.json"));
  const stats = await handle.stats();
  assert.ok(stats.preparedAtMs! > 0, "the engine was prepared in this process before the VM came");
  assert.ok(stats.vmmUptimeMs! < stats.preparedAtMs! + 60_000 && stats.vmmUptimeMs! >= 0);
  // Weight 50 is nice 3 (vmm-main.ts applyCpuWeight), on every thread, as for a spawned VMM.
  assert.deepEqual([...new Set(await nicesOf(sparePid))], [3]);
  // Its output goes to the VM's vmm.log from the adoption on; the spare's log has only its time as a spare.
  assert.match(await readFile(join(paths.dir, "vmm.log"), "utf8"), /web: guest running \(boot\)/);
  const spareLog = await readFile(join(dir, "vmm-spare.log"), "utf8");
  assert.match(spareLog, new RegExp(`spare VMM \\(pid ${sparePid}\\) ready`));
  assert.doesNotMatch(spareLog, /guest running/);
  assert.ok(lines.some((l) => l.includes(`spare VMM (pid ${sparePid}) ready`)));
  // Another launcher (a restarted daemon) re-attaches to it like any VMM.
  const other = new ProcessVmmLauncher(fixtureLauncherConfig);
  const again = await other.reattach(vm, paths);
  assert.ok("pid" in again && again.pid === sparePid);
  again.detach();
  // The next spare is a new process, started a moment after the launch.
  for (let i = 0; i < 100 && launcher.spare!.pid === undefined; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.ok(await launcher.spare!.whenReady());
  const next = launcher.spare!.pid!;
  pids.push(next);
  assert.notEqual(next, sparePid);
  const exit = await handle.stop(5000);
  assert.equal(exit.reason, "poweroff");
  assert.ok(await gone(sparePid), "the adopted spare ends with its VM");
  assert.deepEqual(JSON.parse(await readFile(join(paths.dir, "exit.json"), "utf8")).reason, "poweroff");
});

test("a resume adopts a spare and continues from the saved state", async () => {
  const dir = await home();
  const { launcher } = spareLauncher(dir);
  const { vm, paths } = await vmIn(dir, "sus");
  const first = await launcher.launch(vm, paths, "boot");
  pids.push(first.pid);
  await new Promise((r) => setTimeout(r, 100));
  await first.suspend();
  const saved = JSON.parse(await readFile(join(paths.stateDir, "counter.json"), "utf8")).count as number;
  assert.ok(saved > 0);
  const sparePid = await readySpare(launcher);
  const resumed = await launcher.launch(vm, paths, "restore");
  assert.equal(resumed.pid, sparePid);
  assert.ok((await resumed.stats()).count! >= saved, "the count continues from the saved state");
  assert.match(await readFile(join(paths.dir, "vmm.log"), "utf8"), /sus: guest running \(restore\)/);
  await resumed.stop(5000);
});

test("a spare runs one VM only: two starts at once get two processes, and a spare's VM ending frees nothing for reuse", async () => {
  const dir = await home();
  const { launcher } = spareLauncher(dir);
  const sparePid = await readySpare(launcher);
  const a = await vmIn(dir, "a");
  const b = await vmIn(dir, "b");
  const [ha, hb] = await Promise.all([
    launcher.launch(a.vm, a.paths, "boot"),
    launcher.launch(b.vm, b.paths, "boot"),
  ]);
  pids.push(ha.pid, hb.pid);
  assert.notEqual(ha.pid, hb.pid);
  assert.equal([ha.pid, hb.pid].filter((p) => p === sparePid).length, 1, "exactly one adopted the spare");
  for (const [h, p] of [
    [ha, a.paths],
    [hb, b.paths],
  ] as const)
    assert.equal(processArguments(h.pid)?.includes(join(p.dir, "vmm-spec.json")), true);
  const adopted = ha.pid === sparePid ? ha : hb;
  await adopted.stop(5000);
  assert.ok(await gone(sparePid));
  // The next start gets the new spare, never the process that ran a VM.
  const next = await readySpare(launcher);
  assert.notEqual(next, sparePid);
  const c = await vmIn(dir, "c");
  const hc = await launcher.launch(c.vm, c.paths, "boot");
  pids.push(hc.pid);
  assert.equal(hc.pid, next);
  await Promise.all([hc.stop(5000), (ha.pid === sparePid ? hb : ha).stop(5000)]);
});

test("a spare killed before its adoption: the start spawns a VMM instead, and the VM runs", async () => {
  const dir = await home();
  const { launcher, lines } = spareLauncher(dir);
  const sparePid = await readySpare(launcher);
  // Killed and the start asked in the same turn: the launcher has not yet seen it die.
  process.kill(sparePid, "SIGKILL");
  const { vm, paths } = await vmIn(dir, "after-crash");
  const handle = await launcher.launch(vm, paths, "boot");
  pids.push(handle.pid);
  assert.notEqual(handle.pid, sparePid);
  assert.ok((await handle.stats()).count! >= 0);
  assert.ok(
    lines.some((l) => l.includes(`spare VMM (pid ${sparePid})`)),
    `the daemon's log says what became of the spare:\n${lines.join("\n")}`,
  );
  await handle.stop(5000);
  // A spare that dies while idle is noticed, and the next launch starts another.
  const second = await readySpare(launcher);
  process.kill(second, "SIGKILL");
  assert.ok(await gone(second));
  // Noticed: the dead spare is no longer offered (the launch above may since have started another, a
  // second after it: REPLENISH_DELAY_MS).
  for (let i = 0; i < 200 && launcher.spare!.pid === second; i++) await new Promise((r) => setTimeout(r, 50));
  assert.notEqual(launcher.spare!.pid, second);
  const again = await launcher.launch(vm, paths, "boot");
  pids.push(again.pid);
  assert.notEqual(again.pid, second);
  for (let i = 0; i < 100 && launcher.spare!.pid === undefined; i++)
    await new Promise((r) => setTimeout(r, 50));
  assert.ok(launcher.spare!.pid !== undefined, "a new spare was started after the launch");
  await again.stop(5000);
});

test("a spare started from other code than a VMM would now run is killed, not adopted", async () => {
  const dir = await home();
  const { launcher, lines, stamp } = spareLauncher(dir);
  const old = await readySpare(launcher);
  assert.ok(processArguments(old)?.includes("code-1"));
  stamp.value = "code-2";
  const { vm, paths } = await vmIn(dir, "fresh");
  const handle = await launcher.launch(vm, paths, "boot");
  pids.push(handle.pid);
  assert.notEqual(handle.pid, old);
  assert.ok(await gone(old), "the old spare is gone");
  assert.ok(lines.some((l) => l.includes(`spare VMM (pid ${old}) killed: it was started from other code`)));
  const next = await readySpare(launcher);
  assert.ok(processArguments(next)?.includes("code-2"), "the new spare is of the new code");
  await handle.stop(5000);
});

test("the spare ends when its launcher closes, and by itself when its daemon is gone", async () => {
  const dir = await home();
  const { launcher } = spareLauncher(dir);
  const pid = await readySpare(launcher);
  await launcher.close();
  assert.ok(await gone(pid));
  launcher.spare!.replenish();
  assert.equal(launcher.spare!.pid, undefined, "a closed launcher starts no spare");
  // A daemon that dies cannot kill its spare: its IPC channel closing is the spare's cue.
  const daemonHome = await home();
  const script = join(daemonHome, "daemon.mts");
  await writeFile(
    script,
    `import { ProcessVmmLauncher } from ${JSON.stringify(join(here, "vmm-process.ts"))};
import { fixtureLauncherConfig } from ${JSON.stringify(join(here, "fixtures/fixture-launcher.ts"))};
const l = new ProcessVmmLauncher({ ...fixtureLauncherConfig, spare: { engine: "fixture", logPath: ${JSON.stringify(join(daemonHome, "spare.log"))}, maxSpecPathBytes: 200, codeStamp: () => "x" } });
l.spare.replenish();
await l.spare.whenReady();
process.stdout.write(String(l.spare.pid) + "\\n");
setInterval(() => {}, 1000);
`,
  );
  const { spawn } = await import("node:child_process");
  const daemon = spawn(process.execPath, [...fixtureLauncherConfig.nodeArgs, script], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  pids.push(daemon.pid!);
  const orphan = await new Promise<number>((resolve, reject) => {
    let out = "";
    daemon.stdout!.on("data", (c) => {
      out += c;
      if (out.includes("\n")) resolve(Number(out.trim()));
    });
    daemon.once("exit", () => reject(new Error("the stand-in daemon ended early")));
  });
  pids.push(orphan);
  assert.ok(processAlive(orphan));
  daemon.kill("SIGKILL");
  assert.ok(await gone(orphan), "the spare of a killed daemon exits");
});

test("through the hypervisor: start and resume adopt spares, and a new hypervisor re-attaches to an adopted VMM", async () => {
  const dir = await home();
  await writeFile(join(dir, "template.img"), Buffer.alloc(8192, 7));
  const { launcher } = spareLauncher(dir);
  const open = async (l: ProcessVmmLauncher) => {
    const hv = await Hypervisor.open({
      store: await VmStore.open(dir),
      capacity: hostCapacity(
        { cpuOvercommit: 8, memoryReserveMiB: 0, diskReserveMiB: 0 },
        { cores: 2, totalMemoryMiB: 4096, diskAvailableMiB: 100 },
      ),
      launcher: l,
      images: new FileImageCatalog({ default: join(dir, "template.img") }),
      defaultEngine: "fixture",
      defaultImage: "default",
      stopTimeoutMs: 1000,
    });
    hypervisors.push(hv);
    return hv;
  };
  const hv = await open(launcher);
  const ok = async (op: { id: string }) => {
    const result = await hv.waitOperation(op.id, 120_000);
    assert.equal(result.error, null, result.error?.message);
  };
  let spare = await readySpare(launcher);
  await ok(hv.insert({ name: "web", cpus: 1, memoryMiB: 128 }));
  assert.equal(hv.get("web").vmmPid, spare, "insert's start adopted the spare");
  await ok(hv.suspend("web"));
  spare = await readySpare(launcher);
  await ok(hv.resume("web"));
  assert.equal(hv.get("web").status, "RUNNING");
  assert.equal(hv.get("web").vmmPid, spare, "the resume adopted the next spare");
  await hv.close();
  const hv2 = await open(new ProcessVmmLauncher(fixtureLauncherConfig));
  assert.equal(hv2.get("web").status, "RUNNING");
  // Its recovery (re-attach) is an operation of its own, run after open.
  for (let i = 0; i < 600 && hv2.get("web").vmmPid === null; i++) await new Promise((r) => setTimeout(r, 50));
  assert.equal(hv2.get("web").vmmPid, spare, "re-attached to the adopted VMM");
  const result = await hv2.waitOperation(hv2.stop("web").id, 60_000);
  assert.equal(result.error, null);
  assert.ok(await gone(spare));
});
