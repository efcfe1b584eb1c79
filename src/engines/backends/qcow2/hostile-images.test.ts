import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DiskFile } from "./disk-file.ts";
import { badImage, oneClusterImage, patch, u32, u64 } from "./fixtures/image-bytes.ts";
import { createQcow2, diskChain, openDisk, Qcow2Error, readDiskInfo } from "./index.ts";
import { probeDisk } from "./probe-disk.ts";
import { Qcow2Refcounts } from "./qcow2-refcounts.ts";

const dir = mkdtempSync(join(tmpdir(), "tsvm-qcow2-hostile-"));
after(() => rmSync(dir, { recursive: true, force: true }));
const MiB = 1024 * 1024;
let n = 0;

const call = (f: (done: (e: string | null) => void) => void) =>
  new Promise<string | null>((resolve) => f(resolve));

/** A fresh 64 MiB qcow2 holding one data cluster at guest offset 0. */
const image = () => oneClusterImage(join(dir, `img${n++}.qcow2`), 64 * MiB);

async function refused(path: string, problem: RegExp): Promise<void> {
  for (const attempt of [
    () => openDisk(path),
    () => openDisk(path, { readOnly: true }),
    () => readDiskInfo(path),
  ]) {
    await assert.rejects(attempt(), badImage(path, problem));
  }
}

const headerCases: Array<[string, number, number[], RegExp]> = [
  ["unknown incompatible feature bits", 72 + 4, u32(1 << 5), /unknown incompatible features \(0x20\)/],
  ["high incompatible feature bits", 72, u32(1), /unknown incompatible features/],
  ["encryption", 32, u32(1), /encrypted/],
  ["an external data file", 76, u32(1 << 2), /external data file/],
  ["extended L2 entries", 76, u32(1 << 4), /extended L2/],
  ["zstd compression", 104, [1], /compression type 1/],
  ["cluster_bits 8", 20, u32(8), /cluster_bits 8 is outside 9\.\.21/],
  ["cluster_bits 22", 20, u32(22), /cluster_bits 22 is outside 9\.\.21/],
  ["an L1 table far larger than the disk needs", 36, u32(1_000_000), /L1 table of 1000000 entries is larger/],
  ["an L1 table beyond the end of the file", 40, u64(2 ** 40), /L1 table lies beyond the end of the file/],
  ["an unaligned L1 table", 40, u64(3 * 65536 + 8), /L1 table offset .* not cluster-aligned/],
  ["an L1 table too small", 36, u32(0), /L1 table of 0 entries is too small/],
  ["refcount_order 7", 96, u32(7), /refcount_order 7 is larger than 6/],
  ["a refcount table beyond the end of the file", 48, u64(2 ** 30), /refcount table lies beyond the end/],
  ["a huge refcount table", 56, u32(1000), /refcount table of 1000 clusters is larger than 8 MiB/],
  ["a virtual size over 2 TiB", 24, u64(4 * 2 ** 40), /larger than the 2 TiB limit/],
  ["an absurd virtual size", 24, u64(2 ** 62), /virtual size is too large/],
  ["a backing name of 1024 bytes", 8, [...u64(512), ...u32(1024)], /backing file name of 1024 bytes/],
  [
    "a backing name outside the header cluster",
    8,
    [...u64(65530), ...u32(100)],
    /outside the header cluster/,
  ],
  ["version 4", 4, u32(4), /version 4 is not supported/],
  ["no QFI magic", 0, [0x51, 0x46, 0x49, 0xfa], /./],
];

for (const [what, offset, bytes, problem] of headerCases) {
  test(`a qcow2 with ${what} is refused with a clear message`, async () => {
    const p = await image();
    patch(p, offset, bytes);
    if (what === "no QFI magic") {
      // Without the magic the file is probed as raw: a 64 MiB-odd raw file, not an error.
      assert.equal((await readDiskInfo(p)).format, "raw");
      return;
    }
    await refused(p, problem);
  });
}

test("an L1 table over 32 MiB is refused even when the virtual size needs it (512-byte clusters, 2 TiB)", async () => {
  const p = await image();
  patch(p, 20, u32(9));
  patch(p, 24, u64(2 * 1024 ** 4));
  patch(p, 36, u32(2 ** 26));
  await refused(p, /L1 table of 67108864 entries is larger than 32 MiB/);
});

