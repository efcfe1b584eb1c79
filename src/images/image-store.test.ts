import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import {
  copyDiskFor,
  findImage,
  IMAGE_MANIFEST,
  type ImageManifest,
  imageDirName,
  imagesCacheDir,
  listImages,
} from "./image-store.ts";

function fakeImage(cacheDir: string, name: string, hash: string, builtAt: string, complete = true): string {
  const dir = join(cacheDir, imageDirName(name, hash));
  mkdirSync(dir, { recursive: true });
  for (const file of ["Image", "initrd.cpio", "fw_dynamic.bin"]) writeFileSync(join(dir, file), file);
  writeFileSync(join(dir, "disk.ext4"), "pristine", { mode: 0o444 });
  const manifest: ImageManifest = {
    name,
    kernel: "Image",
    initrd: "initrd.cpio",
    disk: "disk.ext4",
    firmware: "fw_dynamic.bin",
    builtAt,
    recipeHash: hash,
    buildSeconds: 1,
    versions: {},
  };
  if (complete) writeFileSync(join(dir, IMAGE_MANIFEST), JSON.stringify(manifest));
  return dir;
}

test("imagesCacheDir honours TSVM_CACHE, then XDG_CACHE_HOME", () => {
  assert.equal(imagesCacheDir({ TSVM_CACHE: "/c/t", XDG_CACHE_HOME: "/x" }), "/c/t/images");
  assert.equal(imagesCacheDir({ XDG_CACHE_HOME: "/x" }), "/x/tsvm/images");
  assert.match(imagesCacheDir({}), /\/\.cache\/tsvm\/images$/);
});

test("listImages returns complete images newest first with absolute paths; findImage the newest by name", () => {
  const cacheDir = mkdtempSync(join(tmpdir(), "tsvm-images-"));
  try {
    assert.deepEqual(listImages(join(cacheDir, "missing")), []);
    const old = fakeImage(cacheDir, "default", "a".repeat(64), "2026-01-01T00:00:00.000Z");
    const recent = fakeImage(cacheDir, "default", "b".repeat(64), "2026-02-01T00:00:00.000Z");
    fakeImage(cacheDir, "default", "c".repeat(64), "2026-03-01T00:00:00.000Z", false);
    fakeImage(cacheDir, ".default-tmp", "d".repeat(64), "2026-04-01T00:00:00.000Z");
    const images = listImages(cacheDir);
    assert.deepEqual(
      images.map((i) => i.dir),
      [recent, old],
    );
    assert.equal(images[0]!.kernel, join(recent, "Image"));
    assert.equal(images[0]!.recipeHash, "b".repeat(64));
    assert.equal(findImage("default", cacheDir)?.dir, recent);
    assert.equal(findImage("other", cacheDir), undefined);
    rmSync(join(recent, "initrd.cpio"));
    assert.equal(findImage("default", cacheDir)?.dir, old, "an image missing a file is not an image");
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});

test("copyDiskFor makes a writable copy and leaves the template alone", () => {
  const cacheDir = mkdtempSync(join(tmpdir(), "tsvm-images-"));
  try {
    fakeImage(cacheDir, "default", "e".repeat(64), "2026-01-01T00:00:00.000Z");
    const image = findImage("default", cacheDir)!;
    const copy = copyDiskFor(image, join(cacheDir, "vm-disk.raw"));
    assert.equal(statSync(copy).mode & 0o200, 0o200);
    writeFileSync(copy, "changed");
    assert.equal(readFileSync(image.disk, "utf8"), "pristine");
  } finally {
    rmSync(cacheDir, { recursive: true, force: true });
  }
});
