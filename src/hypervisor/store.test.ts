import assert from "node:assert/strict";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { HypervisorError } from "./hypervisor-error.ts";
import {
  copyFileAtomic,
  defaultDataDir,
  InvalidNameError,
  VmExistsError,
  VmNotFoundError,
  VmStore,
  writeFileAtomic,
} from "./store.ts";
import { CorruptRecordError, type VmRecord } from "./vm-record.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function freshStore(): Promise<VmStore> {
  const root = await mkdtemp(join(tmpdir(), "tsvm-store-"));
  roots.push(root);
  return VmStore.open(join(root, "home"));
}

function record(name: string, overrides: Partial<VmRecord> = {}): VmRecord {
  return {
    formatVersion: 1,
    id: `id-${name}`,
    name,
    machineType: "t1-small",
    cpus: 1,
    memoryMiB: 256,
    diskMiB: 1024,
    image: "default",
    engine: "riscv",
    automaticRestart: true,
    cpuCapPercent: null,
    cpuWeight: 100,
    status: "PROVISIONING",
    statusMessage: "",
    creationTimestamp: "2026-11-25T18:00:00.000Z",
    lastStartTimestamp: null,
    lastStopTimestamp: null,
    lastSuspendedTimestamp: null,
    history: [{ at: "2026-11-25T18:00:00.000Z", from: null, to: "PROVISIONING", reason: "insert" }],
    ...overrides,
  };
}

test("the data directory is TSVM_HOME, else under XDG_DATA_HOME, else ~/.local/share", () => {
  assert.equal(defaultDataDir({ TSVM_HOME: "/srv/vms", XDG_DATA_HOME: "/x", HOME: "/h" }), "/srv/vms");
  assert.equal(defaultDataDir({ XDG_DATA_HOME: "/x", HOME: "/h" }), "/x/tsvm");
  assert.equal(defaultDataDir({ HOME: "/h" }), "/h/.local/share/tsvm");
  assert.equal(defaultDataDir({ TSVM_HOME: "rel" }), join(process.cwd(), "rel"));
});

test("create then read returns the same record; the directory holds only vm.json", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  assert.deepEqual(await store.read("web"), record("web"));
  assert.deepEqual(await readdir(store.paths("web").dir), ["vm.json"]);
  assert.deepEqual(await readdir(store.vmsDir), ["web"]);
});

test("a duplicate name is refused and the existing definition is untouched", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  const before = await readFile(store.paths("web").definition, "utf8");
  await assert.rejects(store.create(record("web", { cpus: 4 })), VmExistsError);
  assert.equal(await readFile(store.paths("web").definition, "utf8"), before);
  assert.deepEqual(await readdir(store.vmsDir), ["web"]);
});

test("names that are not Compute Engine names (or would escape the directory) are refused", async () => {
  const store = await freshStore();
  for (const bad of ["", "../etc", "Web", "9lives", "a-", "a".repeat(64), "a/b", "."]) {
    assert.throws(() => store.paths(bad), InvalidNameError, bad);
    await assert.rejects(store.read(bad), InvalidNameError, bad);
  }
  assert.doesNotThrow(() => store.paths("a"));
  assert.doesNotThrow(() => store.paths(`a${"-".repeat(61)}b`));
});

test("unknown VMs: read, write and remove say not found", async () => {
  const store = await freshStore();
  await assert.rejects(store.read("ghost"), (e) => e instanceof VmNotFoundError && /'ghost'/.test(e.message));
  await assert.rejects(store.write(record("ghost")), VmNotFoundError);
  await assert.rejects(store.remove("ghost"), VmNotFoundError);
});

test("a truncated definition gives a clear error naming the file, is listed as broken, and is not overwritten", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  await store.create(record("db"));
  const path = store.paths("web").definition;
  const full = await readFile(path, "utf8");
  const truncated = full.slice(0, full.length / 2);
  await writeFile(path, truncated);
  await assert.rejects(
    store.read("web"),
    (e) => e instanceof CorruptRecordError && e.message.includes(path) && /not valid JSON/.test(e.message),
  );
  const { vms, broken } = await store.list();
  assert.deepEqual(
    vms.map((v) => v.name),
    ["db"],
  );
  assert.equal(broken.length, 1);
  assert.equal(broken[0]!.name, "web");
  assert.equal(broken[0]!.error.code, "corrupt-record");
  await assert.rejects(store.create(record("web")), VmExistsError);
  assert.equal(await readFile(path, "utf8"), truncated);
});

test("a definition with a wrong field names the field", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  const path = store.paths("web").definition;
  const cases: Array<[Record<string, unknown>, RegExp]> = [
    [{ status: "DANCING" }, /'status'/],
    [{ cpus: 0 }, /'cpus'/],
    [{ memoryMiB: "256" }, /'memoryMiB'/],
    [{ formatVersion: 99 }, /'formatVersion'/],
    [{ history: [{ at: "yesterday", from: null, to: "RUNNING", reason: "" }] }, /'history\[0\]\.at'/],
    [{ name: "db" }, /names the VM 'db'/],
  ];
  for (const [patch, message] of cases) {
    await writeFile(path, JSON.stringify({ ...record("web"), ...patch }));
    await assert.rejects(
      store.read("web"),
      (e) => e instanceof CorruptRecordError && message.test(e.message),
    );
  }
  await writeFile(path, "[]");
  await assert.rejects(store.read("web"), /'\(top level\)' must be an object/);
});

