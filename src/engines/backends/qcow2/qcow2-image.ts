// One open qcow2 file as a layer of a disk (QEMU's docs/interop/qcow2.txt, version 3): guest reads and
// writes through its cluster map, reads of clusters it does not hold fall through to its backing layer,
// partial writes to such clusters copy the rest of the cluster first (copy-on-write).
//
// Crash consistency: every allocation is ordered refcount (synced, see Qcow2Refcounts) → data → L2 entry
// → L1 entry, each write awaited before the next starts, so a process killed at any moment leaves at worst
// leaked clusters; frees wait until the L2 entries that dropped them are synced. A clean close marks the
// file's refcounts exact (AUTOCLEAR_TSVM_CLEAN); a writable open without that mark gives back the leaks. Metadata changes run one at
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
import { AUTOCLEAR_TSVM_CLEAN, INCOMPAT_CORRUPT, INCOMPAT_DIRTY, type Qcow2Header } from "./qcow2-header.ts";
import { repairLeaks } from "./qcow2-leak-repair.ts";
import { POOL_MAX_BYTES, Qcow2Refcounts } from "./qcow2-refcounts.ts";

export interface Qcow2OpenOptions {
  /** The allocation pool's largest size (Qcow2Refcounts); only measurements change it. */
  readonly poolMaxBytes?: number;
}

export class Qcow2Image implements DiskLayer {
  readonly format = "qcow2";
  readonly virtualSize: number;
  private readonly clusterSize: number;
  private metaTail: Promise<unknown> = Promise.resolve();
  /** Used only synchronously (contiguous), so requests in flight cannot disturb each other through it. */
  private readonly peek = newMapping();
  /** A metadata change failed part-way (e.g. a full disk): it may have leaked clusters, so no clean mark. */
  private failed = false;
  /** Leaked clusters the open gave back (0 when the file was closed cleanly). */
  reclaimedClusters = 0;

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
  static async open(
    file: DiskFile,
    header: Qcow2Header,
    backing: DiskLayer | null,
    options: Qcow2OpenOptions = {},
  ): Promise<Qcow2Image> {
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
    const refcounts = file.readOnly
      ? null
      : await Qcow2Refcounts.load(file, header, options.poolMaxBytes ?? POOL_MAX_BYTES);
    let reclaimed = 0;
    if (refcounts !== null) {
      const clean = (header.autoclearFeatures & AUTOCLEAR_TSVM_CLEAN) !== 0;
      // Spec: a writer that does not understand an autoclear bit must clear it (e.g. dirty bitmaps). Ours
      // goes too, and is on disk before anything else changes: from now on a crash may leak clusters. The
      // repair comes after, so the clusters of bitmaps whose bit was cleared are leaks QEMU agrees are.
      if (header.autoclearFeatures !== 0) {
        await file.write(88, new Uint8Array(8));
        await file.sync();
      }
      if (!clean) reclaimed = await repairLeaks(file.path, file.size, header, map, refcounts);
    }
    const image = new Qcow2Image(file, header, map, refcounts, backing);
    image.reclaimedClusters = reclaimed;
    return image;
  }

  get path(): string {
    return this.file.path;
  }

  get readOnly(): boolean {
    return this.file.readOnly;
  }

  private serialized<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.metaTail.then(fn);
    this.metaTail = run.catch(() => {
      this.failed = true;
    });
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
      let n = Math.min(cs - inCluster, end - pos);
      if (!this.map.lookupCached(pos, m)) await this.map.lookup(pos, m);
      if (m.kind === CLUSTER_DATA) n = this.contiguous(pos, n, end, m.host + inCluster, false);
      const sub = dst.subarray(pos - offset, pos - offset + n);
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

