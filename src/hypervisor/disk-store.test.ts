// The disk nodes of a data directory with real files, cross-checked with qemu-img: a base converted once
// however many ask at once, overlays that read as their image, a freeze interrupted at each step and
// recovered into one complete arrangement, and garbage collection that removes only unreached nodes.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { mkdir, mkdtemp, readdir, rename, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileLock } from "../engines/backends/file-lock.ts";
import { createQcow2, diskChain, readDiskInfo } from "../engines/backends/qcow2/index.ts";
import {
  ACTIVE_DISK,
  activeDiskInfo,
  DiskStore,
  freezeActiveDisk,
  NEXT_DISK,
  reclaimActiveDiskLeaks,
  recoverActiveDisk,
  replaceActiveDisk,
  SHARED_NODE_GRACE_MS,
} from "./disk-store.ts";
import { treeNodes } from "./snapshot-tree.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function home(): Promise<{ home: string; template: string; store: DiskStore; vmDir: string }> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-disks-"));
  roots.push(dir);
  const template = join(dir, "template.raw");
  const bytes = Buffer.alloc(1 << 20);
  bytes.fill(9, 65536, 131072);
  await writeFile(template, bytes);
  const vmDir = join(dir, "vms", "a");
  await mkdir(vmDir, { recursive: true });
  return { home: dir, template, store: await DiskStore.open(dir, treeNodes), vmDir };
}

function qemuCheck(path: string): void {
  execFileSync("qemu-img", ["check", "-q", path]);
}