test("an oversized or missing definition is reported, not read", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  const path = store.paths("web").definition;
  await writeFile(path, Buffer.alloc((1 << 20) + 1, 0x20));
  await assert.rejects(store.read("web"), /larger than any definition/);
  await rm(path);
  await assert.rejects(
    store.read("web"),
    (e) => e instanceof CorruptRecordError && /missing/.test(e.message),
  );
});

test("write replaces the definition atomically, leaving no temp file", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  await store.write(record("web", { status: "STAGING" }));
  assert.equal((await store.read("web")).status, "STAGING");
  assert.deepEqual(await readdir(store.paths("web").dir), ["vm.json"]);
});

test("writeFileAtomic: the old file survives a failed write; the mode is applied; a crash's temp files are swept", async () => {
  const store = await freshStore();
  const path = join(store.home, "api-token");
  await writeFileAtomic(path, "secret\n", 0o600);
  assert.equal((await stat(path)).mode & 0o777, 0o600);
  assert.equal(await readFile(path, "utf8"), "secret\n");
  // A write into a directory that does not exist fails before touching anything.
  await assert.rejects(writeFileAtomic(join(store.home, "nope", "f"), "x"));
  // Leftovers of a crash between open and rename are removed when the store is opened again.
  await writeFile(join(store.vmsDir, ".tmp-deadbeef"), "half");
  await VmStore.open(store.home);
  assert.deepEqual(await readdir(store.vmsDir), []);
});

test("copyFileAtomic copies the bytes and refuses to leave a partial file when the source is missing", async () => {
  const store = await freshStore();
  const src = join(store.home, "image.raw");
  await writeFile(src, Buffer.from([1, 2, 3, 4]));
  const dst = join(store.home, "disk.img");
  await copyFileAtomic(src, dst);
  assert.deepEqual([...(await readFile(dst))], [1, 2, 3, 4]);
  await assert.rejects(copyFileAtomic(join(store.home, "missing"), join(store.home, "d2")));
  assert.deepEqual((await readdir(store.home)).sort(), ["disk.img", "image.raw", "vms"]);
});

test("remove deletes the VM's directory and everything in it", async () => {
  const store = await freshStore();
  await store.create(record("web"));
  await writeFile(store.paths("web").consoleLog, "boot\n");
  await store.remove("web");
  assert.deepEqual(await readdir(store.vmsDir), []);
  await assert.rejects(store.read("web"), VmNotFoundError);
  assert.ok(new VmNotFoundError("x") instanceof HypervisorError);
});

test("recoverLeftovers: temp files and unfinished states go; a suspend interrupted mid-swap gets its previous state back", async () => {
  const store = await freshStore();
  await store.create(record("kept"));
  const kept = store.paths("kept");
  await writeFile(join(kept.dir, ".tmp-0123456789ab"), "half a definition");
  await mkdir(join(kept.dir, "state"));
  await writeFile(join(kept.dir, "state", "counter.json"), "old");
  await mkdir(join(kept.dir, ".tmp-state-aaaaaaaaaaaa"));
  await writeFile(join(kept.dir, ".tmp-state-aaaaaaaaaaaa", "counter.json"), "new, half written");
  await mkdir(join(kept.dir, ".tmp-old-state-bbbbbbbbbbbb"));
  const done = await store.recoverLeftovers("kept");
  assert.equal(done.length, 3);
  assert.deepEqual((await readdir(kept.dir)).sort(), ["state", "vm.json"]);
  assert.equal(await readFile(join(kept.stateDir, "counter.json"), "utf8"), "old");

  await store.create(record("swap"));
  const swap = store.paths("swap");
  await mkdir(join(swap.dir, ".tmp-old-state-cccccccccccc"));
  await writeFile(join(swap.dir, ".tmp-old-state-cccccccccccc", "counter.json"), "previous");
  await mkdir(join(swap.dir, ".tmp-state-dddddddddddd"));
  await writeFile(join(swap.dir, ".tmp-state-dddddddddddd", "counter.json"), "new");
  const swapped = await store.recoverLeftovers("swap");
  assert.match(swapped.join("\n"), /put back the previous saved state/);
  assert.deepEqual((await readdir(swap.dir)).sort(), ["state", "vm.json"]);
  assert.equal(await readFile(join(swap.stateDir, "counter.json"), "utf8"), "previous");
  assert.deepEqual(await store.recoverLeftovers("swap"), [], "nothing left to do");
  assert.deepEqual(await store.recoverLeftovers("ghost"), []);
});

test("open removes half-assembled and half-deleted VM directories and temp files in the data directory", async () => {
  const root = await mkdtemp(join(tmpdir(), "tsvm-store-"));
  roots.push(root);
  const home = join(root, "home");
  const first = await VmStore.open(home);
  await first.create(record("web"));
  await mkdir(join(first.vmsDir, ".tmp-aaaaaaaaaaaa"));
  await writeFile(join(first.vmsDir, ".tmp-aaaaaaaaaaaa", "vm.json"), "{}");
  await writeFile(join(home, ".tmp-bbbbbbbbbbbb"), "half a daemon.json");
  const again = await VmStore.open(home);
  assert.deepEqual(await readdir(again.vmsDir), ["web"]);
  assert.ok(!(await readdir(home)).some((e) => e.startsWith(".tmp-")));
  assert.equal((await again.read("web")).name, "web");
});