test("backing names with a NUL, over 1023 bytes, or naming a protocol are refused", async () => {
  const p = join(dir, "nul.qcow2");
  await createQcow2(p, { sizeBytes: MiB, backing: { name: "base-xyz.qcow2", format: "qcow2" } });
  const bytes = readFileSync(p);
  patch(p, bytes.indexOf("base-xyz") + 4, [0]);
  await refused(p, /backing file name contains a NUL byte/);
  await assert.rejects(
    createQcow2(join(dir, "long.qcow2"), {
      sizeBytes: MiB,
      backing: { name: "a".repeat(1024), format: "raw" },
    }),
    {
      code: "bad-disk-request",
      message: /backing file name of 1024 bytes/,
    },
  );
  await assert.rejects(
    createQcow2(join(dir, "nbd.qcow2"), { sizeBytes: MiB, backing: { name: "nbd://evil/x", format: "raw" } }),
    {
      code: "bad-disk-request",
      message: /names a protocol/,
    },
  );
  const q = join(dir, "fmt.qcow2");
  await createQcow2(q, { sizeBytes: MiB, backing: { name: "b.img", format: "raw" } });
  const fmtAt = readFileSync(q).indexOf("raw");
  patch(q, fmtAt, [...Buffer.from("vmd")]);
  await refused(q, /backing file format "vmd" is not supported/);
});

test("a backing chain that loops is refused", async () => {
  const a = join(dir, "loop-a.qcow2");
  const b = join(dir, "loop-b.qcow2");
  await createQcow2(a, { sizeBytes: MiB, backing: { name: "loop-b.qcow2", format: "qcow2" } });
  await createQcow2(b, { sizeBytes: MiB, backing: { name: "loop-a.qcow2", format: "qcow2" } });
  await assert.rejects(diskChain(a), {
    code: "bad-disk-image",
    message: /backing chain loops back to .*loop-a\.qcow2/,
  });
  await assert.rejects(openDisk(a), { code: "bad-disk-image", message: /loops/ });
  const self = join(dir, "self.qcow2");
  await createQcow2(self, { sizeBytes: MiB, backing: { name: "self.qcow2", format: "qcow2" } });
  await assert.rejects(openDisk(self), { code: "bad-disk-image", message: /loops/ });
});

test("a 1,000-deep backing chain is refused quickly, one file open at a time", async () => {
  const chainDir = mkdtempSync(join(dir, "deep-"));
  const name = (i: number) => `d${String(i).padStart(4, "0")}.qcow2`;
  await createQcow2(join(chainDir, "template.qcow2"), {
    sizeBytes: MiB,
    backing: { name: name(1), format: "qcow2" },
  });
  const template = readFileSync(join(chainDir, "template.qcow2"));
  const nameAt = template.indexOf(name(1));
  await createQcow2(join(chainDir, name(999)), { sizeBytes: MiB });
  for (let i = 0; i < 999; i++) {
    const head = Buffer.from(template.subarray(0, 65536));
    head.write(name(i + 1), nameAt);
    const p = join(chainDir, name(i));
    writeFileSync(p, head);
    truncateSync(p, template.length); // sparse: 1,000 files cost little disk
  }
  const fdsBefore = readdirSync("/proc/self/fd").length;
  const started = performance.now();
  await assert.rejects(diskChain(join(chainDir, name(0))), {
    code: "bad-disk-image",
    message: /deeper than 64 files/,
  });
  await assert.rejects(openDisk(join(chainDir, name(0))), {
    code: "bad-disk-image",
    message: /deeper than 64 files/,
  });
  assert.ok(performance.now() - started < 10_000, "refused within seconds");
  assert.equal(readdirSync("/proc/self/fd").length, fdsBefore, "every file it opened is closed again");
  // 64 backing files are still fine, 65 are not.
  assert.equal((await diskChain(join(chainDir, name(1000 - 65)))).length, 65);
  await assert.rejects(diskChain(join(chainDir, name(1000 - 66))), { message: /deeper than 64 files/ });
});

test("a backing file that is a FIFO or a device is refused without waiting for a writer", async () => {
  const fifo = join(dir, "fifo");
  assert.equal(spawnSync("mkfifo", [fifo]).status, 0);
  for (const name of [fifo, "/dev/zero", dir]) {
    const p = join(dir, `special${n++}.qcow2`);
    await createQcow2(p, { sizeBytes: MiB, backing: { name, format: "raw" } });
    await assert.rejects(openDisk(p), (err: unknown) => {
      assert.ok(err instanceof Qcow2Error, String(err));
      assert.match(err.message, /not a regular file|EISDIR/);
      return true;
    });
  }
});

test("a missing backing file is named", async () => {
  const p = join(dir, "orphan.qcow2");
  await createQcow2(p, { sizeBytes: MiB, backing: { name: "gone.qcow2", format: "qcow2" } });
  await assert.rejects(openDisk(p), {
    code: "disk-not-found",
    message: /orphan\.qcow2: its backing file .*gone\.qcow2 does not exist/,
  });
});

