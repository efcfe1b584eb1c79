// The host's extraction of a copy out of a VM, discarded while tar is still writing the files it was
// given: nothing may appear in the destination's directory afterwards (tar's writes finish first).
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { create as createTar } from "tar";
import { hostDestination, hostExtraction } from "./cp-host-files.ts";

test("an extraction discarded mid-way leaves nothing, also from writes tar still had in flight", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-cp-host-"));
  try {
    const src = join(dir, "src", "tree");
    await mkdir(src, { recursive: true });
    for (let i = 0; i < 200; i++) await writeFile(join(src, `f${i}`), randomBytes(64 * 1024));
    const chunks: Buffer[] = [];
    for await (const chunk of createTar({ cwd: join(dir, "src"), portable: true }, ["tree"]))
      chunks.push(chunk as Buffer);
    const archive = Buffer.concat(chunks);
    const out = join(dir, "out");
    await mkdir(out);
    for (let round = 0; round < 5; round++) {
      const extraction = await hostExtraction(await hostDestination(join(out, "tree"), "tree"));
      // Most of the archive, cut mid-file as a failed guest tar would leave it, not awaited.
      void extraction.write(archive.subarray(0, archive.length - 100_000));
      await extraction.discard();
      await new Promise((r) => setTimeout(r, 200));
      assert.deepEqual(await readdir(out), [], `round ${round}`);
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
