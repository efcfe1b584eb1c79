// The data directory on a tiny filesystem (an 8 MiB tmpfs this test mounts; it needs root, as CI has):
// concurrent creates admitted against the space measured at each create, and a disk that fills up during a
// create, a start, a suspend and the console log. Every failure is a clear error naming what could not be
// written, nothing is left half-written, no VM is stranded, and everything works again once space is freed.
// Real VMM processes host the counting stand-in guest.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, open, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { diskChain } from "../engines/backends/qcow2/index.ts";
import { availableBytes } from "./disk-admission.ts";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { expectConsole, openFixtureHypervisor } from "./fixtures/fixture-hypervisor.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import type { Hypervisor } from "./hypervisor.ts";
import { processAlive } from "./process-alive.ts";
import type { VmmLauncher } from "./vmm.ts";
import { ProcessVmmLauncher } from "./vmm-process.ts";

const MIB = 1048576;
let outside: string;
let mountPoint: string;
const hypervisors: Hypervisor[] = [];

before(async () => {
  outside = await mkdtemp(join(tmpdir(), "tsvm-full-"));
  // A 2 MiB template of random bytes: a copy of it really takes 2 MiB of the tmpfs.
  await writeFile(join(outside, "template.img"), randomBytes(2 * MIB));
  mountPoint = join(outside, "fs");
  await mkdir(mountPoint);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mountPoint]);
});

after(async () => {
  for (const hv of hypervisors) await closeAndKill(hv);
  try {
    execFileSync("umount", ["-l", mountPoint]);
  } catch {
    // not mounted
  }
  await rm(outside, { recursive: true, force: true });
});

/** A fresh data directory on the tmpfs (the previous test's hypervisor is closed and its directory removed). */
async function freshHome(): Promise<string> {
  for (const hv of hypervisors.splice(0)) await closeAndKill(hv);
  for (const e of await readdir(mountPoint)) await rm(join(mountPoint, e), { recursive: true, force: true });
  const home = join(mountPoint, "home");
  await mkdir(home);
  return home;
}

async function openHypervisor(
  home: string,
  options: { measure?: () => Promise<number>; launcher?: VmmLauncher } = {},
): Promise<Hypervisor> {
  const hv = await openFixtureHypervisor(home, join(outside, "template.img"), {
    diskAvailableMiB: Math.floor((await availableBytes(home)) / MIB),
    measureDiskFreeBytes: options.measure ?? (() => availableBytes(home)),
    ...(options.launcher ? { launcher: options.launcher } : {}),
  });
  hypervisors.push(hv);
  return hv;
}

/**
 * Fills the filesystem of `dir` to the last byte but `leave`; returns the filler's path (remove it to free
 * the space).
 */
async function fill(dir: string, leave = 0): Promise<string> {
  const path = join(dir, `filler-${randomBytes(4).toString("hex")}`);
  const fh = await open(path, "w");
  try {
    const room = (await availableBytes(dir)) - leave;
    if (leave > 0 && room > 0) await fh.write(Buffer.alloc(room, 1));
    if (leave > 0) return path;
    for (const size of [MIB, 4096, 1]) {
      const chunk = Buffer.alloc(size, 1);
      for (;;) {
        try {
          await fh.write(chunk);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === "ENOSPC") break;
          throw e;
        }
      }
    }
  } finally {
    await fh.close();
  }
  return path;
}

async function finished(hv: Hypervisor, id: string) {
  const op = await hv.waitOperation(id, 60_000);
  assert.equal(op.status, "DONE", op.statusMessage);
  return op;
}

async function ok(hv: Hypervisor, id: string) {
  const op = await finished(hv, id);
  assert.equal(op.error, null, op.error?.message);
  return op;
}

