import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { diskChain } from "../engines/backends/qcow2/index.ts";
import { checkCloneRequest, cloneRecord, shareSavedState } from "./clones.ts";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { expectConsole, openFixtureHypervisor } from "./fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { IllegalActionError } from "./lifecycle.ts";
import { VmExistsError, VmNotFoundError, VmStore } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

const SOURCE: VmRecord = {
  formatVersion: 1,
  id: "3f0c6a1e-94d2-4c51-8b8e-0d1f2a3b4c5d",
  name: "web",
  machineType: "t1-medium",
  cpus: 2,
  memoryMiB: 512,
  diskMiB: 64,
  image: "default",
  engine: "riscv",
  automaticRestart: false,
  cpuCapPercent: 50,
  cpuWeight: 200,
  identity: { hostname: "web", machineId: "ab".repeat(16) },
  status: "SUSPENDED",
  statusMessage: "",
  creationTimestamp: "2026-11-25T18:00:00.000Z",
  lastStartTimestamp: "2026-11-25T18:00:01.000Z",
  lastStopTimestamp: null,
  lastSuspendedTimestamp: "2026-11-25T18:10:00.000Z",
  history: [{ at: "2026-11-25T18:00:00.000Z", from: null, to: "PROVISIONING", reason: "insert" }],
};

test("checkCloneRequest: a clone takes machine type, image and engine from its source", () => {
  checkCloneRequest({ name: "a", sourceInstance: "web", cpuWeight: 5, automaticRestart: true });
  checkCloneRequest({ name: "a" });
  for (const extra of [
    { machineType: "t1-micro" },
    { cpus: 1 },
    { memoryMiB: 64 },
    { image: "x" },
    { engine: "y" },
  ]) {
    assert.throws(
      () => checkCloneRequest({ name: "a", sourceInstance: "web", ...extra }),
      (e: Error) =>
        e instanceof HypervisorError &&
        e.code === "invalid-argument" &&
        e.message.includes(Object.keys(extra)[0]!),
    );
  }
  assert.throws(
    () => checkCloneRequest({ name: "a", sourceSnapshot: "s1" }),
    (e: Error) => e instanceof HypervisorError && /sourceInstance/.test(e.message),
  );
});

test("cloneRecord: the source's shape, a new id and identity, PROVISIONING, scheduling overridable", () => {
  const a = cloneRecord(SOURCE, { name: "web-2", sourceInstance: "web" }, "2026-12-01T00:00:00.000Z");
  const b = cloneRecord(
    SOURCE,
    { name: "web-3", sourceInstance: "web", cpuCapPercent: null, cpuWeight: 7 },
    "t",
  );
  assert.equal(a.name, "web-2");
  assert.notEqual(a.id, SOURCE.id);
  assert.equal(a.identity?.hostname, "web-2");
  assert.match(a.identity?.machineId ?? "", /^[0-9a-f]{32}$/);
  assert.notEqual(a.identity?.machineId, SOURCE.identity?.machineId);
  assert.notEqual(a.identity?.machineId, b.identity?.machineId);
  for (const f of ["machineType", "cpus", "memoryMiB", "diskMiB", "image", "engine"] as const)
    assert.equal(a[f], SOURCE[f], f);
  assert.equal(a.automaticRestart, false);
  assert.equal(a.cpuCapPercent, 50);
  assert.equal(b.cpuCapPercent, null);
  assert.equal(b.cpuWeight, 7);
  assert.equal(a.status, "PROVISIONING");
  assert.equal(a.lastSuspendedTimestamp, null);
  assert.deepEqual(a.history, [
    {
      at: "2026-12-01T00:00:00.000Z",
      from: null,
      to: "PROVISIONING",
      reason: "insert: clone of 'web', resources reserved",
    },
  ]);
  assert.match(
    cloneRecord(SOURCE, { name: "x", sourceInstance: "web", sourceSnapshot: "s1" }, "t").history[0]!.reason,
    /clone of 'web' \(snapshot 's1'\)/,
  );
});

