// A VMM that dies while an operation is using it is repaired once: one fresh VMM, none leaked (found by
// the API storm, tests/integration/api-storm.test.ts). Real VMM processes hosting the counting guest.
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
import { ProcessVmmLauncher } from "./vmm-process.ts";

let home: string;
let hv: Hypervisor | undefined;
after(async () => {
  if (hv) await closeAndKill(hv);
  for (const pid of vmmProcesses()) process.kill(pid, "SIGKILL");
  await rm(home, { recursive: true, force: true });
});

/** Processes whose command line names our temp home: the VMMs started for it. */
function vmmProcesses(): number[] {
  return readdirSync("/proc")
    .filter((e) => /^\d+$/.test(e))
    .filter((e) => {
      try {
        return readFileSync(`/proc/${e}/cmdline`, "utf8").includes(home);
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

test("a VMM killed while it writes a suspend's state: one repair, one VMM left running, none leaked", async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-race-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096));
  hv = await Hypervisor.open({
    store: await VmStore.open(home),
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 1024, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 2048, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher(fixtureLauncherConfig),
    images: new FileImageCatalog({ default: join(home, "template.img") }),
    defaultEngine: "fixture",
    defaultImage: "default",
    stopTimeoutMs: 1000,
  });
  const vm = hv; // for the closures below
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
  // Every operation, the daemon's own repairs included, has settled.
  await until(() => vm.listOperations().every((op) => op.status === "DONE"));
  await new Promise((r) => setTimeout(r, 500));
  await until(() => vm.listOperations().every((op) => op.status === "DONE"));

  const now = vm.get("slowsave-a");
  assert.equal(now.status, "RUNNING");
  assert.deepEqual(
    now.history.slice(3).map((h) => h.to),
    ["SUSPENDING", "REPAIRING", "STAGING", "RUNNING"],
    "repaired once",
  );
  assert.deepEqual(vmmProcesses(), [now.vmmPid], "exactly the VM's own VMM runs");
});
