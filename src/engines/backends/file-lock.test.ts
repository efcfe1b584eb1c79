// The kernel file lock with real files and processes: one holder at a time, the holder named from
// /proc/locks, and the lock gone with its holder however it ends.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { describeHolder, FileLock, lockHolders } from "./file-lock.ts";

const dirs: string[] = [];
after(async () => {
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

async function lockPath(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-lock-"));
  dirs.push(dir);
  return join(dir, "x.lock");
}

test("one holder at a time, named by pid; released, it can be taken again", async () => {
  const path = await lockPath();
  assert.deepEqual(lockHolders(path), [], "no file, no holder");
  const a = FileLock.tryTake(path, { create: true });
  assert.ok(a);
  // A second open file, even in the same process, is a second contender.
  assert.equal(FileLock.tryTake(path, { create: true }), undefined);
  assert.deepEqual(lockHolders(path), [process.pid]);
  assert.equal(describeHolder(path), `held by pid ${process.pid}`);
  a.release();
  assert.deepEqual(lockHolders(path), []);
  const b = FileLock.tryTake(path);
  assert.ok(b, "free again once released");
  b.release();
  assert.throws(() => FileLock.tryTake(join(path, "..", "missing")), { code: "ENOENT" });
});

test("a holder killed with SIGKILL leaves the lock free, though its file stays", async () => {
  const path = await lockPath();
  const script = `import { FileLock } from ${JSON.stringify(join(import.meta.dirname, "file-lock.ts"))};
    FileLock.tryTake(${JSON.stringify(path)}, { create: true }); process.stdout.write("held\\n"); setInterval(() => {}, 1000);`;
  const child = spawn(
    process.execPath,
    [
      "--import",
      `file://${join(import.meta.dirname, "../../../node_modules/tsx/dist/loader.mjs")}`,
      "--input-type=module",
      "-e",
      script,
    ],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  await new Promise((resolve) => child.stdout!.once("data", resolve));
  assert.deepEqual(lockHolders(path), [child.pid]);
  assert.equal(FileLock.tryTake(path), undefined);
  child.kill("SIGKILL");
  await new Promise((resolve) => child.once("exit", resolve));
  const lock = FileLock.tryTake(path);
  assert.ok(lock, "the kernel dropped the dead holder's lock");
  lock.release();
});