test("shareSavedState: every file hard-linked into the new directory, whole or not at all", async () => {
  const root = await mkdtemp(join(tmpdir(), "tsvm-clones-"));
  roots.push(root);
  const from = join(root, "src-state");
  await mkdir(from);
  await writeFile(join(from, "manifest.json"), "{}");
  await writeFile(join(from, "section-0.bin"), Buffer.alloc(1 << 20, 7));
  await mkdir(join(root, "clone"));
  const to = join(root, "clone", "state");
  await shareSavedState(from, to);
  assert.deepEqual((await readdir(to)).sort(), ["manifest.json", "section-0.bin"]);
  assert.equal((await stat(join(to, "section-0.bin"))).ino, (await stat(join(from, "section-0.bin"))).ino);
  assert.equal((await stat(join(from, "section-0.bin"))).nlink, 2);
  // Removing the clone's state (as its resume does) leaves the source's.
  await rm(to, { recursive: true });
  assert.equal((await readFile(join(from, "section-0.bin"))).length, 1 << 20);
  // A state holding anything but files is refused, and nothing is left behind.
  await symlink("/etc/passwd", join(from, "evil"));
  await assert.rejects(shareSavedState(from, to), /'evil', which is not a file/);
  assert.deepEqual(await readdir(join(root, "clone")), []);
  // An existing target is never overwritten.
  await rm(join(from, "evil"));
  await mkdir(to);
  await writeFile(join(to, "mine"), "x");
  await assert.rejects(shareSavedState(from, to));
  assert.deepEqual(await readdir(to), ["mine"]);
  assert.deepEqual((await readdir(join(root, "clone"))).sort(), ["state"]);
});

// ---- through the Hypervisor, with real VMM processes hosting the counting stand-in guest ----------------

const hypervisors: Hypervisor[] = [];
after(async () => {
  for (const hv of hypervisors) await closeAndKill(hv);
});

async function fixture(): Promise<{ hv: Hypervisor; store: VmStore; home: string }> {
  const home = await mkdtemp(join(tmpdir(), "tsvm-clones-hv-"));
  roots.push(home);
  await writeFile(join(home, "template.img"), Buffer.alloc(8192, 7));
  const hv = await openFixtureHypervisor(home, join(home, "template.img"), { diskAvailableMiB: 1000 });
  hypervisors.push(hv);
  return { hv, store: await VmStore.open(home), home };
}

async function ok(hv: Hypervisor, op: { id: string }) {
  const result = await hv.waitOperation(op.id, 120_000);
  assert.equal(result.status, "DONE");
  assert.equal(result.error, null, result.error?.message);
}

test("clone of a TERMINATED VM: booted from its frozen disk, shared, with its shape and a new identity", async () => {
  const { hv, store, home } = await fixture();
  await ok(hv, hv.insert({ name: "src", machineType: "t1-micro", cpuWeight: 300 }));
  await ok(hv, hv.stop("src"));
  await ok(hv, hv.insert({ name: "copy", sourceInstance: "src" }));
  const copy = hv.get("copy");
  const src = hv.get("src");
  assert.equal(copy.status, "RUNNING");
  assert.equal(src.status, "TERMINATED");
  assert.deepEqual([copy.machineType, copy.cpus, copy.memoryMiB, copy.cpuWeight], ["t1-micro", 1, 128, 300]);
  assert.equal(copy.identity.hostname, "copy");
  assert.notEqual(copy.identity.machineId, src.identity.machineId);
  assert.notEqual(copy.id, src.id);
  assert.match(copy.history[0]!.reason, /clone of 'src'/);
  const spec = JSON.parse(await readFile(join(store.paths("copy").dir, "vmm-spec.json"), "utf8"));
  assert.deepEqual(spec.identity, copy.identity);
  // The source's disk had nothing of its own (the stand-in guest writes none): the clone shares its backing.
  const chainOf = async (vm: string) => (await diskChain(store.paths(vm).disk)).map((l) => l.path);
  assert.deepEqual((await chainOf("copy")).slice(1), (await chainOf("src")).slice(1));
  assert.equal((await chainOf("src")).length, 2, "no layer was added to the source");
  // Written since: the next clone freezes the source's disk, and both get overlays on that node.
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xaa 4k 4k", store.paths("src").disk], {
    stdio: "ignore",
  });
  await ok(hv, hv.insert({ name: "copy2", sourceInstance: "src" }));
  const [copyChain, srcChain] = [await chainOf("copy2"), await chainOf("src")];
  assert.equal(copyChain.length, 3);
  assert.deepEqual(copyChain.slice(1), srcChain.slice(1));
  assert.equal((await stat(copyChain[1]!)).mode & 0o777, 0o444);
  await ok(hv, hv.stop("copy2"));
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "read -P 0xaa 4k 4k", store.paths("copy2").disk], {
    stdio: "ignore",
  });
  // Deleting the source keeps the node the clone reads.
  await ok(hv, hv.delete("src"));
  await stat(copyChain[1]!);
  for (const node of await readdir(join(home, "disks")))
    execFileSync("qemu-img", ["check", "-q", join(home, "disks", node)]);
  execFileSync("qemu-img", ["check", "-q", store.paths("copy").disk]);
});

