// Export and import through the hypervisor with real VMM processes (the counting stand-in guest): a
// suspended VM exported from one data directory resumes in another where it left off; the source is not
// changed; every bad input, a taken name, a missing engine and a full disk create nothing.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { execFileSync } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAndKill } from "../fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "../fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "../hypervisor.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import { createQcow2, diskChain } from "../../engines/backends/qcow2/index.ts";
import { FILE_HEADER_BYTES } from "./archive-format.ts";
import { planArchive, writeArchive } from "./archive-writer.ts";

const root = await mkdtemp(join(tmpdir(), "tsvm-export-"));
const opened: Hypervisor[] = [];
after(async () => {
  for (const hv of opened) await closeAndKill(hv);
  await rm(root, { recursive: true, force: true });
});

async function home(name: string): Promise<{ hv: Hypervisor; dir: string }> {
  const dir = join(root, name);
  await mkdir(dir, { recursive: true });
  // A 1 MiB template with data at both ends: the export must carry both, and not the zeros between.
  const template = Buffer.alloc(1 << 20);
  template.write("first sector", 0);
  template.write("last sector", (1 << 20) - 512);
  await writeFile(join(dir, "template.img"), template);
  const hv = await openFixtureHypervisor(join(dir, "home"), join(dir, "template.img"), {
    diskAvailableMiB: 4096,
  });
  opened.push(hv);
  return { hv, dir: join(dir, "home") };
}

async function ok(hv: Hypervisor, op: { id: string }) {
  const done = await hv.waitOperation(op.id, 60_000);
  assert.equal(done.error, null, done.error?.message);
  return done;
}

async function exportBytes(hv: Hypervisor, name: string, snapshots = true): Promise<Buffer> {
  return hv.exportVm(name, { snapshots }, async ({ bytes, stream }) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c);
    const all = Buffer.concat(chunks);
    assert.equal(all.length, bytes, "the announced size is the archive's");
    return all;
  });
}

async function* streamOf(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 65536) yield bytes.subarray(at, at + 65536);
}

/** Every file under `dir` with its SHA-256 (what "nothing changed" and "nothing created" compare). */
async function tree(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string, prefix: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), `${prefix}${e.name}/`);
      else
        out[`${prefix}${e.name}`] = createHash("sha256")
          .update(await readFile(join(d, e.name)))
          .digest("hex");
    }
  };
  await walk(dir, "");
  return out;
}

async function refused(hv: Hypervisor, bytes: Buffer, code: string, options: { name?: string } = {}) {
  await assert.rejects(hv.importVm(streamOf(bytes), options), (e: Error) => {
    assert.ok(e instanceof HypervisorError, e.stack);
    assert.equal(e.code, code, e.message);
    assert.ok(!e.message.includes("\n"));
    return true;
  });
}

