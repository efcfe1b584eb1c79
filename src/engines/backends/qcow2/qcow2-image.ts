// One open qcow2 file as a layer of a disk (QEMU's docs/interop/qcow2.txt, version 3): guest reads and
// writes through its cluster map, reads of clusters it does not hold fall through to its backing layer,
// partial writes to such clusters copy the rest of the cluster first (copy-on-write).
//
// Crash consistency: every allocation is ordered refcount (synced, see Qcow2Refcounts) → data → L2 entry
// → L1 entry, each write awaited before the next starts, so a process killed at any moment leaves at worst
// leaked clusters; frees wait until the L2 entries that dropped them are synced. Metadata changes run one at
// a time (`serialized`); a write to a cluster this file already holds is one pwrite and takes no lock.

import { inflateRaw } from "node:zlib";
import type { DiskFile } from "./disk-file.ts";
import type { DiskLayer } from "./disk-layer.ts";
import {
  CLUSTER_COMPRESSED,
  CLUSTER_DATA,
  CLUSTER_UNALLOCATED,
  CLUSTER_ZERO,
  type ClusterMapping,
  l2Words,
  Qcow2ClusterMap,
} from "./qcow2-cluster-map.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import { INCOMPAT_CORRUPT, INCOMPAT_DIRTY, type Qcow2Header } from "./qcow2-header.ts";
import { Qcow2Refcounts } from "./qcow2-refcounts.ts";