test("clone of a snapshot: with memory it resumes where the source was then; disk-only it boots", async () => {
  const { hv, store } = await fixture();
  await ok(hv, hv.insert({ name: "src", machineType: "t1-micro" }));
  await new Promise((r) => setTimeout(r, 300));
  await ok(hv, await hv.createSnapshot("src", "mem"));
  const snap = await hv.getSnapshot("src", "mem");
  const saved = JSON.parse(
    await readFile(join(store.paths("src").dir, "snapshots", snap.id, "state/counter.json"), "utf8"),
  ).count;
  await ok(hv, hv.insert({ name: "a", sourceInstance: "src", sourceSnapshot: "mem" }));
  await ok(hv, hv.insert({ name: "b", sourceInstance: "src", sourceSnapshot: "mem" }));
  for (const vm of ["a", "b"]) {
    assert.equal(hv.get(vm).status, "RUNNING");
    await expectConsole(hv, vm, new RegExp(`^restore at count ${saved}\n`));
  }
  assert.notEqual(hv.get("a").identity.machineId, hv.get("b").identity.machineId);
  assert.equal(hv.get("src").status, "RUNNING", "a snapshot's source may run on");
  // The snapshot's memory is intact for the next clone (each clone consumed only its own links).
  await stat(join(store.paths("src").dir, "snapshots", snap.id, "state/counter.json"));
  await ok(hv, hv.stop("src"));
  await ok(hv, await hv.createSnapshot("src", "cold"));
  await ok(hv, hv.insert({ name: "c", sourceInstance: "src", sourceSnapshot: "cold" }));
  await expectConsole(hv, "c", /^boot at count 0\n/);
  await assert.rejects(
    async () => ok(hv, hv.insert({ name: "d", sourceInstance: "src", sourceSnapshot: "nope" })),
    /has no snapshot 'nope'/,
  );
  assert.throws(() => hv.get("d"), VmNotFoundError);
});

test("clone of a SUSPENDED VM resumes where its source was; the source keeps its saved state", async () => {
  const { hv, store } = await fixture();
  await ok(hv, hv.insert({ name: "src", machineType: "t1-micro" }));
  await new Promise((r) => setTimeout(r, 300));
  await ok(hv, hv.suspend("src"));
  const saved = JSON.parse(await readFile(join(store.paths("src").stateDir, "counter.json"), "utf8")).count;
  assert.ok(saved > 0);
  await ok(hv, hv.insert({ name: "twin", sourceInstance: "src" }));
  assert.equal(hv.get("twin").status, "RUNNING");
  assert.deepEqual(
    hv.get("twin").history.map((h) => h.to),
    ["PROVISIONING", "STAGING", "RUNNING"],
  );
  await expectConsole(hv, "twin", new RegExp(`^restore at count ${saved}\\n`));
  // The clone's state was consumed (removed); the source's is whole and resumes too.
  await assert.rejects(stat(store.paths("twin").stateDir));
  assert.equal(hv.get("src").status, "SUSPENDED");
  await ok(hv, hv.resume("src"));
  await expectConsole(hv, "src", new RegExp(`restore at count ${saved}\\n`));
});

