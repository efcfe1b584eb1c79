import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import type { DiskBackend } from "./disk-backend.ts";
import { createQcow2, diskChain, openDisk, readDiskInfo, setBacking } from "./index.ts";

const dir = mkdtempSync(join(tmpdir(), "tsvm-qcow2-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const at = (name: string) => join(dir, name);
const MiB = 1024 * 1024;

function run(cmd: string, ...args: string[]): { status: number | null; out: string } {
  const r = spawnSync(cmd, args, { encoding: "utf8" });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function qemuCheck(path: string): void {
  const r = run("qemu-img", "check", path);
  assert.equal(r.status, 0, `qemu-img check ${path}:\n${r.out}`);
}

function qemuRaw(path: string): Uint8Array {
  const out = `${path}.raw`;
  rmSync(out, { force: true });
  const r = run("qemu-img", "convert", "-O", "raw", path, out);
  assert.equal(r.status, 0, r.out);
  const bytes = new Uint8Array(readFileSync(out));
  rmSync(out);
  return bytes;
}

const call = (f: (done: (e: string | null) => void) => void): Promise<void> =>
  new Promise((resolve, reject) => f((e) => (e === null ? resolve() : reject(new Error(e)))));
async function read(d: DiskBackend, off: number, len: number): Promise<Uint8Array> {
  const b = new Uint8Array(len);
  await call((done) => d.read(off, b, done));
  return b;
}

/** A small seeded generator (xorshift32), so a failing run can be replayed. */
function rng(seed: number): (n: number) => number {
  let s = seed >>> 0 || 1;
  return (n) => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s % n;
  };
}

function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

test("a new qcow2 passes qemu-img check, and qemu-img info shows the chain we wrote", async () => {
  await createQcow2(at("base.qcow2"), { sizeBytes: 32 * MiB });
  await createQcow2(at("mid.qcow2"), {
    sizeBytes: 32 * MiB,
    backing: { name: "base.qcow2", format: "qcow2" },
  });
  await createQcow2(at("top.qcow2"), {
    sizeBytes: 48 * MiB,
    backing: { name: "mid.qcow2", format: "qcow2" },
  });
  for (const f of ["base.qcow2", "mid.qcow2", "top.qcow2"]) qemuCheck(at(f));
  const info = run("qemu-img", "info", "--backing-chain", "--output=json", at("top.qcow2"));
  assert.equal(info.status, 0, info.out);
  const chain = JSON.parse(info.out) as Array<{
    filename: string;
    "virtual-size": number;
    "backing-filename"?: string;
  }>;
  assert.deepEqual(
    chain.map((c) => [c.filename, c["virtual-size"], c["backing-filename"] ?? null]),
    [
      [at("top.qcow2"), 48 * MiB, "mid.qcow2"],
      [at("mid.qcow2"), 32 * MiB, "base.qcow2"],
      [at("base.qcow2"), 32 * MiB, null],
    ],
  );
  assert.deepEqual(await readDiskInfo(at("top.qcow2")), {
    format: "qcow2",
    virtualSize: 48 * MiB,
    backing: { name: "mid.qcow2", path: at("mid.qcow2"), format: "qcow2" },
  });
  assert.deepEqual(await diskChain(at("top.qcow2")), [
    { path: at("top.qcow2"), format: "qcow2", virtualSize: 48 * MiB },
    { path: at("mid.qcow2"), format: "qcow2", virtualSize: 32 * MiB },
    { path: at("base.qcow2"), format: "qcow2", virtualSize: 32 * MiB },
  ]);
  await assert.rejects(createQcow2(at("top.qcow2"), { sizeBytes: MiB }), { code: "disk-exists" });
});

test("random writes, discards and zeroing over a backing chain match a model and qemu-img's reading", async () => {
  const size = 12 * MiB;
  const baseBytes = fill(8 * MiB, 3); // shorter than the overlay: the rest reads as zeros
  writeFileSync(at("rbase.raw"), baseBytes);
  await createQcow2(at("rmid.qcow2"), { sizeBytes: size, backing: { name: "rbase.raw", format: "raw" } });
  const model = new Uint8Array(size);
  model.set(baseBytes);
  let disk = await openDisk(at("rmid.qcow2"));
  await call((d) => disk.write(MiB, fill(3 * 65536 + 1024, 5), d));
  model.set(fill(3 * 65536 + 1024, 5), MiB);
  await disk.close();
  await createQcow2(at("rtop.qcow2"), { sizeBytes: size, backing: { name: "rmid.qcow2", format: "qcow2" } });
  disk = await openDisk(at("rtop.qcow2"));
  assert.equal(disk.sizeBytes, size);
  const next = rng(42);
  for (let i = 0; i < 400; i++) {
    const sectors = size / 512;
    const off = next(sectors) * 512;
    const len = Math.min(size - off, (1 + next(i % 10 === 0 ? 600 : 40)) * 512);
    const op = next(10);
    if (op < 6) {
      const data = fill(len, i);
      await call((d) => disk.write(off, data, d));
      model.set(data, off);
    } else if (op < 8) {
      const unmap = op === 7;
      await call((d) => disk.writeZeroes(off, len, unmap, d));
      model.fill(0, off, off + len);
    } else if (op === 8) {
      await call((d) => disk.discard(off, len, d));
      // Whole clusters read as zeros afterwards (no backing data shows through); the rest is unchanged.
      const first = Math.ceil(off / 65536) * 65536;
      const last = Math.floor((off + len) / 65536) * 65536;
      if (last > first) model.fill(0, first, last);
    } else {
      await call((d) => disk.flush(d));
    }
    if (i % 20 === 0) {
      const r = next(sectors - 256) * 512;
      assert.deepEqual(
        await read(disk, r, 128 * 1024),
        model.subarray(r, r + 128 * 1024),
        `read at ${r}, step ${i}`,
      );
    }
  }
  assert.deepEqual(await read(disk, 0, size), model);
  await disk.close();
  qemuCheck(at("rtop.qcow2"));
  assert.deepEqual(qemuRaw(at("rtop.qcow2")), model);
  disk = await openDisk(at("rtop.qcow2"), { readOnly: true });
  assert.deepEqual(await read(disk, 0, size), model, "reopened");
  await disk.close();
});

test("a chain made by qemu-img and written by qemu-io reads correctly through openDisk", async () => {
  const base = at("q-base.qcow2");
  const top = at("q-top.qcow2");
  assert.equal(run("qemu-img", "create", "-f", "qcow2", base, "16M").status, 0);
  assert.equal(run("qemu-io", "-c", "write -P 0xab 0 64k", "-c", "write -P 0xcd 1M 100k", base).status, 0);
  assert.equal(run("qemu-img", "create", "-f", "qcow2", "-b", "q-base.qcow2", "-F", "qcow2", top).status, 0);
  assert.equal(run("qemu-io", "-c", "write -P 0x11 4k 4k", "-c", "write -z 1M 64k", top).status, 0);
  const disk = await openDisk(top);
  const want = new Uint8Array(16 * MiB);
  want.fill(0xab, 0, 65536);
  want.fill(0xcd, MiB, MiB + 100 * 1024);
  want.fill(0x11, 4096, 8192);
  want.fill(0, MiB, MiB + 65536);
  assert.deepEqual(await read(disk, 0, 16 * MiB), want);
  await call((d) => disk.write(MiB + 65536, fill(4096, 9), d));
  want.set(fill(4096, 9), MiB + 65536);
  await disk.close();
  qemuCheck(top);
  assert.deepEqual(qemuRaw(top), want);
});

test("setBacking renames the backing file like qemu-img rebase -u", async () => {
  writeFileSync(at("sb1.raw"), fill(MiB, 1));
  writeFileSync(at("sb2.raw"), fill(MiB, 2));
  await createQcow2(at("sb.qcow2"), { sizeBytes: MiB, backing: { name: "sb1.raw", format: "raw" } });
  await setBacking(at("sb.qcow2"), { name: "sb2.raw", format: "raw" });
  qemuCheck(at("sb.qcow2"));
  assert.deepEqual(qemuRaw(at("sb.qcow2")), fill(MiB, 2));
  await setBacking(at("sb.qcow2"), null);
  assert.equal((await readDiskInfo(at("sb.qcow2"))).backing, null);
  assert.deepEqual(qemuRaw(at("sb.qcow2")), new Uint8Array(MiB));
});
