import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { IMAGE_MANIFEST, type ImageInfo, type ImageManifest } from "../images/image-store.ts";

const tsvm = resolve(dirname(fileURLToPath(import.meta.url)), "../../bin/tsvm");

function run(args: string[], cache: string) {
  const r = spawnSync(tsvm, args, { env: { ...process.env, TSVM_CACHE: cache }, encoding: "utf8" });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("tsvm image list shows the cached images as a table and as JSON ImageInfo", () => {
  const cache = mkdtempSync(join(tmpdir(), "tsvm-cli-image-"));
  try {
    assert.match(run(["image", "list"], cache).stdout, /^no images in .*tsvm image build/);
    assert.equal(run(["image", "list", "--format", "json"], cache).stdout, "[]\n");

    const dir = join(cache, "images", "default-0123456789abcdef");
    mkdirSync(dir, { recursive: true });
    for (const file of ["Image", "initrd.cpio", "disk.ext4", "fw_dynamic.bin"])
      writeFileSync(join(dir, file), "");
    const manifest: ImageManifest = {
      name: "default",
      kernel: "Image",
      initrd: "initrd.cpio",
      disk: "disk.ext4",
      firmware: "fw_dynamic.bin",
      builtAt: "2026-11-25T18:00:00.000Z",
      recipeHash: `0123456789abcdef${"0".repeat(48)}`,
      buildSeconds: 1,
      versions: {},
    };
    writeFileSync(join(dir, IMAGE_MANIFEST), JSON.stringify(manifest));

    const json = run(["image", "list", "--format=json"], cache);
    assert.equal(json.status, 0);
    const images = JSON.parse(json.stdout) as ImageInfo[];
    assert.deepEqual(images, [
      {
        name: "default",
        dir,
        kernel: join(dir, "Image"),
        initrd: join(dir, "initrd.cpio"),
        disk: join(dir, "disk.ext4"),
        firmware: join(dir, "fw_dynamic.bin"),
        builtAt: manifest.builtAt,
        recipeHash: manifest.recipeHash,
      },
    ]);
    const table = run(["image", "list"], cache).stdout.split("\n");
    assert.match(table[0]!, /^NAME +HASH +BUILT +DIR$/);
    assert.match(table[1]!, /^default +0123456789abcdef +2026-11-25T18:00:00Z +\//);
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});

test("tsvm image rejects bad arguments with one error line and exit status 2", () => {
  const cache = mkdtempSync(join(tmpdir(), "tsvm-cli-image-"));
  try {
    for (const args of [
      ["image"],
      ["image", "frob"],
      ["image", "list", "--format", "xml"],
      ["image", "list", "--format"],
      ["image", "list", "extra"],
      ["image", "build", "nope"],
      ["image", "build", "default", "second"],
      ["image", "build", "--fast"],
    ]) {
      const r = run(args, cache);
      assert.equal(r.status, 2, `${args.join(" ")}: ${r.stderr}`);
      assert.equal(r.stdout, "");
      assert.equal(r.stderr.trim().split("\n").length, 1, `${args.join(" ")}: ${r.stderr}`);
      assert.match(r.stderr, /^tsvm image: /);
    }
    for (const args of [
      ["image", "--help"],
      ["image", "build", "--help"],
      ["image", "list", "-h"],
    ]) {
      const r = run(args, cache);
      assert.equal(r.status, 0);
      assert.match(r.stdout, /^Usage: tsvm image/);
    }
  } finally {
    rmSync(cache, { recursive: true, force: true });
  }
});
