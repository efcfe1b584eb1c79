// 4 KiB I/O throughput of a qcow2 disk through tsvm's own qcow2 code (openDisk) beside a raw file through
// FileBlockBackend, side by side (`node --import ./node_modules/tsx/dist/loader.mjs bench/qcow2-io.ts`):
// sequential and random reads and writes, one request at a time and 16 in flight (as virtio-blk may issue
// them), each cell the best of three alternating runs. The qcow2 disk has a raw backing file, as a VM's disk has its image's base. Not a timed test.
// `--pools 0.25,2,8,32` instead measures allocating writes (fresh disks) with the allocation pool capped at
// each size in MiB: the pool's refcounts are synced once per refill, and a kill -9 leaks its unused rest.
import {
  closeSync,
  fdatasyncSync,
  mkdtempSync,
  openSync,
  rmSync,
  truncateSync,
  writeFileSync,
  writeSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { FileBlockBackend } from "../src/engines/backends/file-block-backend.ts";
import { createQcow2, openDisk, reclaimLeaks } from "../src/engines/backends/qcow2/index.ts";
import type { BlockBackend } from "../src/machine/ports.ts";

const { values } = parseArgs({
  options: {
    mib: { type: "string", default: "256" },
    ops: { type: "string", default: "20000" },
    pools: { type: "string" },
  },
});
const SIZE = Number(values.mib) * 1024 * 1024;
const OPS = Number(values.ops);
const BLOCK = 4096;

const call = (f: (done: (e: string | null) => void) => void) =>
  new Promise<void>((resolve, reject) => f((e) => (e === null ? resolve() : reject(new Error(e)))));

type Pattern = "seq" | "rand";

/** The best of three alternating runs of each backend: the host is shared, and noise only ever slows. */
async function cell(raw: BlockBackend, qcow2: BlockBackend, write: boolean, pattern: Pattern, depth: number) {
  let r = 0;
  let q = 0;
  for (let k = 0; k < 3; k++) {
    r = Math.max(r, await measure(raw, write, pattern, depth));
    q = Math.max(q, await measure(qcow2, write, pattern, depth));
  }
  return [r, q] as const;
}

/** Runs OPS 4 KiB requests with `depth` in flight; MiB/s. */
async function measure(disk: BlockBackend, write: boolean, pattern: Pattern, depth: number): Promise<number> {
  const blocks = SIZE / BLOCK;
  let issued = 0;
  let seed = 0x9e3779b9;
  const nextOffset = () => {
    if (pattern === "seq") return (issued % blocks) * BLOCK;
    seed ^= seed << 13;
    seed >>>= 0;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    seed >>>= 0;
    return (seed % blocks) * BLOCK;
  };
  const started = performance.now();
  const lane = async () => {
    const buf = new Uint8Array(BLOCK).fill(0x5a);
    while (issued < OPS) {
      const offset = nextOffset();
      issued++;
      await call((d) => (write ? disk.write(offset, buf, d) : disk.read(offset, buf, d)));
    }
  };
  await Promise.all(Array.from({ length: depth }, lane));
  const seconds = (performance.now() - started) / 1000;
  return (OPS * BLOCK) / (1024 * 1024) / seconds;
}

/**
 * MiB/s of sequential writes of `bytes`-sized requests, `depth` in flight, over the whole of a fresh overlay
 * (every cluster allocated) whose pool is capped at `poolMaxBytes`, ending with a flush.
 */
async function allocating(dir: string, poolMaxBytes: number, bytes: number, depth: number): Promise<number> {
  const path = join(dir, `alloc-${poolMaxBytes}-${bytes}.qcow2`);
  await createQcow2(path, { sizeBytes: SIZE, backing: { name: "base.raw", format: "raw" } });
  const disk = await openDisk(path, { poolMaxBytes });
  const buf = new Uint8Array(bytes).fill(0x5a);
  let next = 0;
  const started = performance.now();
  const lane = async () => {
    while (next < SIZE) {
      const at = next;
      next += bytes;
      await call((d) => disk.write(at, buf, d));
    }
  };
  await Promise.all(Array.from({ length: depth }, lane));
  await call((d) => disk.flush(d));
  const seconds = (performance.now() - started) / 1000;
  await disk.close();
  rmSync(path);
  return SIZE / (1024 * 1024) / seconds;
}

/** Milliseconds a writable open of a fully allocated, unmarked (crashed) disk takes to count its references. */
async function reclaimTime(dir: string): Promise<number> {
  const path = join(dir, "reclaim.qcow2");
  await createQcow2(path, { sizeBytes: SIZE, backing: { name: "base.raw", format: "raw" } });
  const disk = await openDisk(path);
  const fill = new Uint8Array(1024 * 1024).fill(1);
  for (let at = 0; at < SIZE; at += fill.length) await call((d) => disk.write(at, fill, d));
  await disk.close();
  let best = Number.POSITIVE_INFINITY;
  for (let k = 0; k < 3; k++) {
    const fd = openSync(path, "r+");
    writeSync(fd, new Uint8Array(4), 0, 4, 92); // the clean mark off, as a killed writer leaves it
    closeSync(fd);
    const started = performance.now();
    await reclaimLeaks(path);
    best = Math.min(best, performance.now() - started);
  }
  return best;
}

/** Median milliseconds of an fdatasync after a 4 KiB write at a new place (what one pool refill syncs). */
function syncTime(dir: string): number {
  const fd = openSync(join(dir, "sync-probe"), "w");
  const times: number[] = [];
  for (let k = 0; k < 50; k++) {
    writeSync(fd, new Uint8Array(4096).fill(k), 0, 4096, k * 65536);
    const started = performance.now();
    fdatasyncSync(fd);
    times.push(performance.now() - started);
  }
  closeSync(fd);
  times.sort((a, b) => a - b);
  return times[times.length >> 1]!;
}

async function pools(list: string): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-bench-qcow2-"));
  try {
    const basePath = join(dir, "base.raw");
    writeFileSync(basePath, new Uint8Array(0));
    truncateSync(basePath, SIZE);
    process.stderr.write(`${SIZE / 1024 / 1024} MiB written sequentially to a fresh overlay per cell\n`);
    const pad = (s: string, n: number) => s.padEnd(n);
    process.stdout.write(`${pad("pool max MiB", 14)}${pad("4 KiB QD1 MiB/s", 18)}1 MiB QD4 MiB/s\n`);
    // Rounds over all sizes, best of each: the host is shared, and drift then hits every size alike.
    const sizes = list.split(",").map(Number);
    const best = sizes.map(() => [0, 0]);
    for (let round = 0; round < 3; round++)
      for (const [i, mib] of sizes.entries()) {
        const max = Math.round(mib * 1024 * 1024);
        best[i]![0] = Math.max(best[i]![0]!, await allocating(dir, max, 4096, 1));
        best[i]![1] = Math.max(best[i]![1]!, await allocating(dir, max, 1024 * 1024, 4));
      }
    for (const [i, mib] of sizes.entries())
      process.stdout.write(
        `${pad(String(mib), 14)}${pad(best[i]![0]!.toFixed(1), 18)}${best[i]![1]!.toFixed(1)}\n`,
      );
    process.stdout.write(`fdatasync after a 4 KiB write, median of 50: ${syncTime(dir).toFixed(2)} ms\n`);
    process.stdout.write(
      `reclaiming leaks of a fully allocated disk: ${(await reclaimTime(dir)).toFixed(1)} ms\n`,
    );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-bench-qcow2-"));
  try {
    const rawPath = join(dir, "disk.raw");
    writeFileSync(rawPath, new Uint8Array(0));
    truncateSync(rawPath, SIZE);
    const basePath = join(dir, "base.raw");
    writeFileSync(basePath, new Uint8Array(0));
    truncateSync(basePath, SIZE);
    const qPath = join(dir, "disk.qcow2");
    await createQcow2(qPath, { sizeBytes: SIZE, backing: { name: "base.raw", format: "raw" } });
    const raw = await FileBlockBackend.open(rawPath);
    const qcow2 = await openDisk(qPath);

    process.stderr.write(`${SIZE / 1024 / 1024} MiB disks, ${OPS} requests of 4 KiB per cell, in ${dir}\n`);
    const rows: Array<[string, number, number]> = [];
    // The first qcow2 pass allocates every cluster it touches (copy-on-write from the backing file).
    rows.push([
      "seq write, allocating (QD1)",
      await measure(raw, true, "seq", 1),
      await measure(qcow2, true, "seq", 1),
    ]);
    // Fill both so the rest measures allocated clusters.
    const fill = new Uint8Array(1024 * 1024).fill(1);
    for (let at = 0; at < SIZE; at += fill.length) {
      await call((d) => raw.write(at, fill, d));
      await call((d) => qcow2.write(at, fill, d));
    }
    for (const depth of [1, 16])
      for (const [write, pattern] of [
        [false, "seq"],
        [false, "rand"],
        [true, "seq"],
        [true, "rand"],
      ] as Array<[boolean, Pattern]>)
        rows.push([
          `${pattern} ${write ? "write" : "read"} (QD${depth})`,
          ...(await cell(raw, qcow2, write, pattern, depth)),
        ]);
    await raw.close();
    await qcow2.close();
    const pad = (s: string, n: number) => s.padEnd(n);
    process.stdout.write(
      `${pad("4 KiB requests", 30)}${pad("raw MiB/s", 12)}${pad("qcow2 MiB/s", 12)}qcow2/raw\n`,
    );
    for (const [name, r, q] of rows)
      process.stdout.write(
        `${pad(name, 30)}${pad(r.toFixed(1), 12)}${pad(q.toFixed(1), 12)}${(q / r).toFixed(2)}\n`,
      );
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (values.pools) await pools(values.pools);
else await main();
