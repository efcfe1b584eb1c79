import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { createQcow2, hasOwnData } from "./index.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

test("hasOwnData: false only for an overlay nothing wrote; a write or a zeroed range (qemu-io) makes it true", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-own-data-"));
  roots.push(dir);
  await writeFile(join(dir, "base.raw"), Buffer.alloc(4 << 20, 5));
  const overlay = join(dir, "top.qcow2");
  await createQcow2(overlay, { sizeBytes: 4 << 20, backing: { name: "base.raw", format: "raw" } });
  assert.equal(await hasOwnData(overlay), false);
  assert.equal(await hasOwnData(join(dir, "base.raw")), true, "a raw image holds its data");
  await createQcow2(join(dir, "alone.qcow2"), { sizeBytes: 4 << 20 });
  assert.equal(await hasOwnData(join(dir, "alone.qcow2")), true, "without a backing file it is the data");
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -P 0xaa 3M 4k", overlay], { stdio: "ignore" });
  assert.equal(await hasOwnData(overlay), true);
  const zeroed = join(dir, "zeroed.qcow2");
  await createQcow2(zeroed, { sizeBytes: 4 << 20, backing: { name: "base.raw", format: "raw" } });
  execFileSync("qemu-io", ["-f", "qcow2", "-c", "write -z 0 64k", zeroed], { stdio: "ignore" });
  assert.equal(await hasOwnData(zeroed), true, "zero clusters hide the backing's data: they are its own");
});
