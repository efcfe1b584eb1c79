import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { DiskFile } from "./disk-file.ts";
import { createQcow2, openDisk } from "./index.ts";
import { probeDisk } from "./probe-disk.ts";
import { CLUSTER_DATA, CLUSTER_UNALLOCATED, l2Words, Qcow2ClusterMap } from "./qcow2-cluster-map.ts";

const dir = mkdtempSync(join(tmpdir(), "tsvm-qcow2-map-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("a load of an L2 table that began before an entry was written does not cache the old table", async () => {
  const p = join(dir, "race.qcow2");
  await createQcow2(p, { sizeBytes: 1024 * 1024 * 1024 });
  const d = await openDisk(p);
  await new Promise((resolve) => d.write(0, new Uint8Array(512).fill(1), resolve));
  await d.close();

  const file = await DiskFile.open(p, false);
  const { header } = await probeDisk(file, null);
  const map = await Qcow2ClusterMap.load(file, header!);
  const l2 = map.l2Offset(0);
  assert.ok(l2 > 0);
  // The first read of the L2 table gets its bytes at once but hands them over only when released: a slow
  // read racing with the write below.
  let release!: () => void;
  const gate = new Promise<void>((resolve) => (release = resolve));
  const read = file.read.bind(file);
  let first = true;
  file.read = async (pos: number, dst: Uint8Array) => {
    await read(pos, dst);
    if (pos === l2 && first) {
      first = false;
      await gate;
    }
  };
  const m = { kind: CLUSTER_UNALLOCATED as 0 | 1 | 2 | 3, host: 0, compressedBytes: 0, copied: false };
  const loading = map.lookup(0, m);
  const words = new Uint32Array(2);
  // Any cluster inside the file will do as the new entry's target: the L2 table's own.
  l2Words(l2, false, words, 0);
  const writing = map.setL2Entries(l2, 1, words);
  await new Promise((r) => setTimeout(r, 20));
  release();
  await Promise.all([loading, writing]);
  assert.equal(map.lookupCached(65536, m), true);
  assert.equal(m.kind, CLUSTER_DATA, "the cached table has the entry just written");
  assert.equal(m.host, l2);
  await file.close();
});
