// Throughput of the export file format on its own (`node --import ./node_modules/tsx/dist/loader.mjs
// bench/vm-archive.ts [MiB]`): a file of MiB mebibytes, half random pages and half zero pages interleaved
// in 1 MiB stretches (as a guest's RAM or a used disk looks), is planned (scanned), written as an archive
// and read back through the verifying reader into a file, in one pipeline; figures to stdout.
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, open, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import { VM_RECORD_FORMAT_VERSION } from "../src/hypervisor/vm-record.ts";
import { readArchive } from "../src/hypervisor/vm-archive/archive-reader.ts";
import { planArchive, writeArchive } from "../src/hypervisor/vm-archive/archive-writer.ts";

const mib = Number(process.argv[2] ?? 256);
const dir = await mkdtemp(join(tmpdir(), "tsvm-bench-archive-"));
try {
  const source = join(dir, "source.bin");
  const fh = await open(source, "w");
  for (let i = 0; i < mib; i += 2) await fh.write(randomBytes(1 << 20), 0, 1 << 20, i * (1 << 20));
  await fh.truncate(mib << 20);
  await fh.close();
  const at = new Date().toISOString();
  const t0 = performance.now();
  const plan = await planArchive(
    {
      format: "tsvm-vm-export",
      exportedAt: at,
      writer: "tsvm bench",
      byteOrder: "little",
      vm: {
        formatVersion: VM_RECORD_FORMAT_VERSION,
        id: "bench",
        name: "bench",
        machineType: "t1-micro",
        cpus: 1,
        memoryMiB: 128,
        diskMiB: 0,
        image: "none",
        engine: "none",
        automaticRestart: true,
        cpuCapPercent: null,
        cpuWeight: 100,
        status: "TERMINATED",
        statusMessage: "",
        creationTimestamp: at,
        lastStartTimestamp: null,
        lastStopTimestamp: null,
        lastSuspendedTimestamp: null,
        history: [],
      },
      snapshots: false,
    },
    [{ path: "vm/disk.img", source, size: mib << 20 }],
  );
  const t1 = performance.now();
  const out = join(dir, "copy.bin");
  const copy = await open(out, "w");
  let archived = 0;
  async function* counted() {
    for await (const chunk of writeArchive(plan)) {
      archived += chunk.length;
      yield chunk;
    }
  }
  await readArchive(counted(), {
    async manifest() {},
    async file() {
      return {
        write: async (offset, bytes) => {
          await copy.write(bytes, 0, bytes.length, offset);
        },
        end: async () => {
          await copy.truncate(mib << 20);
        },
      };
    },
  });
  await copy.close();
  const t2 = performance.now();
  const same =
    createHash("sha256")
      .update(await readFile(source))
      .digest("hex") ===
    createHash("sha256")
      .update(await readFile(out))
      .digest("hex");
  const rate = (bytes: number, ms: number) => `${((bytes / 1048576) * (1000 / ms)).toFixed(0)} MiB/s`;
  process.stdout.write(
    `${mib} MiB file (half zero pages): scan ${(t1 - t0).toFixed(0)} ms (${rate(mib << 20, t1 - t0)}); ` +
      `write+verify+write-out ${(t2 - t1).toFixed(0)} ms (${rate(mib << 20, t2 - t1)} of file, ` +
      `${rate(archived, t2 - t1)} of archive); archive ${(archived / 1048576).toFixed(1)} MiB; ` +
      `copy identical: ${same}\n`,
  );
} finally {
  await rm(dir, { recursive: true, force: true });
}
