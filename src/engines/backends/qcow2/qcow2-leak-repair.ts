// Gives back the clusters a qcow2 file counts as used but nothing references (QEMU's "leaked clusters"):
// what a writer killed mid-write leaves of its allocation pool (see Qcow2Refcounts). Every reference is
// counted from the metadata — header, L1 table, L2 tables and their entries, refcount table and blocks —
// then each refcount above its count is lowered to it. Runs on a writable open, before any allocation.

import type { Qcow2ClusterMap } from "./qcow2-cluster-map.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import type { Qcow2Header } from "./qcow2-header.ts";
import type { Qcow2Refcounts } from "./qcow2-refcounts.ts";

/**
 * Clusters counted at most (a Uint32Array of this many is 128 MiB): a 2 TiB disk of 64 KiB clusters. A
 * larger file (tiny clusters, or a hostile sparse one) is refused rather than allowed to exhaust memory.
 */
const MAX_CLUSTERS = 2 ** 25;
/** Clusters past the file's end that a compressed entry's last sectors may legitimately reach into. */
const TAIL_SLACK = 2;

/**
 * Frees the leaked clusters of the file `header` describes, opened writable with no snapshots (internal
 * snapshots are refused for writing, so their tables never need counting). Returns how many were freed.
 * Refuses a file whose metadata names a table twice or overlaps itself, whose references would overflow
 * its refcount width, or whose refcounts are lower than its references (corruption, not a leak).
 */
export async function repairLeaks(
  path: string,
  fileSize: number,
  header: Qcow2Header,
  map: Qcow2ClusterMap,
  refcounts: Qcow2Refcounts,
): Promise<number> {
  const bad = (problem: string) => new Qcow2Error("bad-disk-image", `disk image ${path}: ${problem}`);
  const cs = header.clusterSize;
  const clusters = Math.ceil(fileSize / cs) + TAIL_SLACK;
  if (clusters > MAX_CLUSTERS)
    throw bad(`has ${clusters} clusters, too many to check for leaked ones (at most ${MAX_CLUSTERS})`);
  if (header.nbSnapshots > 0) throw bad("has internal snapshots, which tsvm does not repair");
  const expected = new Uint32Array(clusters);
  const max = Math.min(refcounts.maxRefcount, 0xffffffff);

  const add = (offset: number, bytes: number, metadata: string | null): void => {
    const last = Math.floor((offset + bytes - 1) / cs);
    for (let c = Math.floor(offset / cs); c <= last; c++) {
      if (c >= clusters) throw bad(`a reference to cluster ${c} lies beyond the end of the file`);
      // Metadata is never shared: a table named twice (or overlapping another) is refused before it is
      // read again, so a hostile L1 table naming one L2 table a million times costs one read.
      if (metadata !== null && expected[c] !== 0)
        throw bad(`${metadata} at 0x${offset.toString(16)} overlaps other metadata`);
      if (expected[c] === max)
        throw bad(
          `cluster ${c} is referenced more often than its ${2 ** header.refcountOrder}-bit refcount can count`,
        );
      expected[c]!++;
    }
  };
  add(0, cs, "the header");
  if (header.l1Size > 0) add(header.l1TableOffset, header.l1Size * 8, "the L1 table");
  refcounts.countOwnClusters((offset, bytes, what) => add(offset, bytes, what));
  await map.countReferences(
    (offset, what) => add(offset, cs, what),
    (offset, bytes) => add(offset, bytes, null),
  );
  return refcounts.reclaim(expected);
}
