// Snapshots through the hypervisor with real VMM processes (the counting stand-in guest, whose count is its
// "memory") and real qcow2 files: a tree of snapshots of running, stopped and suspended VMs, restores of
// memory and disk, deletes that keep the others restorable, garbage collection of disk nodes, a daemon
// restart, and qemu-img's check of every disk file afterwards.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { diskChain, openDisk } from "../engines/backends/qcow2/index.ts";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "./fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "./hypervisor.ts";

const roots: string[] = [];
const hypervisors: Hypervisor[] = [];

after(async () => {
  for (const hv of hypervisors) await closeAndKill(hv);
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function fresh(): Promise<{ home: string; template: string }> {
  const home = await mkdtemp(join(tmpdir(), "tsvm-snap-"));
  roots.push(home);
  const template = join(home, "template.img");
  await writeFile(template, Buffer.alloc(1 << 20, 7));
  return { home, template };
}

async function open(home: string, template: string): Promise<Hypervisor> {
  const hv = await openFixtureHypervisor(home, template);
  hypervisors.push(hv);
  return hv;
}

async function ok(hv: Hypervisor, op: { id: string } | Promise<{ id: string }>) {
  const result = await hv.waitOperation((await op).id, 120_000);
  assert.equal(result.status, "DONE");
  assert.equal(result.error, null, result.error?.message);
  return result;
}

/** Reads `length` bytes at `offset` of the VM's disk through its whole chain (no VMM may hold it). */
async function readDisk(path: string, offset: number, length: number): Promise<Buffer> {
  const disk = await openDisk(path, { readOnly: true });
  try {
    const out = Buffer.alloc(length);
    await new Promise<void>((resolve, reject) =>
      disk.read(offset, out, (e) => (e === null ? resolve() : reject(new Error(e)))),
    );
    return out;
  } finally {
    await disk.close();
  }
}

async function writeDisk(path: string, offset: number, bytes: Buffer): Promise<void> {
  const disk = await openDisk(path);
  try {
    await new Promise<void>((resolve, reject) =>
      disk.write(offset, bytes, (e) => (e === null ? resolve() : reject(new Error(e)))),
    );
    await new Promise<void>((resolve, reject) =>
      disk.flush((e) => (e === null ? resolve() : reject(new Error(e)))),
    );
  } finally {
    await disk.close();
  }
}

/** qemu-img check on every disk file of the data directory: the active disks and every node. */
async function checkEveryDisk(home: string): Promise<number> {
  let checked = 0;
  for (const vm of await readdir(join(home, "vms"))) {
    const disk = join(home, "vms", vm, "disk.qcow2");
    if (!(await stat(disk).catch(() => undefined))) continue;
    execFileSync("qemu-img", ["check", "-q", disk]);
    execFileSync("qemu-img", ["info", "--backing-chain", disk], { stdio: "ignore" });
    checked++;
  }
  for (const node of await readdir(join(home, "disks"))) {
    execFileSync("qemu-img", ["check", "-q", join(home, "disks", node)]);
    checked++;
  }
  return checked;
}

test("a tree of snapshots: memory of a running VM, the disk of a stopped one; restores, deletes, a daemon restart", async () => {
  const { home, template } = await fresh();
  let hv = await open(home, template);
  const disk = join(home, "vms", "web", "disk.qcow2");
  await ok(hv, hv.insert({ name: "web", memoryMiB: 64 }));

  // s1: of the running VM, with its memory (the counter); the guest runs on.
  await new Promise((r) => setTimeout(r, 300));
  const s1 = await ok(hv, hv.createSnapshot("web", "s1", "first"));
  assert.match(
    s1.statusMessage,
    /^snapshot 's1' taken with the guest's memory; the guest was paused \d+ ms$/,
  );
  assert.equal(hv.get("web").status, "RUNNING");
  const saved = JSON.parse(
    await readFile(
      join(home, "vms/web/snapshots", (await hv.getSnapshot("web", "s1")).id, "state/counter.json"),
      "utf8",
    ),
  ).count as number;
  assert.ok(saved > 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(((await hv.stats("web")).count ?? 0) > saved, "the guest counts on after the snapshot");

  // The frozen node is read-only and the active disk is a new overlay over it.
  const node = join(home, "disks", `${(await hv.getSnapshot("web", "s1")).id}.qcow2`);
  assert.equal((await stat(node)).mode & 0o777, 0o444);
  assert.deepEqual(
    (await diskChain(disk)).map((l) => l.path),
    [disk, node, (await diskChain(node))[1]!.path],
  );

  // A name taken, an invalid name, an unknown snapshot: refused at once.
  await assert.rejects(hv.createSnapshot("web", "s1"), /already has a snapshot 's1'/);
  await assert.rejects(hv.createSnapshot("web", "Bad_Name"), /not a valid snapshot name/);
  await assert.rejects(hv.restoreSnapshot("web", "nope"), /has no snapshot 'nope'/);

  // The disk changes after s1; s2 of the stopped VM holds the change, s3 a second one.
  await ok(hv, hv.stop("web"));
  await writeDisk(disk, 4096, Buffer.alloc(4096, 0xaa));
  await ok(hv, hv.createSnapshot("web", "s2"));
  await writeDisk(disk, 4096, Buffer.alloc(4096, 0xbb));
  await ok(hv, hv.createSnapshot("web", "s3"));
  await writeDisk(disk, 4096, Buffer.alloc(4096, 0xcc));
  const list = await hv.listSnapshots("web");
  assert.deepEqual(
    list.map((s) => [s.name, s.parent, s.memory, s.current]),
    [
      ["s1", null, true, false],
      ["s2", "s1", false, false],
      ["s3", "s2", false, true],
    ],
  );
  assert.ok(list[0]!.memorySizeBytes > 0 && list[1]!.diskSizeBytes > 0);

  // Restoring a disk-only snapshot: that disk, the VM TERMINATED.
  await ok(hv, hv.restoreSnapshot("web", "s2"));
  assert.equal(hv.get("web").status, "TERMINATED");
  assert.deepEqual(await readDisk(disk, 4096, 4096), Buffer.alloc(4096, 0xaa));

  // Deleting the middle snapshot keeps s3 (whose chain runs through s2's node) and s1 restorable.
  await ok(hv, hv.deleteSnapshot("web", "s2"));
  assert.deepEqual(
    (await hv.listSnapshots("web")).map((s) => [s.name, s.parent]),
    [
      ["s1", null],
      ["s3", "s1"],
    ],
  );
  await ok(hv, hv.restoreSnapshot("web", "s3"));
  assert.deepEqual(await readDisk(disk, 4096, 4096), Buffer.alloc(4096, 0xbb));

  // The daemon goes away and comes back: the tree is as it was.
  await closeAndKill(hv);
  hv = await open(home, template);
  assert.deepEqual(
    (await hv.listSnapshots("web")).map((s) => [s.name, s.parent, s.current]),
    [
      ["s1", null, false],
      ["s3", "s1", true],
    ],
  );

  // Restoring s1 (memory): the guest runs on from its saved count, and the disk is as it was then.
  await ok(hv, hv.restoreSnapshot("web", "s1"));
  assert.equal(hv.get("web").status, "RUNNING");
  assert.ok(((await hv.stats("web")).count ?? 0) >= saved, "the guest continues from the snapshot's count");
  await ok(hv, hv.stop("web"));
  assert.deepEqual(await readDisk(disk, 4096, 4096), Buffer.alloc(4096, 7));

  // A snapshot of a suspended VM holds its saved memory; restoring it resumes.
  await ok(hv, hv.start("web"));
  await ok(hv, hv.suspend("web"));
  await ok(hv, hv.createSnapshot("web", "s4"));
  assert.equal(hv.get("web").status, "SUSPENDED");
  await ok(hv, hv.resume("web"));
  await ok(hv, hv.restoreSnapshot("web", "s4"));
  assert.equal(hv.get("web").status, "RUNNING");

  // Nodes no chain reaches are collected: after s3 goes, its node (reached from nothing else) is removed.
  const s3Node = `${(await hv.getSnapshot("web", "s3")).id}.qcow2`;
  await ok(hv, hv.deleteSnapshot("web", "s3"));
  assert.ok(!(await readdir(join(home, "disks"))).includes(s3Node));
  assert.ok((await checkEveryDisk(home)) >= 4);

  // Deleting the VM removes every node only it reached, the base too.
  await ok(hv, hv.delete("web"));
  assert.deepEqual(await readdir(join(home, "disks")), []);
});
