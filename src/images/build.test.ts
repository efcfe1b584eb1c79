import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  acquireBuildLock,
  buildImage,
  RECIPES_DIR,
  recipeHash,
  recipeNames,
  removeStaleBuilds,
} from "./build.ts";
import { ImageBuildError } from "./image-build-error.ts";

test("recipeHash changes with any recipe file or Debian version, and only then", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-recipe-"));
  try {
    writeFileSync(join(dir, "inittab"), "ttyS0::respawn:-/bin/sh\n");
    writeFileSync(join(dir, "linux.config"), "CONFIG_SMP=y\n");
    const versions = { "linux-source-6.1": "6.1.192-2", opensbi: "1.1-2" };
    const base = recipeHash(dir, versions);
    assert.match(base, /^[0-9a-f]{64}$/);
    assert.equal(recipeHash(dir, { opensbi: "1.1-2", "linux-source-6.1": "6.1.192-2" }), base);
    assert.notEqual(recipeHash(dir, { ...versions, opensbi: "1.2-1" }), base);
    writeFileSync(join(dir, "inittab"), "ttyS0::respawn:-/bin/ash\n");
    const changed = recipeHash(dir, versions);
    assert.notEqual(changed, base);
    writeFileSync(join(dir, "rcS"), "");
    assert.notEqual(recipeHash(dir, versions), changed, "a new recipe file counts too");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("the repository has the default recipe", () => {
  assert.ok(recipeNames().includes("default"), `no images/default in ${RECIPES_DIR}`);
});

test("buildImage refuses an unknown image name, including path tricks, before doing anything", async () => {
  for (const name of ["nope", "../default", "default/..", ""]) {
    await assert.rejects(buildImage(name, { cacheDir: "/nonexistent", onProgress: () => {} }), (err) => {
      assert.ok(err instanceof ImageBuildError);
      assert.equal(err.code, "IMAGE_UNKNOWN");
      assert.match(err.message, /unknown image .*available: .*default/);
      return true;
    });
  }
});

test("the build lock is exclusive while its holder lives, and taken over from a dead one", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-lock-"));
  try {
    const lock = join(dir, ".default-x.lock");
    const lines: string[] = [];
    await acquireBuildLock(lock, "default", (l) => lines.push(l));
    assert.equal(readFileSync(lock, "utf8"), String(process.pid));

    // Held by a live process: wait until it is gone, then take the lock.
    const holder = spawn("sleep", ["3"]);
    writeFileSync(lock, String(holder.pid));
    const started = Date.now();
    await acquireBuildLock(lock, "default", (l) => lines.push(l));
    assert.ok(Date.now() - started >= 2500, "must wait for the holder");
    assert.equal(readFileSync(lock, "utf8"), String(process.pid));
    assert.match(
      lines.join("\n"),
      new RegExp(`waiting for process ${holder.pid}, which is building image 'default'`),
    );

    // Left by a process that no longer exists: taken over at once.
    writeFileSync(lock, String(holder.pid));
    const again = Date.now();
    await acquireBuildLock(lock, "default", () => {});
    assert.ok(Date.now() - again < 1000);
    assert.equal(readFileSync(lock, "utf8"), String(process.pid));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("removeStaleBuilds drops only the temporary directories of dead builders", async () => {
  const cache = mkdtempSync(join(tmpdir(), "tsvm-stale-"));
  try {
    const gone = spawn("true");
    await new Promise((resolve) => gone.on("close", resolve));
    const dead = `${gone.pid}`;
    const live = `${process.pid}`;
    const dirs = {
      deadBuild: join(cache, `.default-0123.build-${dead}`),
      liveBuild: join(cache, `.default-0123.build-${live}`),
      image: join(cache, "default-0123"),
      deadPart: join(cache, ".parts", `linux-0123.tmp-${dead}`),
      part: join(cache, ".parts", "linux-0123"),
    };
    for (const dir of Object.values(dirs)) mkdirSync(dir, { recursive: true });
    removeStaleBuilds(cache);
    assert.equal(existsSync(dirs.deadBuild), false);
    assert.equal(existsSync(dirs.deadPart), false);
    assert.ok(existsSync(dirs.liveBuild) && existsSync(dirs.image) && existsSync(dirs.part));
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