test("clone refused: a source RUNNING or unknown, a name taken, a shape given; nothing is created", async () => {
  const { hv, store } = await fixture();
  await ok(hv, hv.insert({ name: "src", machineType: "t1-micro" }));
  assert.throws(
    () => hv.insert({ name: "copy", sourceInstance: "src" }),
    (e: Error) =>
      e instanceof IllegalActionError && /cannot clone VM 'src' while it is RUNNING/.test(e.message),
  );
  assert.throws(() => hv.insert({ name: "copy", sourceInstance: "nope" }), VmNotFoundError);
  assert.throws(() => hv.insert({ name: "src", sourceInstance: "src" }), VmExistsError);
  assert.throws(
    () => hv.insert({ name: "copy", sourceInstance: "src", memoryMiB: 64 }),
    /leave out memoryMiB/,
  );
  // Queued behind the source's stop, the check runs when its turn comes: legal then.
  const stop = hv.stop("src");
  const clone = hv.insert({ name: "copy", sourceInstance: "src" });
  await ok(hv, stop);
  await ok(hv, clone);
  // A clone queued behind a start finds its source RUNNING: the operation fails, nothing is left.
  await ok(hv, hv.stop("copy"));
  const start = hv.start("copy");
  const late = hv.insert({ name: "late", sourceInstance: "copy" });
  await ok(hv, start);
  const failed = await hv.waitOperation(late.id, 120_000);
  assert.equal(failed.error?.code, "illegal-action");
  assert.throws(() => hv.get("late"), VmNotFoundError);
  assert.deepEqual((await readdir(store.vmsDir)).sort(), ["copy", "src"]);
});

test("ten clones of one disk cost little: du of the data directory before and after", async () => {
  const home = await mkdtemp(join(tmpdir(), "tsvm-clones-du-"));
  roots.push(home);
  // A template full of data (no holes, nothing a sparse file or qcow2 could leave out).
  const template = join(home, "template.img");
  await writeFile(
    template,
    Buffer.alloc(16 << 20).map((_, i) => (i * 7 + 1) & 0xff),
  );
  const hv = await openFixtureHypervisor(home, template, { diskAvailableMiB: 10_000 });
  hypervisors.push(hv);
  await ok(hv, hv.insert({ name: "src", memoryMiB: 32 }));
  await ok(hv, hv.stop("src"));
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xaa 8M 64k", join(home, "vms/src/disk.qcow2")], {
    stdio: "ignore",
  });
  const du = () => Number(execFileSync("du", ["-sk", home], { encoding: "utf8" }).split("\t")[0]);
  const before = du();
  for (let i = 0; i < 10; i++) {
    await ok(hv, hv.insert({ name: `c${i}`, sourceInstance: "src" }));
    await ok(hv, hv.stop(`c${i}`));
  }
  const added = du() - before;
  process.stderr.write(
    `clones: ten clones of a 16 MiB disk added ${added} KiB (du -sk of the data directory: ${before} → ${before + added} KiB)\n`,
  );
  assert.ok(
    added < 10 * 1024,
    `ten clones added ${added} KiB; a copy of the disk each would be ${10 * 16 * 1024} KiB`,
  );
  // The first clone froze the written disk; the nine after it share that node (the source's new overlay is
  // unwritten), so neither the source's chain nor any clone's is deeper than three.
  assert.equal((await diskChain(join(home, "vms/c9/disk.qcow2"))).length, 3);
  assert.equal((await diskChain(join(home, "vms/src/disk.qcow2"))).length, 3);
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "read -P 0xaa 8M 64k", join(home, "vms/c9/disk.qcow2")], {
    stdio: "ignore",
  });
});