/** The operation once it finished but could not record that (it shows RUNNING until it can). */
async function unrecorded(hv: Hypervisor, id: string) {
  const t0 = Date.now();
  for (;;) {
    const op = hv.getOperation(id);
    if (/its record could not be written/.test(op.statusMessage) || op.status === "DONE") return op;
    assert.ok(Date.now() - t0 < 60_000, `operation ${id} did not finish: ${JSON.stringify(op)}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Every `.tmp-` entry under `dir`, two levels down. */
async function temps(dir: string): Promise<string[]> {
  const found: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true }).catch(() => [])) {
    if (e.name.startsWith(".tmp-")) found.push(join(dir, e.name));
    else if (e.isDirectory()) found.push(...(await temps(join(dir, e.name))));
  }
  return found;
}

test("concurrent creates whose disks together exceed the free space: those that fit succeed, the rest are refused naming DISK, and the filesystem never fills", async () => {
  const home = await freshHome();
  const hv = await openHypervisor(home);
  // 7 MiB (less a little) left: room for the image's 2 MiB base node and two VMs whose disks may each grow
  // to 2 MiB (qcow2 overlays, nearly empty at first: what they may grow by stays reserved), not a third.
  await writeFile(join(home, "ballast"), Buffer.alloc(MIB, 1));
  let lowest = Number.POSITIVE_INFINITY;
  const watch = setInterval(() => {
    void availableBytes(home).then((b) => {
      lowest = Math.min(lowest, b);
    });
  }, 5);
  const ops = ["a", "b", "c", "d", "e"].map((name) => hv.insert({ name, memoryMiB: 32 }));
  const results = [];
  for (const op of ops) results.push(await finished(hv, op.id));
  clearInterval(watch);
  const succeeded = results.filter((r) => r.error === null);
  const refused = results.filter((r) => r.error !== null);
  // Which two is up to the order their admissions ran in.
  assert.equal(succeeded.length, 2, JSON.stringify(results.map((r) => r.error?.message)));
  for (const r of refused) {
    assert.equal(r.error?.code, "capacity-exceeded", r.error?.message);
    assert.match(
      r.error!.message,
      /^Insufficient host capacity for 'DISK': VM '\w' needs 2 MiB for its disk/,
    );
  }
  assert.ok(lowest > 0, "the filesystem never filled");
  assert.deepEqual(
    (await readdir(join(home, "vms"))).sort(),
    succeeded.map((r) => r.targetName).sort(),
    "the refused creates left nothing",
  );
  for (const r of succeeded) await ok(hv, hv.delete(r.targetName).id);
});

test("a disk filled by someone else during a create: a clear error naming the disk, nothing left", async () => {
  const home = await freshHome();
  // The measurement says there is room; then another writer takes it all before the copy.
  let filler: string | undefined;
  const hv = await openHypervisor(home, {
    measure: async () => {
      // Room for the VM's record, not for its disk.
      filler = await fill(home, 256 * 1024);
      return 100 * MIB;
    },
  });
  const op = await finished(hv, hv.insert({ name: "late", memoryMiB: 32 }).id);
  assert.equal(op.error?.code, "disk-copy-failed");
  assert.match(
    op.error!.message,
    new RegExp(
      `^could not create the root disk of VM 'late' at ${join(home, "vms/late/disk.qcow2")} \\(.*ENOSPC`,
    ),
  );
  assert.deepEqual(await readdir(join(home, "vms")), [], "no VM directory is left");
  assert.deepEqual(await readdir(join(home, "disks")), [], "no disk node is left");
  assert.deepEqual(await temps(home), [], "no temp file is left");
  await rm(filler!);
});

test("a disk that fills during a clone: a clear error, the clone removed, the source and its saved state untouched", async () => {
  const home = await freshHome();
  let filler: string | undefined;
  let fillNext = false;
  const hv = await openHypervisor(home, {
    measure: async () => {
      // Room for the clone's record, not for its disk: the freeze of the source's disk cannot be written.
      if (fillNext) filler = await fill(home, 16 * 1024);
      return fillNext ? 100 * MIB : availableBytes(home);
    },
  });
  await ok(hv, hv.insert({ name: "src", memoryMiB: 32 }).id);
  await ok(hv, hv.suspend("src").id);
  const src = join(home, "vms/src");
  const before = {
    chain: (await diskChain(join(src, "disk.qcow2"))).map((l) => l.path),
    disk: await readFile(join(src, "disk.qcow2")),
    state: await readFile(join(src, "state/counter.json"), "utf8"),
  };
  fillNext = true;
  const op = await finished(hv, hv.insert({ name: "twin", sourceInstance: "src" }).id);
  fillNext = false;
  assert.equal(op.error?.code, "disk-copy-failed");
  assert.match(
    op.error!.message,
    /^could not make the disk of clone 'twin' of 'src' \(.*ENOSPC.*nothing was created and 'src' is unchanged$/,
  );
  assert.deepEqual(await readdir(join(home, "vms")), ["src"], "no clone directory is left");
  assert.deepEqual(await temps(home), [], "no temp file is left");
  assert.deepEqual(
    (await diskChain(join(src, "disk.qcow2"))).map((l) => l.path),
    before.chain,
  );
  assert.deepEqual(await readFile(join(src, "disk.qcow2")), before.disk);
  assert.equal(await readFile(join(src, "state/counter.json"), "utf8"), before.state);
  await rm(filler!);
  // With the space back, the clone and the source's resume both work from the same saved state.
  await ok(hv, hv.insert({ name: "twin", sourceInstance: "src" }).id);
  await ok(hv, hv.resume("src").id);
  const count = JSON.parse(before.state).count;
  for (const vm of ["src", "twin"]) await expectConsole(hv, vm, new RegExp(`restore at count ${count}\\n`));
});

test("a full disk during start, suspend and the console log: nothing changes that is not on disk, no VM is stranded, and all works again once space is freed", async () => {
  const home = await freshHome();
  // A launcher that lets the VMM start, then fills the disk: the RUNNING record cannot be written.
  let fillAfterLaunch = false;
  let filler: string | undefined;
  const real = new ProcessVmmLauncher(fixtureLauncherConfig);
  const launcher: VmmLauncher = {
    launch: async (vm, paths, mode) => {
      const vmm = await real.launch(vm, paths, mode);
      if (fillAfterLaunch) filler = await fill(home);
      return vmm;
    },
    reattach: (vm, paths) => real.reattach(vm, paths),
    engines: () => real.engines(),
  };
  // Three VMs whose disks (qcow2 overlays the stand-in guest never writes) could each grow to 2 MiB would
  // not be admitted on this filesystem; admission is not what this test is about.
  const hv = await openHypervisor(home, { launcher, measure: async () => 100 * MIB });
  await ok(hv, hv.insert({ name: "web", memoryMiB: 32 }).id);
  for (const name of ["other", "victim"]) {
    await ok(hv, hv.insert({ name, memoryMiB: 32 }).id);
    await ok(hv, hv.stop(name).id);
  }

  // Start: the VMM runs, then its RUNNING record cannot be written.
  fillAfterLaunch = true;
  const start = hv.start("other");
  // Its failure cannot be recorded either while the disk is full: it shows RUNNING, saying what happened.
  const starting = await unrecorded(hv, start.id);
  fillAfterLaunch = false;
  // (Ending the VMM may free a page, enough for the operation's record: then it is DONE at once.)
  const said = starting.status === "DONE" ? starting.error?.message : starting.statusMessage;
  assert.match(
    said ?? "",
    new RegExp(
      `could not record VM 'other' as RUNNING in ${join(home, "vms/other/vm.json")} \\(ENOSPC[^)]*\\); it stays STAGING`,
    ),
  );
  if (starting.status !== "DONE")
    assert.match(
      starting.statusMessage,
      /^the operation failed \(record-write-failed: .*\), but its record could not be written/,
    );
  const refill = await fill(home);
  const stranded = hv.get("other");
  assert.equal(stranded.status, "STAGING");
  // No snapshot of a VM caught between statuses.
  await assert.rejects(
    hv.createSnapshot("other", "mid"),
    /^IllegalActionError: cannot createSnapshot VM 'other' while it is STAGING; createSnapshot is allowed only when the VM is RUNNING or TERMINATED or SUSPENDED$/,
  );
  assert.equal(stranded.vmmPid, null, "its VMM was ended");
  assert.equal(JSON.parse(await readFile(join(home, "vms/other/vm.json"), "utf8")).status, "STAGING");

  // The disk stays full. A suspend cannot even be recorded: it fails, changes nothing, and says so.
  const suspend = hv.suspend("web");
  const pending = await unrecorded(hv, suspend.id);
  assert.equal(
    pending.status,
    "RUNNING",
    `a DONE that is not on disk is not DONE: ${JSON.stringify(pending)}`,
  );
  assert.match(
    pending.statusMessage,
    /^the operation failed \(record-write-failed: could not record operation .*ENOSPC.*; nothing was done\), but its record could not be written \(.*ENOSPC.*\); retrying$/,
  );
  const web = hv.get("web");
  assert.equal(web.status, "RUNNING");
  assert.ok(web.vmmPid !== null && processAlive(web.vmmPid), "the guest runs on");
  // The console (it echoes input in capitals) writes into the full disk: the VMM goes on.
  const viewer = await hv.attachConsole("web");
  viewer.write("lost\n");
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(typeof (await hv.stats("web")).printed, "number", "the VMM still answers");

  // Deleting works on a full disk: it is how space comes back.
  const deleted = await finished(hv, hv.delete("victim").id);
  assert.equal(deleted.error, null, deleted.error?.message);
  assert.ok(!hv.list().vms.some((v) => v.name === "victim"));
  await rm(filler!);
  await rm(refill);
  // With room again the failed operations' records are written, and the stranded VM stops and starts.
  assert.equal((await finished(hv, suspend.id)).error?.code, "record-write-failed");
  assert.match(
    (await finished(hv, start.id)).error?.message ?? "",
    /^could not record VM 'other' as RUNNING/,
  );
  await ok(hv, hv.stop("other").id);
  assert.equal(hv.get("other").status, "TERMINATED");
  await ok(hv, hv.start("other").id);
  assert.equal(hv.get("other").status, "RUNNING");

  // The console log goes on, the suspend works with its state whole, and the VM resumes.
  viewer.write("back\n");
  await new Promise((r) => setTimeout(r, 300));
  viewer.destroy();
  assert.match(await readFile(join(home, "vms/web/console.log"), "utf8"), /BACK/);
  await ok(hv, hv.suspend("web").id);
  const state = JSON.parse(await readFile(join(home, "vms/web/state/counter.json"), "utf8"));
  assert.equal(typeof state.count, "number");
  await ok(hv, hv.resume("web").id);
  assert.equal(hv.get("web").status, "RUNNING");
  for (const name of ["web", "other"]) await ok(hv, hv.delete(name).id);
  assert.deepEqual(await temps(home), [], "no temp file is left");
});

test("a full disk during a snapshot: a clear error, the VM runs on and its earlier snapshot stays restorable", async () => {
  const home = await freshHome();
  // The measurement says there is room (another writer takes it meanwhile): the snapshot itself meets ENOSPC.
  const hv = await openHypervisor(home, { measure: async () => 100 * MIB });
  await ok(hv, hv.insert({ name: "web", memoryMiB: 32 }).id);
  await ok(hv, (await hv.createSnapshot("web", "s1")).id);
  // Room for the operation's records, not for the new overlay a freeze writes (28 KiB of a qcow2 on tmpfs).
  const room = 12 * 1024;
  const filler = await fill(home, room);
  const before = (await hv.stats("web")).count!;
  for (const status of ["RUNNING", "TERMINATED"]) {
    const failed = await finished(hv, (await hv.createSnapshot("web", "s2")).id);
    assert.equal(failed.error?.code, "snapshot-failed", `${status}: ${failed.error?.message}`);
    assert.match(
      failed.error!.message,
      /^could not take snapshot 's2' of VM 'web' \(.*(ENOSPC|is the filesystem full).*\); the VM and its other snapshots are unchanged$/,
    );
    assert.equal(hv.get("web").status, status);
    assert.deepEqual(
      (await hv.listSnapshots("web")).map((s) => s.name),
      ["s1"],
    );
    assert.deepEqual(await temps(home), [], "no temp file is left");
    assert.ok(!(await readdir(join(home, "vms/web"))).includes("disk.qcow2.new"));
    if (status === "RUNNING") {
      assert.ok((await hv.stats("web")).count! >= before, "the guest runs on");
      // Stopping needs a record written: a little room for it.
      await rm(filler);
      await ok(hv, hv.stop("web").id);
      await fill(home, room);
    }
  }
  for (const e of await readdir(home)) if (e.startsWith("filler-")) await rm(join(home, e));
  // With room again s1 restores (its memory: the VM runs), and a new snapshot is taken.
  await ok(hv, (await hv.restoreSnapshot("web", "s1")).id);
  assert.equal(hv.get("web").status, "RUNNING");
  await ok(hv, (await hv.createSnapshot("web", "s2")).id);
  await ok(hv, hv.delete("web").id);
});
