// The operation registry and its file journal with real files: records survive a new registry, the final
// record is on disk before a waiter is woken, old operations are pruned, unreadable records are skipped.
import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { HypervisorError } from "./hypervisor-error.ts";
import { FileOperationJournal, OperationRegistry } from "./operations.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function journalDir(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "tsvm-ops-"));
  roots.push(root);
  return join(root, "operations");
}

test("every status change is journaled; a new registry loads them and hands back the unfinished ones", async () => {
  const dir = await journalDir();
  const { journal } = await FileOperationJournal.open(dir);
  const reg = new OperationRegistry(undefined, { journal });
  const ok = reg.create("start", "web");
  const failed = reg.create("stop", "db");
  const pending = reg.create("reset", "web");
  await reg.run(ok, async () => {});
  await reg.run(failed, async () => {
    throw new HypervisorError("illegal-action", "cannot stop");
  });
  let release!: () => void;
  const running = reg.create("suspend", "db");
  const run = reg.run(running, () => new Promise<void>((r) => (release = r)));
  await running.saving;

  const onDisk = async (id: string) => JSON.parse(await readFile(join(dir, `${id}.json`), "utf8"));
  assert.equal((await onDisk(ok.id)).status, "DONE");
  assert.deepEqual((await onDisk(failed.id)).error, { code: "illegal-action", message: "cannot stop" });
  assert.equal((await onDisk(pending.id)).status, "PENDING");
  assert.equal((await onDisk(running.id)).status, "RUNNING");

  const loaded = await FileOperationJournal.open(dir);
  assert.deepEqual(loaded.unreadable, []);
  const again = new OperationRegistry(undefined, { journal: loaded.journal });
  const unfinished = again.load(loaded.views);
  assert.deepEqual(unfinished.map((o) => o.id).sort(), [pending.id, running.id].sort());
  assert.deepEqual(again.get(failed.id).view(), failed.view());
  assert.deepEqual(
    again.list().map((o) => o.id),
    [running.id, pending.id, failed.id, ok.id],
    "newest first, as before",
  );
  // A loaded DONE operation answers wait at once; an unfinished one when it is settled.
  const t0 = Date.now();
  await again.get(ok.id).waitDone(5000);
  assert.ok(Date.now() - t0 < 1000);
  const waiting = again.get(pending.id).waitDone(5000);
  await again.settle(again.get(pending.id), new HypervisorError("daemon-restarted", "restarted"));
  await waiting;
  assert.equal((await onDisk(pending.id)).error.code, "daemon-restarted");
  release();
  await run;
});

test("a waiter is woken only once the final record is on disk", async () => {
  const dir = await journalDir();
  const { journal } = await FileOperationJournal.open(dir);
  const reg = new OperationRegistry(undefined, { journal });
  const op = reg.create("insert", "web");
  const run = reg.run(op, async () => {});
  await op.waitDone(10_000);
  assert.equal(JSON.parse(await readFile(join(dir, `${op.id}.json`), "utf8")).status, "DONE");
  await run;
});

test("old operations are forgotten, in memory and on disk: beyond the count, and after a week", async () => {
  const dir = await journalDir();
  const { journal } = await FileOperationJournal.open(dir);
  let now = Date.parse("2026-01-01T00:00:00Z");
  const reg = new OperationRegistry(() => new Date(now), { journal, maxKept: 20 });
  const first = reg.create("start", "web");
  await reg.run(first, async () => {});
  const stillRunning = reg.create("stop", "web");
  void reg.run(stillRunning, () => new Promise(() => {}));
  for (let i = 0; i < 20; i++) {
    const op = reg.create("reset", "web");
    await reg.run(op, async () => {});
  }
  await reg.get(stillRunning.id).saving;
  assert.throws(() => reg.get(first.id), /was not found/);
  assert.equal(reg.get(stillRunning.id).status, "RUNNING", "an unfinished operation is never dropped");
  // Removals queue behind the evicted operations' own writes; give them a moment on a loaded machine.
  const jsonFiles = async () => (await readdir(dir)).filter((f) => f.endsWith(".json"));
  for (let t0 = Date.now(); (await jsonFiles()).length > 20 && Date.now() - t0 < 10_000; )
    await new Promise((r) => setTimeout(r, 50));
  const files = await jsonFiles();
  assert.equal(files.length, 20);
  assert.ok(!files.includes(`${first.id}.json`));

  now += 8 * 24 * 3600_000;
  const fresh = reg.create("start", "web");
  await reg.run(fresh, async () => {});
  assert.deepEqual(
    reg.list(5000).map((o) => o.id),
    [fresh.id, stillRunning.id],
    "a week later only the new and the unfinished remain",
  );
});

test("temp files are removed; unreadable records are reported and left as they are", async () => {
  const dir = await journalDir();
  const { journal } = await FileOperationJournal.open(dir);
  const reg = new OperationRegistry(undefined, { journal });
  const op = reg.create("start", "web");
  await reg.run(op, async () => {});
  await writeFile(join(dir, ".tmp-0123456789ab"), "half a reco");
  await writeFile(join(dir, "operation-1-deadbeef.json"), "{not json");
  await writeFile(
    join(dir, "operation-2-deadbeef.json"),
    JSON.stringify({ ...op.view(), id: "operation-2-deadbeef", status: "LOST" }),
  );
  await writeFile(join(dir, "notes.txt"), "not ours");
  const loaded = await FileOperationJournal.open(dir);
  assert.deepEqual(
    loaded.views.map((v) => v.id),
    [op.id],
  );
  assert.equal(loaded.unreadable.length, 2);
  assert.match(loaded.unreadable.join("\n"), /operation-2-deadbeef\.json: the field 'status'/);
  const left = await readdir(dir);
  assert.ok(!left.some((f) => f.startsWith(".tmp-")));
  assert.ok(left.includes("operation-1-deadbeef.json"), "never removed or overwritten");
});