test("L2 tables and data clusters outside the file or unaligned fail the I/O with a clear message", async () => {
  const cases: Array<[string, (p: string, l1: number, l2: number) => void, RegExp]> = [
    [
      "L2 beyond the end",
      (p, l1) => patch(p, l1, u64(2 ** 40)),
      /L2 table 0 at 0x10000000000 lies beyond the end of the file/,
    ],
    [
      "L2 unaligned",
      (p, l1) => patch(p, l1, u64(5 * 65536 + 512)),
      /L2 table 0 offset 0x50200 is not cluster-aligned/,
    ],
    ["L2 at the header", (p, l1) => patch(p, l1, u64(512)), /L2 table 0 offset 0x200 is not cluster-aligned/],
    [
      "data beyond the end",
      (p, _l1, l2) => patch(p, l2, u64(2 ** 44)),
      /data cluster at 0x100000000000 lies beyond the end/,
    ],
    [
      "data unaligned",
      (p, _l1, l2) => patch(p, l2, u64(2 ** 31 + 512)),
      /data cluster offset 0x80000200 is not cluster-aligned/,
    ],
    [
      "compressed beyond the end",
      (p, _l1, l2) => patch(p, l2, [0x40, 0, 0x10, 0, 0, 0, 0, 0]),
      /compressed cluster .* outside the file/,
    ],
  ];
  for (const [what, corrupt, problem] of cases) {
    const p = await image();
    const l1 = 3 * 65536;
    const l2 = new DataView(readFileSync(p).buffer).getUint32(l1 + 4);
    corrupt(p, l1, l2);
    const d = await openDisk(p);
    const err = await call((done) => d.read(0, new Uint8Array(4096), done));
    assert.ok(err !== null, what);
    assert.match(err, problem, what);
    assert.ok(err.includes(p), `${what}: names the file`);
    const werr = await call((done) => d.write(0, new Uint8Array(4096), done));
    assert.ok(werr !== null, `${what}: a write fails too`);
    await d.close();
  }
});

test("a refcount that would overflow is refused, not wrapped", async () => {
  const p = await image();
  patch(p, 2 * 65536, [0xff, 0xff]); // cluster 0's 16-bit refcount at its maximum
  const file = await DiskFile.open(p, false);
  const { header } = await probeDisk(file, null);
  const refcounts = await Qcow2Refcounts.load(file, header!);
  await assert.rejects(refcounts.increment(0), {
    code: "bad-disk-image",
    message: /refcount of cluster 0 would overflow \(65535/,
  });
  await file.close();
});

test("a writer refuses refcounts that claim every cluster, instead of scanning for ever", async () => {
  const p = await image();
  // Every refcount table entry points at one block whose entries are all 0xffff.
  const table: number[] = [];
  for (let i = 0; i < 8192; i++) table.push(...u64(2 * 65536));
  patch(p, 65536, table);
  patch(p, 2 * 65536, new Array(65536).fill(0xff));
  const d = await openDisk(p);
  const err = await call((done) => d.write(10 * MiB, new Uint8Array(4096), done));
  assert.match(err ?? "", /refcounts claim clusters far beyond the end of the file/);
  await d.close().catch(() => {});
});

test("random corruption of the metadata never crashes, hangs or escapes as anything but a Qcow2Error", {
  timeout: 120_000,
}, async () => {
  const pristine = await image();
  const d0 = await openDisk(pristine);
  for (let i = 1; i < 20; i++)
    await call((done) => d0.write(i * 3 * MiB + 4096 * i, new Uint8Array(8192).fill(i), done));
  await d0.close();
  const bytes = readFileSync(pristine);
  let s = 12345;
  const next = (k: number) => {
    s = (s * 1103515245 + 12345) >>> 0;
    return s % k;
  };
  const metadataEnd = bytes.length; // header, refcounts, L1, L2 tables and data: all fair game
  let opened = 0;
  for (let round = 0; round < 150; round++) {
    const mutated = Buffer.from(bytes);
    for (let k = 0; k < 1 + next(6); k++) {
      // Mostly the metadata clusters (header, refcount table and block, L1, the first L2 table).
      const at = next(4) === 0 ? next(metadataEnd) : next(6 * 65536);
      mutated[at] = next(256);
    }
    const p = join(dir, `fuzz${round}.qcow2`);
    writeFileSync(p, mutated);
    for (const readOnly of [true, false]) {
      let d: Awaited<ReturnType<typeof openDisk>>;
      try {
        d = await openDisk(p, { readOnly });
      } catch (err) {
        assert.ok(err instanceof Qcow2Error, `round ${round}: ${String(err)}`);
        continue;
      }
      opened++;
      for (let off = 0; off < d.sizeBytes; off += 4 * MiB) {
        const r = await call((done) => d.read(off, new Uint8Array(65536 + 512), done));
        assert.ok(r === null || r.includes(p), `round ${round}: ${r}`);
        if (!readOnly) await call((done) => d.write(off + 512, new Uint8Array(1024).fill(9), done));
      }
      await d.close().catch((err: unknown) => assert.ok(err instanceof Qcow2Error, String(err)));
    }
    rmSync(p);
  }
  assert.ok(opened > 10, "some mutations leave an image that opens");
});