test("a suspended VM exported from one data directory resumes in another where it left off; the source is untouched", async () => {
  const a = await home("a");
  const b = await home("b");
  await ok(a.hv, a.hv.insert({ name: "web", machineType: "t1-micro" }));
  await new Promise((r) => setTimeout(r, 300));
  // A snapshot with memory: its list, its saved state and its disk node travel unless left out.
  await ok(a.hv, await a.hv.createSnapshot("web", "s1"));
  await new Promise((r) => setTimeout(r, 100));
  await ok(a.hv, a.hv.suspend("web"));
  const saved = JSON.parse(await readFile(join(a.dir, "vms/web/state/counter.json"), "utf8")).count as number;
  assert.ok(saved > 0);
  const before = { vm: await tree(join(a.dir, "vms/web")), disks: await tree(join(a.dir, "disks")) };
  const recordBefore = a.hv.get("web");

  const bytes = await exportBytes(a.hv, "web");
  assert.deepEqual(await tree(join(a.dir, "vms/web")), before.vm, "the export changed the source VM's files");
  assert.deepEqual(await tree(join(a.dir, "disks")), before.disks, "the export changed the disk nodes");
  assert.deepEqual(a.hv.get("web"), recordBefore);
  // A 1 MiB disk with two non-zero sectors: qcow2 metadata, two data pages and the framing, not the megabyte.
  assert.ok(bytes.length < 128 * 1024, `${bytes.length} bytes`);

  const op = await b.hv.importVm(streamOf(bytes));
  assert.equal(op.status, "DONE");
  assert.equal(op.operationType, "insert");
  assert.equal(op.error, null);
  const imported = b.hv.get("web");
  assert.equal(imported.status, "SUSPENDED");
  assert.equal(imported.id, recordBefore.id, "the same VM, moved: same id");
  assert.match(imported.history.at(-1)!.reason, /import: recreated from an export of VM 'web'/);
  // The same disk files: the active overlay and every node (the image's base and the snapshot's layer).
  const nodesA = await tree(join(a.dir, "disks"));
  assert.deepEqual(await tree(join(b.dir, "disks")), nodesA);
  assert.equal(Object.keys(nodesA).length, 2);
  assert.deepEqual(
    await readFile(join(b.dir, "vms/web/disk.qcow2")),
    await readFile(join(a.dir, "vms/web/disk.qcow2")),
  );
  for (const link of await diskChain(join(b.dir, "vms/web/disk.qcow2")))
    assert.ok(link.path.startsWith(b.dir), `${link.path} is in the importing home`);
  assert.deepEqual(
    (await b.hv.listSnapshots("web")).map((x) => x.name),
    ["s1"],
  );

  await ok(b.hv, b.hv.resume("web"));
  assert.equal(b.hv.get("web").status, "RUNNING");
  const console = await b.hv.serialPortOutput("web", 0);
  assert.match(console.contents, new RegExp(`^restore at count ${saved}\\n`));
  const count = (await b.hv.stats("web")).count!;
  await new Promise((r) => setTimeout(r, 200));
  assert.ok((await b.hv.stats("web")).count! > count && count >= saved, "the counter continues");

  // The same file again: the name is taken (nothing created); under another name it is a second VM, which
  // cannot share the first one's id on this host.
  const entries = await readdir(join(b.dir, "vms"));
  await refused(b.hv, bytes, "already-exists");
  await refused(b.hv, bytes, "already-exists", { name: "web" });
  assert.deepEqual(await readdir(join(b.dir, "vms")), entries);
  await b.hv.importVm(streamOf(bytes), { name: "web-two" });
  assert.equal(b.hv.get("web-two").status, "SUSPENDED");
  assert.notEqual(b.hv.get("web-two").id, recordBefore.id);
  // Its nodes were there already, identical: reused (no second copy); its snapshots follow its new id.
  assert.deepEqual(await tree(join(b.dir, "disks")), nodesA);
  assert.deepEqual(
    (await b.hv.listSnapshots("web-two")).map((x) => x.name),
    ["s1"],
  );
  await ok(b.hv, await b.hv.restoreSnapshot("web-two", "s1"));

  // --no-snapshots leaves them out, and the snapshot's node with them (the active chain still has it).
  const bare = await exportBytes(a.hv, "web", false);
  assert.ok(bare.length < bytes.length);
  await b.hv.importVm(streamOf(bare), { name: "web-bare" });
  await assert.rejects(stat(join(b.dir, "vms/web-bare/snapshots.json")), { code: "ENOENT" });
  await assert.rejects(stat(join(b.dir, "vms/web-bare/snapshots")), { code: "ENOENT" });
  await stat(join(b.dir, "vms/web-bare/state/counter.json"));

  // A RUNNING VM is refused (illegal-action), a TERMINATED one exported without state.
  await assert.rejects(
    exportBytes(b.hv, "web"),
    (e: Error) => (e as HypervisorError).code === "illegal-action",
  );
  await ok(b.hv, b.hv.stop("web"));
  const stopped = await exportBytes(b.hv, "web");
  const c = await home("c");
  await c.hv.importVm(streamOf(stopped));
  assert.equal(c.hv.get("web").status, "TERMINATED");
  await assert.rejects(stat(join(c.dir, "vms/web/state")), { code: "ENOENT" });
  await ok(c.hv, c.hv.start("web"));

  // A node of the same id but other contents on the importing host is never reused: refused, nothing made.
  const [node] = Object.keys(nodesA).filter((n) => !n.startsWith("base-"));
  const d = await home("d");
  await mkdir(join(d.dir, "disks"), { recursive: true });
  await writeFile(join(d.dir, "disks", node!), "not the same node");
  const op2 = await d.hv.importVm(streamOf(bytes));
  assert.match(op2.error?.message ?? "", /its disk node .* differs from the node of that id/);
  assert.deepEqual(await readdir(join(d.dir, "vms")), []);
  assert.deepEqual(await readdir(join(d.dir, "disks")), [node]);
});