test("a base is converted once however many inserts ask at once; overlays read as the image", async () => {
  const { template, store, vmDir, home: dir } = await home();
  const nodes = await Promise.all([1, 2, 3, 4].map(() => store.baseNode(template)));
  assert.equal(new Set(nodes).size, 1);
  assert.deepEqual(
    (await readdir(store.dir)).filter((e) => !e.startsWith(".")),
    [nodes[0]!.slice(store.dir.length + 1)],
  );
  assert.equal((await stat(nodes[0]!)).mode & 0o777, 0o444);
  const disk = join(vmDir, ACTIVE_DISK);
  await store.createOverlay(disk, nodes[0]!);
  assert.match((await readDiskInfo(disk)).backing!.name, /^\.\.\/\.\.\/disks\/base-[0-9a-f]{16}\.qcow2$/);
  execFileSync("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "raw", disk, template]);
  qemuCheck(disk);
  assert.match(
    execFileSync("qemu-img", ["info", "--backing-chain", disk], { encoding: "utf8" }),
    /backing file/,
  );
  // A second store of the same home (a restarted daemon) finds the base and converts nothing.
  const again = await DiskStore.open(dir, treeNodes);
  assert.equal(await again.baseNode(template), nodes[0]);
});

test("a freeze interrupted at every step is recovered into one complete arrangement", async () => {
  const { template, store, vmDir } = await home();
  const base = await store.baseNode(template);
  const disk = join(vmDir, ACTIVE_DISK);
  await store.createOverlay(disk, base);
  const node1 = await freezeActiveDisk(vmDir, store.dir, "0000000000000001");
  assert.equal((await readDiskInfo(node1)).backing!.name, base.slice(store.dir.length + 1));
  assert.deepEqual(
    (await diskChain(disk)).map((l) => l.path),
    [disk, node1, base],
  );
  qemuCheck(node1);

  // Crash after the new overlay was written, before the active disk moved: the old arrangement stands.
  await createQcow2(join(vmDir, NEXT_DISK), {
    sizeBytes: 1 << 20,
    backing: { name: "../../disks/0000000000000002.qcow2", format: "qcow2" },
  });
  assert.match((await recoverActiveDisk(vmDir)).join(), /removed the unfinished new disk/);
  assert.deepEqual(await readdir(vmDir), [ACTIVE_DISK]);

  // Crash between the renames: the active disk is in its node (backing name not yet rewritten), the new
  // overlay beside it; recovery completes the freeze.
  await createQcow2(join(vmDir, NEXT_DISK), {
    sizeBytes: 1 << 20,
    backing: { name: "../../disks/0000000000000002.qcow2", format: "qcow2" },
  });
  await rename(disk, join(store.dir, "0000000000000002.qcow2"));
  assert.match((await recoverActiveDisk(vmDir)).join(), /completed an interrupted freeze/);
  assert.deepEqual(
    (await diskChain(disk)).map((l) => l.path),
    [disk, join(store.dir, "0000000000000002.qcow2"), node1, base],
  );
  for (const f of [disk, ...(await readdir(store.dir)).map((n) => join(store.dir, n))]) qemuCheck(f);
  execFileSync("qemu-img", ["compare", "-q", "-f", "qcow2", "-F", "raw", disk, template]);
  // Nothing left to recover, and a DiskStore opened now makes the node read-only.
  assert.deepEqual(await recoverActiveDisk(vmDir), []);
  await DiskStore.open(join(store.dir, ".."), treeNodes);
  assert.equal((await stat(join(store.dir, "0000000000000002.qcow2"))).mode & 0o777, 0o444);
});

test("garbage collection removes only nodes no chain reaches, and nothing when a snapshot list is unreadable", async () => {
  const { template, store, vmDir } = await home();
  const base = await store.baseNode(template);
  const disk = join(vmDir, ACTIVE_DISK);
  await store.createOverlay(disk, base);
  const kept = await freezeActiveDisk(vmDir, store.dir, "00000000000000aa");
  const dropped = await freezeActiveDisk(vmDir, store.dir, "00000000000000bb");
  // A restore onto the first node: the second is reached by nothing now.
  await replaceActiveDisk(vmDir, kept);
  await writeFile(join(vmDir, "snapshots.json"), "{ not json");
  await assert.rejects(store.collectGarbage(), /not valid JSON|Unexpected token|JSON/);
  assert.ok((await readdir(store.dir)).includes("00000000000000bb.qcow2"), "nothing removed on a guess");
  await rm(join(vmDir, "snapshots.json"));
  assert.deepEqual(await store.collectGarbage(), ["00000000000000bb"]);
  assert.ok(!(await readdir(store.dir)).includes(dropped.slice(store.dir.length + 1)));
  assert.deepEqual(
    (await diskChain(disk)).map((l) => l.path),
    [disk, kept, base],
  );
  // The VM gone, everything goes.
  await rm(vmDir, { recursive: true });
  assert.equal((await store.collectGarbage()).length, 2);
  assert.deepEqual(await readdir(store.dir), []);
});

test("on shared storage, an unreached node goes only once it is older than the grace another host may need", async () => {
  const { home: dir, template, vmDir } = await home();
  // The shared directory's layout (DIR/vms, DIR/disks), made here by the local store's open.
  await DiskStore.open(dir, treeNodes);
  const store = await DiskStore.openShared(dir, treeNodes);
  const base = await store.baseNode(template);
  const disk = join(vmDir, ACTIVE_DISK);
  await store.createOverlay(disk, base);
  const kept = await freezeActiveDisk(vmDir, store.dir, "00000000000000aa");
  await freezeActiveDisk(vmDir, store.dir, "00000000000000bb");
  await replaceActiveDisk(vmDir, kept);
  // Just made: another host could be about to write the chain that reaches it.
  assert.deepEqual(await store.collectGarbage(), []);
  assert.deepEqual(await store.collectGarbage(Date.now() + SHARED_NODE_GRACE_MS - 60_000), []);
  assert.deepEqual(await store.collectGarbage(Date.now() + SHARED_NODE_GRACE_MS + 1000), [
    "00000000000000bb",
  ]);
  assert.deepEqual(
    (await diskChain(disk)).map((l) => l.path),
    [disk, kept, base],
  );
});

test("an older VM's raw disk.img is raw whatever its guest wrote: frozen as a raw node, never probed", async () => {
  const { store, vmDir } = await home();
  // A hostile guest wrote a qcow2 header naming a host file as its backing into its raw disk's sector 0.
  const legacy = join(vmDir, "disk.img");
  await createQcow2(legacy, { sizeBytes: 1 << 20, backing: { name: "/etc/hostname", format: "raw" } });
  const info = await activeDiskInfo(vmDir);
  assert.deepEqual([info.path, info.format], [legacy, "raw"]);
  const node = await freezeActiveDisk(vmDir, store.dir, "00000000000000cc");
  assert.equal(node, join(store.dir, "00000000000000cc.raw"));
  const disk = join(vmDir, ACTIVE_DISK);
  assert.deepEqual(
    (await diskChain(disk)).map((l) => [l.path, l.format]),
    [
      [disk, "qcow2"],
      [node, "raw"],
    ],
    "the chain ends at the raw node: the header inside it is data",
  );
  assert.deepEqual(await readdir(vmDir), [ACTIVE_DISK]);
});

/** Leaves `disk` as a writer killed mid-write does: a cluster inside the file counted but never referenced,
 *  and no clean mark (createQcow2's layout: refcount block 0 at cluster 2, 16-bit entries). */
function leakAsAKilledWriter(disk: string): void {
  const fd = openSync(disk, "r+");
  writeSync(fd, Uint8Array.from([0, 1]), 0, 2, 2 * 65536 + 5 * 2); // cluster 5 counted once
  writeSync(fd, new Uint8Array(4), 0, 4, 92); // the clean mark off
  writeSync(fd, new Uint8Array(1), 0, 1, 6 * 65536 - 1); // the file reaches past cluster 5
  closeSync(fd);
}

test("a dead VMM's leaked disk clusters are given back, unless something still holds the disk", async () => {
  const { template, store, vmDir } = await home();
  const disk = join(vmDir, ACTIVE_DISK);
  await store.createOverlay(disk, await store.baseNode(template));
  leakAsAKilledWriter(disk);
  assert.equal(spawnSync("qemu-img", ["check", disk]).status, 3, "leaked");
  const lock = FileLock.tryTake(disk, { write: true })!;
  try {
    assert.deepEqual(await reclaimActiveDiskLeaks(vmDir), [], "a VMM may still be writing it");
  } finally {
    lock.release();
  }
  assert.deepEqual(await reclaimActiveDiskLeaks(vmDir), [
    "gave back 1 clusters its VMM had reserved in disk.qcow2",
  ]);
  qemuCheck(disk);
  assert.deepEqual(await reclaimActiveDiskLeaks(vmDir), [], "marked clean: nothing to do");
  // A freeze gives them back too: the node it makes is never written again.
  leakAsAKilledWriter(disk);
  const node = await freezeActiveDisk(vmDir, store.dir, "leaky");
  qemuCheck(node);
});