export class Qcow2Image implements DiskLayer {
  readonly format = "qcow2";
  readonly virtualSize: number;
  private readonly clusterSize: number;
  private metaTail: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly file: DiskFile,
    readonly header: Qcow2Header,
    private readonly map: Qcow2ClusterMap,
    private readonly refcounts: Qcow2Refcounts | null,
    private readonly backing: DiskLayer | null,
  ) {
    this.virtualSize = header.virtualSize;
    this.clusterSize = header.clusterSize;
  }

  /** Opens a qcow2 file whose header has been parsed; `backing` is its already opened backing layer. */
  static async open(file: DiskFile, header: Qcow2Header, backing: DiskLayer | null): Promise<Qcow2Image> {
    const refuse = (problem: string) =>
      new Qcow2Error("bad-disk-image", `disk image ${file.path}: ${problem}`);
    if (!file.readOnly) {
      if (header.version !== 3) throw refuse("is qcow2 version 2, which tsvm opens only read-only");
      if (header.nbSnapshots > 0) throw refuse("has internal snapshots, which tsvm opens only read-only");
      if (header.incompatibleFeatures & INCOMPAT_DIRTY)
        throw refuse("was not closed cleanly (dirty bit set); repair it with qemu-img check -r all");
      if (header.incompatibleFeatures & INCOMPAT_CORRUPT)
        throw refuse("is marked corrupt; repair it with qemu-img check -r all");
    }
    const map = await Qcow2ClusterMap.load(file, header);
    const refcounts = file.readOnly ? null : await Qcow2Refcounts.load(file, header);
    if (!file.readOnly && header.autoclearFeatures !== 0) {
      // Spec: a writer that does not understand an autoclear bit must clear it (e.g. dirty bitmaps).
      await file.write(88, new Uint8Array(8));
      await file.sync();
    }
    return new Qcow2Image(file, header, map, refcounts, backing);
  }

  get path(): string {
    return this.file.path;
  }

  get readOnly(): boolean {
    return this.file.readOnly;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.metaTail.then(fn);
    this.metaTail = run.catch(() => {});
    return run;
  }

  async read(offset: number, dst: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const m = newMapping();
    let pos = offset;
    const end = offset + dst.length;
    while (pos < end) {
      if (pos >= this.virtualSize) {
        dst.fill(0, pos - offset);
        return;
      }
      const inCluster = pos % cs;
      const n = Math.min(cs - inCluster, end - pos);
      const sub = dst.subarray(pos - offset, pos - offset + n);
      await this.map.lookup(pos, m);
      switch (m.kind) {
        case CLUSTER_DATA:
          await this.file.read(m.host + inCluster, sub);
          break;
        case CLUSTER_ZERO:
          sub.fill(0);
          break;
        case CLUSTER_COMPRESSED:
          sub.set((await this.decompress(m.host, m.compressedBytes)).subarray(inCluster, inCluster + n));
          break;
        default:
          if (this.backing) await this.backing.read(pos, sub);
          else sub.fill(0);
      }
      pos += n;
    }
  }

  /** The cluster a compressed entry holds: raw deflate (compression type 0), exactly one cluster long. */
  private async decompress(host: number, bytes: number): Promise<Uint8Array> {
    const bad = () =>
      new Qcow2Error(
        "bad-disk-image",
        `disk image ${this.path}: compressed cluster at 0x${host.toString(16)} is corrupt`,
      );
    if (bytes <= 0 || bytes > 2 * this.clusterSize + 512) throw bad();
    const packed = new Uint8Array(bytes);
    await this.file.read(host, packed);
    const out = await new Promise<Uint8Array | null>((resolve) =>
      inflateRaw(
        packed,
        { maxOutputLength: this.clusterSize, finishFlush: 2 /* Z_SYNC_FLUSH */ },
        (err, buf) => resolve(err ? null : buf),
      ),
    );
    if (out === null || out.length !== this.clusterSize) throw bad();
    return out;
  }

  async write(offset: number, src: Uint8Array): Promise<void> {
    this.checkWritable();
    const cs = this.clusterSize;
    const m = newMapping();
    let pos = offset;
    const end = offset + src.length;
    while (pos < end) {
      const inCluster = pos % cs;
      const n = Math.min(cs - inCluster, end - pos);
      const sub = src.subarray(pos - offset, pos - offset + n);
      await this.map.lookup(pos, m);
      // The steady state: the cluster is ours alone, so the data goes straight to it.
      if (m.kind === CLUSTER_DATA && m.copied) await this.file.write(m.host + inCluster, sub);
      else await this.serialized(() => this.allocatingWrite(pos, sub));
      pos += n;
    }
  }

  private checkWritable(): void {
    if (this.refcounts === null)
      throw new Qcow2Error("bad-disk-request", `disk image ${this.path} is open read-only`);
  }

  /** A write into a cluster this file does not own alone yet; runs serialized. */
  private async allocatingWrite(pos: number, sub: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const m = newMapping();
    await this.map.lookup(pos, m); // again: an earlier serialized write may have allocated it
    const inCluster = pos % cs;
    if (m.kind === CLUSTER_DATA && m.copied) {
      await this.file.write(m.host + inCluster, sub);
      return;
    }
    const clusterStart = pos - inCluster;
    let whole: Uint8Array;
    if (sub.length === cs) whole = sub;
    else {
      whole = new Uint8Array(cs);
      await this.readCluster(clusterStart, m, whole);
      whole.set(sub, inCluster);
    }
    if (m.kind === CLUSTER_ZERO && m.host !== 0 && m.copied) {
      // A preallocated zero cluster: fill it, then drop the zero flag.
      await this.file.write(m.host, whole);
      await this.setEntry(clusterStart, m.host, false);
      return;
    }
    const l2 = await this.ensureL2(clusterStart);
    const host = await this.refcounts!.allocate();
    await this.file.write(host, whole);
    await this.setEntryIn(l2, clusterStart, host, false);
    this.releaseOld(m);
  }

  /** Reads the current contents of the guest cluster at `clusterStart` (mapped as `m`) into `dst`. */
  private async readCluster(clusterStart: number, m: ClusterMapping, dst: Uint8Array): Promise<void> {
    switch (m.kind) {
      case CLUSTER_DATA:
        await this.file.read(m.host, dst);
        return;
      case CLUSTER_ZERO:
        dst.fill(0);
        return;
      case CLUSTER_COMPRESSED:
        dst.set(await this.decompress(m.host, m.compressedBytes));
        return;
      default:
        if (this.backing) await this.backing.read(clusterStart, dst);
        else dst.fill(0);
    }
  }

  /** Gives back what an overwritten entry held: a shared or preallocated cluster, a compressed one. */
  private releaseOld(m: ClusterMapping): void {
    const rc = this.refcounts!;
    if ((m.kind === CLUSTER_DATA || m.kind === CLUSTER_ZERO) && m.host !== 0) rc.release(m.host);
    else if (m.kind === CLUSTER_COMPRESSED) {
      // QEMU counts one reference on every cluster the compressed bytes touch (whole sectors).
      const start = m.host - (m.host % 512);
      const last = m.host + m.compressedBytes - 1;
      for (let c = Math.floor(start / this.clusterSize); c <= Math.floor(last / this.clusterSize); c++)
        rc.release(c * this.clusterSize);
    }
  }

  /** The L2 table covering guest offset `pos`, allocated (zeroed, synced, then linked from L1) if missing. */
  private async ensureL2(pos: number): Promise<number> {
    const l1Index = Math.floor(pos / this.clusterSize / this.map.l2Entries);
    const existing = this.map.l2Offset(l1Index);
    if (existing !== 0) {
      if (!this.map.l2Copied(l1Index))
        throw new Qcow2Error("bad-disk-image", `disk image ${this.path}: L2 table ${l1Index} is shared`);
      return existing;
    }
    const offset = await this.refcounts!.allocate();
    const table = new Uint8Array(this.clusterSize);
    await this.file.write(offset, table);
    // The table must be on disk before L1 names it: a reused cluster may hold old bytes.
    await this.file.sync();
    await this.map.setL1Entry(l1Index, offset);
    this.map.cacheL2(offset, table);
    return offset;
  }

  private async setEntry(pos: number, host: number, zero: boolean): Promise<void> {
    await this.setEntryIn(await this.ensureL2(pos), pos, host, zero);
  }

  private async setEntryIn(l2: number, pos: number, host: number, zero: boolean): Promise<void> {
    const words = new Uint32Array(2);
    l2Words(host, zero, words, 0);
    await this.map.setL2Entries(l2, Math.floor(pos / this.clusterSize) % this.map.l2Entries, words);
  }

  async flush(): Promise<void> {
    if (this.refcounts === null) return;
    await this.serialized(async () => {
      await this.file.sync();
      await this.refcounts!.applyFrees();
    });
  }

  discard(offset: number, length: number): Promise<void> {
    return this.unmapRange(offset, length, "discard");
  }

  writeZeroes(offset: number, length: number, unmap: boolean): Promise<void> {
    return this.unmapRange(offset, length, unmap ? "zero-unmap" : "zero");
  }

  /**
   * discard: whole clusters become unallocated (zero clusters when a backing file would show through, as
   * QEMU does); partial ones are left. writeZeroes: whole clusters become zero clusters (keeping their host
   * cluster, preallocated, unless `unmap`); partial ones get zeros written.
   */
  private async unmapRange(
    offset: number,
    length: number,
    mode: "discard" | "zero" | "zero-unmap",
  ): Promise<void> {
    this.checkWritable();
    const cs = this.clusterSize;
    const end = Math.min(offset + length, this.virtualSize);
    await this.serialized(async () => {
      const m = newMapping();
      let pos = offset;
      while (pos < end) {
        const inCluster = pos % cs;
        const clusterStart = pos - inCluster;
        const clusterEnd = Math.min(clusterStart + cs, this.virtualSize);
        const n = Math.min(clusterEnd, end) - pos;
        await this.map.lookup(pos, m);
        const readsZero =
          m.kind === CLUSTER_ZERO || (m.kind === CLUSTER_UNALLOCATED && this.backing === null);
        if (inCluster !== 0 || pos + n < clusterEnd) {
          if (mode !== "discard" && !readsZero) await this.allocatingWriteZeros(pos, n, m);
        } else if (mode === "discard" && this.backing === null) {
          if (m.kind !== CLUSTER_UNALLOCATED) await this.replaceEntry(clusterStart, m, 0, false);
        } else if (m.kind === CLUSTER_ZERO && (m.host === 0 || mode === "zero")) {
          // Already reads as zeros, and holds nothing to give back.
        } else if (mode === "zero" && m.kind === CLUSTER_DATA && m.copied) {
          await this.replaceEntry(clusterStart, m, m.host, true);
        } else if (!(m.kind === CLUSTER_UNALLOCATED && this.backing === null)) {
          // A zero cluster, not an unallocated one, so the backing file's data does not show through.
          await this.replaceEntry(clusterStart, m, 0, true);
        }
        pos += n;
      }
      if (this.refcounts!.hasManyPendingFrees) {
        await this.file.sync();
        await this.refcounts!.applyFrees();
      }
    });
  }

  /** Writes zeros over part of a cluster (inside the serialized section). */
  private async allocatingWriteZeros(pos: number, n: number, m: ClusterMapping): Promise<void> {
    const zeros = new Uint8Array(n);
    if (m.kind === CLUSTER_DATA && m.copied) await this.file.write(m.host + (pos % this.clusterSize), zeros);
    else await this.allocatingWrite(pos, zeros);
  }

  /** Replaces a whole cluster's entry, then releases what the old entry held if the new one does not keep it. */
  private async replaceEntry(
    clusterStart: number,
    m: ClusterMapping,
    host: number,
    zero: boolean,
  ): Promise<void> {
    await this.setEntry(clusterStart, host, zero);
    if (host === 0) this.releaseOld(m);
  }

  async close(): Promise<void> {
    try {
      if (this.refcounts !== null)
        await this.serialized(async () => {
          await this.file.sync();
          await this.refcounts!.applyFrees();
          await this.refcounts!.returnPool();
          await this.file.sync();
        });
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }
}

function newMapping(): ClusterMapping {
  return { kind: CLUSTER_UNALLOCATED, host: 0, compressedBytes: 0, copied: false };
}