test("bad input creates nothing: truncated, each region changed, future version, not an export, unknown engine", async () => {
  const a = await home("bad-a");
  const b = await home("bad-b");
  await ok(a.hv, a.hv.insert({ name: "db", machineType: "t1-micro" }));
  await ok(a.hv, a.hv.suspend("db"));
  const bytes = await exportBytes(a.hv, "db");
  const vms = join(b.dir, "vms");
  const empty = await readdir(vms);
  const nothingCreated = async (what: string) => {
    assert.deepEqual(await readdir(vms), empty, `${what}: something was left in ${vms}`);
    assert.deepEqual(await readdir(join(b.dir, "disks")), [], `${what}: a disk node was left`);
    assert.deepEqual(
      (await readdir(b.dir)).filter((n) => n.startsWith(".tmp")),
      [],
      `${what}: staging left`,
    );
    assert.throws(() => b.hv.get("db"), /was not found/);
  };

  for (const cut of [
    0,
    5,
    FILE_HEADER_BYTES,
    40,
    200,
    bytes.length >> 1,
    bytes.length - 40,
    bytes.length - 1,
  ]) {
    await refused(b.hv, bytes.subarray(0, cut), "bad-archive");
    await nothingCreated(`cut at ${cut}`);
  }
  // One byte in each region: header (version minor), manifest, a FILE record, data, the trailer's digest.
  const disk = bytes.indexOf("first sector");
  const fileRecord = bytes.indexOf('{"path":"vm/disk.qcow2"');
  assert.ok(fileRecord > 0 && disk > 0);
  for (const at of [10, FILE_HEADER_BYTES + 30, fileRecord + 3, disk + 2, bytes.length - 5]) {
    const damaged = Buffer.from(bytes);
    damaged[at]! ^= 0x01;
    await refused(b.hv, damaged, "bad-archive");
    await nothingCreated(`byte ${at} changed`);
  }
  const future = Buffer.from(bytes);
  future.writeUInt16LE(7, 8);
  await assert.rejects(b.hv.importVm(streamOf(future)), /format version 7\.0; this tsvm reads format 1\.x/);
  await refused(b.hv, Buffer.from("PK\x03\x04 a zip file, say"), "bad-archive");
  await nothingCreated("not an export");

  // The engine: a daemon without the VM's engine refuses before writing anything.
  const text = bytes.toString("latin1");
  const engineAt = text.indexOf('"engine":"fixture"');
  assert.ok(engineAt > 0);
  const c = await openFixtureHypervisor(join(root, "bad-c"), join(b.dir, "../template.img"), {
    launcher: {
      engines: () => ["riscv"],
      launch: async () => assert.fail(),
      reattach: async () => assert.fail(),
    },
  });
  opened.push(c);
  await assert.rejects(
    c.importVm(streamOf(bytes)),
    /runs on the engine 'fixture', which this daemon does not have/,
  );
  assert.deepEqual(await readdir(join(root, "bad-c/vms")), []);
});

test("a full disk during an import: a clear error, nothing created (an 8 MiB tmpfs; needs root)", async () => {
  const a = await home("full-a");
  await ok(a.hv, a.hv.insert({ name: "big", machineType: "t1-micro" }));
  await ok(a.hv, a.hv.suspend("big"));
  // 12 MiB of random (non-zero) bytes in its saved state: more than the tmpfs holds.
  const filler = join(a.dir, "vms/big/state/filler.bin");
  execFileSync("dd", ["if=/dev/urandom", `of=${filler}`, "bs=1M", "count=12", "status=none"]);
  const bytes = await exportBytes(a.hv, "big");
  const mountPoint = join(root, "full-fs");
  await mkdir(mountPoint);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs", mountPoint]);
  try {
    const b = await openFixtureHypervisor(join(mountPoint, "home"), join(a.dir, "../template.img"));
    opened.push(b);
    await assert.rejects(b.importVm(streamOf(bytes)), (e: Error) => {
      assert.equal((e as HypervisorError).code, "import-failed");
      assert.match(e.message, /no space left on device \(ENOSPC\); nothing was created/);
      return true;
    });
    assert.deepEqual(await readdir(join(mountPoint, "home/vms")), []);
    assert.deepEqual(await readdir(join(mountPoint, "home/disks")), []);
    assert.deepEqual(
      (await readdir(join(mountPoint, "home"))).filter((n) => n.startsWith(".tmp")),
      [],
    );
    assert.throws(() => b.get("big"), /was not found/);
    await closeAndKill(b);
  } finally {
    execFileSync("umount", ["-l", mountPoint]);
  }
});

