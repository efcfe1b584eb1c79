import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { skipUnless } from "../../../../tests/skip-unless.ts";
import { convertDisk, createQcow2, openDisk, readDiskInfo } from "./index.ts";

const skip = skipUnless(
  spawnSync("qemu-img", ["--version"]).status === 0 && spawnSync("mke2fs", ["-V"]).status === 0,
  "qemu-img (qemu-utils) or mke2fs (e2fsprogs) is not installed",
);
const dir = mkdtempSync(join(tmpdir(), "tsvm-qcow2-convert-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;

function run(cmd: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

test("convertDisk turns a raw 64 MiB ext4 disk into a compact qcow2 that qemu-img compares equal", {
  skip,
}, async () => {
  const files = join(dir, "tree");
  mkdirSync(join(files, "etc"), { recursive: true });
  for (let i = 0; i < 40; i++) {
    const b = new Uint8Array(20_000 + i * 3000);
    for (let k = 0; k < b.length; k++) b[k] = (k * (i + 3)) & 0xff;
    writeFileSync(join(files, i % 2 ? "etc" : "", `f${i}`), b);
  }
  const raw = join(dir, "disk.ext4");
  const mk = run("mke2fs", "-q", "-F", "-t", "ext4", "-d", files, raw, "64M");
  assert.equal(mk.status, 0, mk.out);
  const out = join(dir, "disk.qcow2");
  await convertDisk(raw, out, { format: "qcow2" });
  assert.equal(run("qemu-img", "check", out).status, 0);
  const cmp = run("qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, out);
  assert.equal(cmp.status, 0, cmp.out);
  assert.deepEqual(await readDiskInfo(out), { format: "qcow2", virtualSize: 64 * MiB, backing: null });
  // Only clusters holding data are stored: the filesystem's few MiB, not its 64.
  const stored = statSync(out).size;
  assert.ok(stored < 16 * MiB, `${stored} bytes stored for a 64 MiB disk with ~2 MiB of files`);
  await assert.rejects(convertDisk(raw, out, { format: "qcow2" }), { code: "disk-exists" });
  assert.deepEqual(
    readdirSync(dir).filter((f) => f.endsWith(".tmp")),
    [],
    "no temporary file left",
  );
});

test("convertDisk flattens a backing chain into one standalone file", { skip }, async () => {
  const base = join(dir, "base.raw");
  const b = new Uint8Array(4 * MiB);
  for (let k = 0; k < b.length; k += 4096) b[k] = 1 + ((k >> 12) % 250);
  writeFileSync(base, b);
  const top = join(dir, "top.qcow2");
  await createQcow2(top, { sizeBytes: 6 * MiB, backing: { name: "base.raw", format: "raw" } });
  const d = await openDisk(top);
  await new Promise<void>((resolve, reject) =>
    d.write(MiB + 512, new Uint8Array(70_000 - (70_000 % 512)).fill(0xee), (e) =>
      e ? reject(new Error(e)) : resolve(),
    ),
  );
  await new Promise<void>((resolve, reject) =>
    d.writeZeroes(2 * MiB, MiB, true, (e) => (e ? reject(new Error(e)) : resolve())),
  );
  await d.close();
  const flat = join(dir, "flat.qcow2");
  await convertDisk(top, flat, { format: "qcow2" });
  assert.equal((await readDiskInfo(flat)).backing, null);
  assert.equal(run("qemu-img", "check", flat).status, 0);
  const cmp = run("qemu-img", "compare", top, flat);
  assert.equal(cmp.status, 0, cmp.out);
});

test("convertDisk skips what no layer holds: a 100 GiB sparse qcow2 converts in seconds", {
  skip,
}, async () => {
  const src = join(dir, "sparse.qcow2");
  const GiB = 1024 * MiB;
  await createQcow2(src, { sizeBytes: 100 * GiB });
  const d = await openDisk(src);
  for (const off of [0, 50 * GiB + 3 * 65536, 100 * GiB - MiB])
    await new Promise<void>((resolve, reject) =>
      d.write(off, new Uint8Array(MiB).fill(0x3c), (e) => (e ? reject(new Error(e)) : resolve())),
    );
  await d.close();
  const out = join(dir, "sparse-flat.qcow2");
  const started = performance.now();
  await convertDisk(src, out, { format: "qcow2" });
  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds < 30, `took ${seconds.toFixed(1)} s`);
  const cmp = run("qemu-img", "compare", src, out);
  assert.equal(cmp.status, 0, cmp.out);
  assert.ok(statSync(out).size < 8 * MiB);
});