  /**
   * How far from `pos` (whose first `n` bytes map to host offset `host`) the guest range up to `end` stays
   * contiguous on the host in data clusters (ours alone when `owned`), so one pread or pwrite covers it.
   * Only L2 tables already cached are consulted: this is an optimisation, never a reason to wait.
   */
  private contiguous(pos: number, n: number, end: number, host: number, owned: boolean): number {
    const m = this.peek;
    const limit = Math.min(end, this.virtualSize);
    while (pos + n < limit) {
      if (!this.map.lookupCached(pos + n, m) || m.kind !== CLUSTER_DATA || m.host !== host + n) break;
      if (owned && !m.copied) break;
      n += Math.min(this.clusterSize, limit - pos - n);
    }
    return n;
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

  async mayHoldData(offset: number, length: number): Promise<boolean> {
    const cs = this.clusterSize;
    const m = newMapping();
    const end = Math.min(offset + length, this.virtualSize);
    for (let pos = offset - (offset % cs); pos < end; pos += cs) {
      if (!this.map.lookupCached(pos, m)) await this.map.lookup(pos, m);
      if (m.kind === CLUSTER_DATA || m.kind === CLUSTER_COMPRESSED) return true;
      if (m.kind === CLUSTER_UNALLOCATED && this.backing) {
        const from = Math.max(pos, offset);
        if (await this.backing.mayHoldData(from, Math.min(pos + cs, end) - from)) return true;
      }
    }
    return false;
  }

  async write(offset: number, src: Uint8Array): Promise<void> {
    this.checkWritable();
    const cs = this.clusterSize;
    const m = newMapping();
    let pos = offset;
    const end = offset + src.length;
    while (pos < end) {
      const inCluster = pos % cs;
      let n = Math.min(cs - inCluster, end - pos);
      if (!this.map.lookupCached(pos, m)) await this.map.lookup(pos, m);
      // The steady state: the cluster is ours alone, so the data goes straight to it.
      if (m.kind === CLUSTER_DATA && m.copied) {
        n = this.contiguous(pos, n, end, m.host + inCluster, true);
        await this.file.write(m.host + inCluster, src.subarray(pos - offset, pos - offset + n));
      } else {
        // Whole clusters up to the request's end (within one L2 table) are allocated together.
        if (inCluster === 0 && end - pos >= cs) {
          const l2Span = cs * this.map.l2Entries;
          const runEnd = Math.min(end, (Math.floor(pos / l2Span) + 1) * l2Span);
          n = runEnd - pos - ((runEnd - pos) % cs);
        }
        const sub = src.subarray(pos - offset, pos - offset + n);
        await this.serialized(() => this.allocatingWrite(pos, sub));
      }
      pos += n;
    }
  }

  private checkWritable(): void {
    if (this.refcounts === null)
      throw new Qcow2Error("bad-disk-request", `disk image ${this.path} is open read-only`);
  }

  /**
   * A write into clusters this file does not own alone yet (runs serialized): part of one cluster, or whole
   * clusters of one L2 table. A part is completed with the cluster's current contents first (copy-on-write).
   */
  private async allocatingWrite(pos: number, sub: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const inCluster = pos % cs;
    if (inCluster === 0 && sub.length % cs === 0) {
      await this.writeClusters(pos, sub);
      return;
    }
    const m = newMapping();
    await this.map.lookup(pos, m); // again: an earlier serialized write may have allocated it
    if (m.kind === CLUSTER_DATA && m.copied) {
      await this.file.write(m.host + inCluster, sub);
      return;
    }
    const whole = new Uint8Array(cs);
    await this.readCluster(pos - inCluster, m, whole);
    whole.set(sub, inCluster);
    await this.writeClusters(pos - inCluster, whole);
  }

  /**
   * Writes whole clusters [start, start + data.length), all in one L2 table (serialized): clusters we own
   * are written in place, preallocated zero clusters are filled, the rest get new clusters. Then one write
   * of their L2 entries, then what the old entries held is released. Contiguous data is one pwrite.
   */
  private async writeClusters(start: number, data: Uint8Array): Promise<void> {
    const cs = this.clusterSize;
    const count = Math.ceil(data.length / cs);
    const l2 = await this.ensureL2(start);
    const table = await this.map.l2Table(l2);
    const firstIndex = Math.floor(start / cs) % this.map.l2Entries;
    const words = this.entryWords(table, firstIndex, count);
    const released: ClusterMapping[] = [];
    let first = -1;
    let last = -1;
    let runFrom = 0;
    let runHost = -1;
    for (let k = 0; k < count; k++) {
      const m = newMapping();
      this.map.decode(table, firstIndex + k, m);
      let host: number;
      if (m.kind === CLUSTER_DATA && m.copied) host = m.host;
      else {
        if (m.kind === CLUSTER_ZERO && m.host !== 0 && m.copied) host = m.host;
        else {
          host = await this.refcounts!.allocate();
          released.push(m);
        }
        l2Words(host, false, words, 2 * k);
        if (first < 0) first = k;
        last = k;
      }
      if (runHost >= 0 && host !== runHost + (k - runFrom) * cs) {
        await this.file.write(runHost, data.subarray(runFrom * cs, k * cs));
        runHost = -1;
      }
      if (runHost < 0) {
        runFrom = k;
        runHost = host;
      }
    }
    await this.file.write(runHost, data.subarray(runFrom * cs));
    if (first < 0) return;
    await this.map.setL2Entries(l2, firstIndex + first, words.subarray(2 * first, 2 * (last + 1)));
    for (const m of released) this.releaseOld(m);
  }

  /** The raw words of `count` L2 entries from `first` (hi, lo pairs), to change some and write back all. */
  private entryWords(table: Uint8Array | null, first: number, count: number): Uint32Array {
    const words = new Uint32Array(count * 2);
    if (table === null) return words;
    const v = new DataView(table.buffer, table.byteOffset + first * 8, count * 8);
    for (let k = 0; k < count * 2; k++) words[k] = v.getUint32(k * 4);
    return words;
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
    this.map.cacheL2(offset, table);
    await this.map.setL1Entry(l1Index, offset);
    return offset;
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
    const l2Span = cs * this.map.l2Entries;
    const end = Math.min(offset + length, this.virtualSize);
    await this.serialized(async () => {
      const m = newMapping();
      let pos = offset;
      while (pos < end) {
        const inCluster = pos % cs;
        // The disk's last cluster may be cut short by its size; it still counts as whole.
        const clusterEnd = Math.min(pos - inCluster + cs, this.virtualSize);
        if (inCluster !== 0 || end < clusterEnd) {
          const n = Math.min(clusterEnd, end) - pos;
          await this.map.lookup(pos, m);
          const readsZero =
            m.kind === CLUSTER_ZERO || (m.kind === CLUSTER_UNALLOCATED && this.backing === null);
          if (mode !== "discard" && !readsZero) await this.allocatingWriteZeros(pos, n, m);
          pos += n;
          continue;
        }
        // Whole clusters, up to the end of the request or of this L2 table: one write of their entries.
        const spanEnd = Math.min(end, (Math.floor(pos / l2Span) + 1) * l2Span);
        const wholeEnd = spanEnd === this.virtualSize ? spanEnd : spanEnd - (spanEnd % cs);
        await this.unmapClusters(pos, wholeEnd, mode);
        pos = wholeEnd;
      }
      if (this.refcounts!.hasManyPendingFrees) {
        await this.file.sync();
        await this.refcounts!.applyFrees();
      }
    });
  }

  /** Rewrites the entries of the whole clusters [start, end), all in one L2 table (serialized). */
  private async unmapClusters(
    start: number,
    end: number,
    mode: "discard" | "zero" | "zero-unmap",
  ): Promise<void> {
    const cs = this.clusterSize;
    const count = Math.ceil((end - start) / cs);
    const firstIndex = Math.floor(start / cs) % this.map.l2Entries;
    let l2 = this.map.l2Offset(Math.floor(start / cs / this.map.l2Entries));
    const current = l2 !== 0 ? await this.map.l2Table(l2) : null;
    const words = this.entryWords(current, firstIndex, count);
    const released: ClusterMapping[] = [];
    let first = -1;
    let last = -1;
    for (let k = 0; k < count; k++) {
      const m = newMapping();
      if (current !== null) this.map.decode(current, firstIndex + k, m);
      const next = this.unmappedEntry(m, mode);
      if (next === KEEP) continue;
      if (next === UNALLOCATED_ENTRY) l2Words(0, false, words, 2 * k);
      else if (next === ZERO_ENTRY) l2Words(0, true, words, 2 * k);
      else l2Words(next, true, words, 2 * k);
      if (next <= 0) released.push(m);
      if (first < 0) first = k;
      last = k;
    }
    if (first < 0) return;
    if (l2 === 0) l2 = await this.ensureL2(start);
    await this.map.setL2Entries(l2, firstIndex + first, words.subarray(2 * first, 2 * (last + 1)));
    for (const m of released) this.releaseOld(m);
  }

  /**
   * What a whole cluster mapped as `m` becomes: KEEP (as it is), UNALLOCATED_ENTRY, ZERO_ENTRY, or a host
   * offset to keep as a preallocated zero cluster.
   */
  private unmappedEntry(m: ClusterMapping, mode: "discard" | "zero" | "zero-unmap"): number {
    if (mode === "discard" && this.backing === null)
      return m.kind === CLUSTER_UNALLOCATED ? KEEP : UNALLOCATED_ENTRY;
    // Already reads as zeros, and holds nothing to give back.
    if (m.kind === CLUSTER_ZERO && (m.host === 0 || mode === "zero")) return KEEP;
    if (mode === "zero" && m.kind === CLUSTER_DATA && m.copied) return m.host;
    if (m.kind === CLUSTER_UNALLOCATED && this.backing === null) return KEEP;
    // A zero cluster, not an unallocated one, so the backing file's data does not show through.
    return ZERO_ENTRY;
  }

  /** Writes zeros over part of a cluster (inside the serialized section). */
  private async allocatingWriteZeros(pos: number, n: number, m: ClusterMapping): Promise<void> {
    const zeros = new Uint8Array(n);
    if (m.kind === CLUSTER_DATA && m.copied) await this.file.write(m.host + (pos % this.clusterSize), zeros);
    else await this.allocatingWrite(pos, zeros);
  }

  async close(): Promise<void> {
    try {
      if (this.refcounts !== null)
        await this.serialized(async () => {
          await this.file.sync();
          await this.refcounts!.applyFrees();
          await this.refcounts!.returnPool();
          await this.file.sync();
          if (this.failed) return;
          // Only now are the refcounts exact: the mark is the last write, and on disk before the file closes.
          const mark = new Uint8Array(4);
          new DataView(mark.buffer).setUint32(0, AUTOCLEAR_TSVM_CLEAN);
          await this.file.write(92, mark);
          await this.file.sync();
        });
    } finally {
      await this.file.close();
      await this.backing?.close();
    }
  }
}

/** unmappedEntry's answers other than a host offset (which is always positive). */
const KEEP = -2;
const ZERO_ENTRY = -1;
const UNALLOCATED_ENTRY = 0;

function newMapping(): ClusterMapping {
  return { kind: CLUSTER_UNALLOCATED, host: 0, compressedBytes: 0, copied: false };
}