test("a hostile export file, well formed and checksummed: a planted VMM record, a disk backed by a host file or by a node it lacks; refused, nothing created", async () => {
  const b = await home("hostile");
  const dir = join(root, "hostile-parts");
  await mkdir(dir, { recursive: true });
  const record = {
    formatVersion: 1 as const,
    id: "11111111-2222-4333-8444-555555555555",
    name: "evil",
    machineType: "t1-micro",
    cpus: 1,
    memoryMiB: 128,
    diskMiB: 1,
    image: "default",
    engine: "fixture",
    automaticRestart: true,
    cpuCapPercent: null,
    cpuWeight: 100,
    status: "TERMINATED" as const,
    statusMessage: "",
    creationTimestamp: "2026-01-01T00:00:00.000Z",
    lastStartTimestamp: null,
    lastStopTimestamp: null,
    lastSuspendedTimestamp: null,
    history: [],
  };
  const archive = async (files: Array<{ path: string; source: string | Buffer }>) => {
    const sized = await Promise.all(
      files.map(async (f) => ({
        ...f,
        size: typeof f.source === "string" ? (await stat(f.source)).size : f.source.length,
      })),
    );
    const plan = await planArchive(
      {
        format: "tsvm-vm-export",
        exportedAt: "2026-01-02T00:00:00.000Z",
        writer: "someone",
        byteOrder: "little",
        vm: record,
        snapshots: false,
      },
      sized,
    );
    const chunks: Buffer[] = [];
    for await (const c of writeArchive(plan)) chunks.push(c);
    return Buffer.concat(chunks);
  };
  const raw = Buffer.alloc(65536);
  await createQcow2(join(dir, "host-backed.qcow2"), {
    sizeBytes: 1 << 20,
    backing: { name: "/etc/hostname", format: "raw" },
  });
  await createQcow2(join(dir, "node-backed.qcow2"), {
    sizeBytes: 1 << 20,
    backing: { name: "../../disks/abc123.qcow2", format: "qcow2" },
  });
  const nothingCreated = async () => {
    assert.deepEqual(await readdir(join(b.dir, "vms")), []);
    assert.deepEqual(await readdir(join(b.dir, "disks")), []);
    assert.deepEqual(
      (await readdir(b.dir)).filter((n) => n.startsWith(".tmp")),
      [],
    );
  };
  const cases: Array<[string, Buffer, RegExp]> = [
    [
      "a planted VMM record",
      await archive([
        { path: "vm/disk.img", source: raw },
        { path: "vm/vmm.json", source: Buffer.from('{"pid":1}') },
      ]),
      /it holds vm\/vmm\.json, which is no part of an exported VM/,
    ],
    [
      "a disk backed by a host file",
      await archive([{ path: "vm/disk.qcow2", source: join(dir, "host-backed.qcow2") }]),
      /its disk is backed by "\/etc\/hostname", not by a disk node of the export/,
    ],
    [
      "a disk backed by a node the file lacks",
      await archive([{ path: "vm/disk.qcow2", source: join(dir, "node-backed.qcow2") }]),
      /backed by the node abc123\.qcow2, which the export does not hold/,
    ],
    [
      "a node named outside the node layout",
      await archive([
        { path: "vm/disk.img", source: raw },
        { path: "disks/..qcow2", source: raw },
      ]),
      /is not a path an export may hold|not a disk node's name/,
    ],
  ];
  for (const [what, bytes, message] of cases) {
    await assert.rejects(b.hv.importVm(streamOf(bytes)), (e: Error) => {
      assert.equal((e as HypervisorError).code, "bad-archive", `${what}: ${e.message}`);
      assert.match(e.message, message, what);
      return true;
    });
    await nothingCreated();
  }
  // The same parts, well laid out, import: the refusals above were about what they held.
  await b.hv.importVm(streamOf(await archive([{ path: "vm/disk.img", source: raw }])));
  assert.equal(b.hv.get("evil").status, "TERMINATED");
});
