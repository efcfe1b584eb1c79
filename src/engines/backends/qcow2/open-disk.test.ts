import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { skipUnless } from "../../../../tests/skip-unless.ts";
import type { DiskBackend } from "./disk-backend.ts";
import { seededRandom } from "./fixtures/seeded-random.ts";
import { createQcow2, diskChain, openDisk, readDiskInfo, setBacking } from "./index.ts";

const skip = skipUnless(
  spawnSync("qemu-img", ["--version"]).status === 0 && spawnSync("qemu-io", ["--version"]).status === 0,
  "qemu-img and qemu-io (qemu-utils) are not installed",
);
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

const rng = seededRandom;

function fill(len: number, seed: number): Uint8Array {
  const b = new Uint8Array(len);
  for (let i = 0; i < len; i++) b[i] = (i * 31 + seed * 7 + (i >> 9)) & 0xff;
  return b;
}

test("a new qcow2 passes qemu-img check, and qemu-img info shows the chain we wrote", { skip }, async () => {
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

test("random writes, discards and zeroing over a backing chain match a model and qemu-img's reading", {
  skip,
}, async () => {
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

test("a chain made by qemu-img and written by qemu-io reads correctly through openDisk", {
  skip,
}, async () => {
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

test("setBacking renames the backing file like qemu-img rebase -u", { skip }, async () => {
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

test("qemu-made disks with other cluster sizes and refcount widths are written correctly, growing the refcount table", {
  skip,
}, async () => {
  const cases: Array<[number, number, number, boolean]> = [
    [512, 16, 10 * MiB, true], // a 1-cluster refcount table covers 8 MiB: the table must grow
    [1024, 64, 20 * MiB, true], // 64-bit refcounts; 16 MiB covered at first
    [4096, 1, 6 * MiB, false], // 1-bit refcounts, packed from the low bit
    [2 * MiB, 2, 8 * MiB, false], // 2-bit refcounts, huge clusters
  ];
  const refcountTable = (p: string) => readFileSync(p).subarray(48, 60).toString("hex");
  for (const [clusterSize, refcountBits, written, grows] of cases) {
    const p = at(`q-${clusterSize}-${refcountBits}.qcow2`);
    const made = run(
      "qemu-img",
      "create",
      "-f",
      "qcow2",
      "-o",
      `cluster_size=${clusterSize},refcount_bits=${refcountBits}`,
      p,
      "32M",
    );
    assert.equal(made.status, 0, made.out);
    const model = new Uint8Array(32 * MiB);
    const tableBefore = refcountTable(p);
    const d = await openDisk(p);
    const next = rng(clusterSize);
    for (let done = 0; done < written; ) {
      const len = (1 + next(256)) * 512;
      const off = next((32 * MiB - len) / 512) * 512;
      const data = fill(len, done);
      await call((cb) => d.write(off, data, cb));
      model.set(data, off);
      done += len;
    }
    await call((cb) => d.writeZeroes(MiB, 3 * MiB, true, cb));
    model.fill(0, MiB, 4 * MiB);
    await call((cb) => d.flush(cb));
    assert.deepEqual(await read(d, 0, 32 * MiB), model);
    await d.close();
    assert.equal(refcountTable(p) !== tableBefore, grows, "the refcount table moved (grew)");
    qemuCheck(p);
    assert.deepEqual(qemuRaw(p), model, `cluster ${clusterSize}, refcount_bits ${refcountBits}`);
  }
});

test("compressed clusters (qemu-img convert -c) read correctly, and writing over them copies them out", {
  skip,
}, async () => {
  const src = at("c-src.raw");
  const content = new Uint8Array(8 * MiB);
  for (let k = 0; k < content.length; k += 512) content.fill((k >> 9) % 7, k, k + 300);
  writeFileSync(src, content);
  const p = at("c.qcow2");
  assert.equal(run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", src, p).status, 0);
  const info = run("qemu-img", "check", p);
  assert.match(info.out, /compressed clusters/);
  const d = await openDisk(p);
  assert.deepEqual(await read(d, 0, 8 * MiB), content);
  const data = fill(4096, 77);
  await call((cb) => d.write(65536 + 512, data, cb));
  content.set(data, 65536 + 512);
  await call((cb) => d.writeZeroes(4 * MiB, MiB, true, cb));
  content.fill(0, 4 * MiB, 5 * MiB);
  assert.deepEqual(await read(d, 0, 8 * MiB), content);
  await d.close();
  qemuCheck(p);
  assert.deepEqual(qemuRaw(p), content);
});

test("many requests in flight at once, to the same new clusters, are serialized correctly", {
  skip,
}, async () => {
  const p = at("conc.qcow2");
  writeFileSync(at("conc-base.raw"), fill(4 * MiB, 8));
  await createQcow2(p, { sizeBytes: 4 * MiB, backing: { name: "conc-base.raw", format: "raw" } });
  const model = fill(4 * MiB, 8);
  const d = await openDisk(p);
  const next = rng(99);
  for (let round = 0; round < 8; round++) {
    const pending: Array<Promise<void>> = [];
    const claimed = new Set<number>();
    for (let k = 0; k < 64; k++) {
      // Distinct sectors of a few clusters, so the writes do not overlap but do share clusters.
      const sector = next(4 * 128) + round * 1024;
      if (claimed.has(sector)) continue;
      claimed.add(sector);
      const data = fill(512, round * 100 + k);
      model.set(data, sector * 512);
      pending.push(call((cb) => d.write(sector * 512, data, cb)));
      if (k % 8 === 0) pending.push(call((cb) => d.flush(cb)));
    }
    const far = (round + 1) * 256 * 1024 + 3 * MiB - 256 * 1024;
    if (far + 65536 <= 4 * MiB && round % 2 === 0) {
      pending.push(call((cb) => d.writeZeroes(far, 65536, round % 4 === 0, cb)));
      model.fill(0, far, far + 65536);
    }
    await Promise.all(pending);
  }
  assert.deepEqual(await read(d, 0, 4 * MiB), model);
  await d.close();
  qemuCheck(p);
  assert.deepEqual(qemuRaw(p), model);
});

test("discarding and zeroing a whole 4 GiB disk rewrites its L2 tables in a few writes, not one per cluster", {
  skip,
}, async () => {
  const GiB = 1024 * MiB;
  const p = at("big.qcow2");
  await createQcow2(p, { sizeBytes: 4 * GiB });
  const d = await openDisk(p);
  for (let k = 0; k < 64; k++) await call((cb) => d.write(k * 64 * MiB + k * 4096, fill(8192, k), cb));
  const started = performance.now();
  await call((cb) => d.writeZeroes(0, 2 * GiB, false, cb));
  await call((cb) => d.discard(2 * GiB, 2 * GiB, cb));
  await call((cb) => d.flush(cb));
  const seconds = (performance.now() - started) / 1000;
  assert.ok(seconds < 5, `took ${seconds.toFixed(1)} s`);
  for (let k = 0; k < 64; k++)
    assert.deepEqual(await read(d, k * 64 * MiB, 65536), new Uint8Array(65536), `cluster of write ${k}`);
  await d.close();
  qemuCheck(p);
  const map = run("qemu-img", "map", "--output=json", p);
  const extents = JSON.parse(map.out) as Array<{
    start: number;
    length: number;
    data: boolean;
    zero: boolean;
  }>;
  assert.ok(
    extents.every((e) => e.zero && !(e.data && e.start >= 2 * GiB)),
    "all reads as zeros, and nothing past 2 GiB holds data",
  );
});

test("requests in flight over more L2 tables than the cache holds (80 of 64) keep every write and allocate each cluster once", {
  skip,
}, async () => {
  const GiB = 1024 * MiB;
  const p = at("tables.qcow2");
  await createQcow2(p, { sizeBytes: 40 * GiB });
  const d = await openDisk(p);
  const span = 512 * MiB; // what one L2 table maps
  const written = new Map<number, number>();
  const next = rng(7);
  for (let round = 0; round < 6; round++) {
    const pending: Array<Promise<void>> = [];
    for (let k = 0; k < 300; k++) {
      const table = next(80);
      const off = table * span + next(span / 65536) * 65536 + 512 * next(100);
      if (k % 2 === 0) pending.push(call((cb) => d.read(off, new Uint8Array(512), cb)));
      else if (!written.has(off)) {
        written.set(off, round * 1000 + k);
        pending.push(call((cb) => d.write(off, fill(512, round * 1000 + k), cb)));
      }
    }
    await Promise.all(pending);
  }
  await d.close();
  qemuCheck(p); // a cluster allocated twice would show as a leak
  const again = await openDisk(p, { readOnly: true });
  for (const [off, seed] of written)
    assert.deepEqual(await read(again, off, 512), fill(512, seed), `at ${off}`);
  await again.close();
});

test("a qcow2 version 2 file (compat=0.10) reads correctly, and is refused for writing", {
  skip,
}, async () => {
  const p = at("v2.qcow2");
  assert.equal(run("qemu-img", "create", "-f", "qcow2", "-o", "compat=0.10", p, "4M").status, 0);
  assert.equal(run("qemu-io", "-c", "write -P 0x5e 64k 8k", p).status, 0);
  const d = await openDisk(p, { readOnly: true });
  const want = new Uint8Array(4 * MiB);
  want.fill(0x5e, 65536, 65536 + 8192);
  assert.deepEqual(await read(d, 0, 4 * MiB), want);
  await d.close();
  await assert.rejects(openDisk(p), {
    code: "bad-disk-image",
    message: /version 2, which tsvm opens only read-only/,
  });
});
