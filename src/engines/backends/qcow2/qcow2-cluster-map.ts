// The guest-to-host mapping of one qcow2 file (spec: "Cluster mapping"): the L1 table in memory, L2 tables
// behind a bounded cache, and the decoding of L2 entries. Every host offset read from the file is checked
// (alignment, inside the file) before it is used, and only then handed to the caller.

import type { DiskFile } from "./disk-file.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import type { Qcow2Header } from "./qcow2-header.ts";
import { TableCache } from "./table-cache.ts";

/** L1/L2 entry bit 63: the cluster's refcount is exactly one, so it may be written in place. */
export const OFLAG_COPIED_HI = 0x80000000;
/** L2 entry bit 62: a compressed cluster. */
export const OFLAG_COMPRESSED_HI = 0x40000000;
/** L2 entry bit 0 (version 3): the cluster reads as zeros. */
export const OFLAG_ZERO_LO = 1;

export const CLUSTER_UNALLOCATED = 0;
export const CLUSTER_ZERO = 1;
export const CLUSTER_DATA = 2;
export const CLUSTER_COMPRESSED = 3;
export type ClusterKind = 0 | 1 | 2 | 3;

/** What lookup found; one object reused by its owner, so a lookup allocates nothing. */
export interface ClusterMapping {
  kind: ClusterKind;
  /** DATA: the host cluster; ZERO: a preallocated host cluster or 0; COMPRESSED: the byte offset. */
  host: number;
  /** COMPRESSED: bytes of compressed data to read; DATA/ZERO: whether the COPIED flag is set. */
  compressedBytes: number;
  copied: boolean;
}

export class Qcow2ClusterMap {
  readonly clusterSize: number;
  readonly l2Entries: number;
  private readonly l1: Uint8Array;
  private readonly l1View: DataView;
  private readonly l2Cache = new TableCache(64);
  private readonly l2Io = new Map<number, Promise<void>>();
  /** Bit position of the compressed sector count (spec: x = 62 - (cluster_bits - 8)). */
  private readonly csizeShift: number;

  private constructor(
    private readonly file: DiskFile,
    private readonly header: Qcow2Header,
    l1: Uint8Array,
  ) {
    this.clusterSize = header.clusterSize;
    this.l2Entries = header.clusterSize / 8;
    this.l1 = l1;
    this.l1View = new DataView(l1.buffer, l1.byteOffset, l1.length);
    this.csizeShift = 62 - (header.clusterBits - 8);
  }

  static async load(file: DiskFile, header: Qcow2Header): Promise<Qcow2ClusterMap> {
    const l1 = new Uint8Array(header.l1Size * 8);
    if (l1.length > 0) await file.read(header.l1TableOffset, l1);
    return new Qcow2ClusterMap(file, header, l1);
  }

  private bad(problem: string): Qcow2Error {
    return new Qcow2Error("bad-disk-image", `disk image ${this.file.path}: ${problem}`);
  }

  /** Checks a cluster offset from the file: aligned, not the header, inside the file. */
  private checkedCluster(hi: number, lo: number, what: string): number {
    const offset = (hi & 0x00ffffff) * 2 ** 32 + ((lo & ~511) >>> 0);
    if (offset % this.clusterSize !== 0)
      throw this.bad(`${what} offset 0x${offset.toString(16)} is not cluster-aligned`);
    if (offset === 0) throw this.bad(`${what} points at the header`);
    if (offset >= this.file.size)
      throw this.bad(`${what} at 0x${offset.toString(16)} lies beyond the end of the file`);
    return offset;
  }

  /** The L2 table's offset for L1 index `i` (0: none), and whether it may be changed in place. */
  l2Offset(i: number): number {
    if (i >= this.header.l1Size) return 0;
    const hi = this.l1View.getUint32(i * 8);
    const lo = this.l1View.getUint32(i * 8 + 4);
    if ((hi & 0x00ffffff) === 0 && (lo & ~511) === 0) return 0;
    const offset = this.checkedCluster(hi, lo, `L2 table ${i}`);
    if (offset + this.clusterSize > this.file.size)
      throw this.bad(`L2 table ${i} at 0x${offset.toString(16)} lies beyond the end of the file`);
    return offset;
  }

  l2Copied(i: number): boolean {
    return (this.l1View.getUint32(i * 8) & OFLAG_COPIED_HI) !== 0;
  }

  /** The L2 table at `offset`, from the cache or the file. */
  async l2Table(offset: number): Promise<Uint8Array> {
    const cached = this.l2Cache.get(offset);
    if (cached) return cached;
    return this.inTurn(offset, async () => {
      const loaded = this.l2Cache.get(offset);
      if (loaded) return loaded;
      const t = new Uint8Array(this.clusterSize);
      await this.file.read(offset, t);
      this.l2Cache.set(offset, t);
      return t;
    });
  }

  /**
   * Runs loads and writes of the L2 table at `offset` one after another. Without this, a load that began
   * before an entry was written could finish after it and cache the table as it was: a cluster just
   * allocated would look unallocated, and be allocated again.
   */
  private inTurn<T>(offset: number, op: () => Promise<T>): Promise<T> {
    const run = (this.l2Io.get(offset) ?? Promise.resolve()).then(op);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.l2Io.set(offset, tail);
    void tail.then(() => {
      if (this.l2Io.get(offset) === tail) this.l2Io.delete(offset);
    });
    return run;
  }

  /** Like lookup when the L2 table needed is cached (or none is needed); false, `out` untouched, if not. */
  lookupCached(guestOffset: number, out: ClusterMapping): boolean {
    const cluster = Math.floor(guestOffset / this.clusterSize);
    const l2Offset = this.l2Offset(Math.floor(cluster / this.l2Entries));
    if (l2Offset === 0) {
      out.kind = CLUSTER_UNALLOCATED;
      out.host = 0;
      out.copied = false;
      return true;
    }
    const table = this.l2Cache.get(l2Offset);
    if (table === undefined) return false;
    this.decode(table, cluster % this.l2Entries, out);
    return true;
  }

  /** Fills `out` with the mapping of the guest cluster holding `guestOffset`, reading its L2 table if need be. */
  async lookup(guestOffset: number, out: ClusterMapping): Promise<void> {
    if (this.lookupCached(guestOffset, out)) return;
    const cluster = Math.floor(guestOffset / this.clusterSize);
    const table = await this.l2Table(this.l2Offset(Math.floor(cluster / this.l2Entries)));
    this.decode(table, cluster % this.l2Entries, out);
  }

  /** Decodes L2 entry `i` of `table` into `out`, validating its offsets. */
  decode(table: Uint8Array, i: number, out: ClusterMapping): void {
    const v = new DataView(table.buffer, table.byteOffset + i * 8, 8);
    const hi = v.getUint32(0);
    const lo = v.getUint32(4);
    out.copied = (hi & OFLAG_COPIED_HI) !== 0;
    if (hi & OFLAG_COMPRESSED_HI) {
      // Spec: bits 0..x-1 the host byte offset, bits x..61 the number of additional 512-byte sectors.
      const hiBits = this.csizeShift - 32;
      const offset = (hi & (2 ** hiBits - 1)) * 2 ** 32 + lo;
      const sectors = ((hi & 0x3fffffff) >>> hiBits) + 1;
      if (offset >= this.file.size || offset < this.clusterSize)
        throw this.bad(`compressed cluster at 0x${offset.toString(16)} lies outside the file`);
      out.kind = CLUSTER_COMPRESSED;
      out.host = offset;
      out.compressedBytes = sectors * 512 - (offset % 512);
      return;
    }
    const hasOffset = (hi & 0x00ffffff) !== 0 || (lo & ~511) !== 0;
    if (this.header.version === 3 && lo & OFLAG_ZERO_LO) {
      out.kind = CLUSTER_ZERO;
      out.host = hasOffset ? this.checkedCluster(hi, lo, "zero cluster") : 0;
      return;
    }
    if (!hasOffset) {
      out.kind = CLUSTER_UNALLOCATED;
      out.host = 0;
      return;
    }
    out.kind = CLUSTER_DATA;
    out.host = this.checkedCluster(hi, lo, "data cluster");
  }

  /**
   * Reports every cluster the mapping references: each L2 table to `table` (before it is read, so a
   * caller that refuses a table named twice reads none twice), and each host range an entry holds to
   * `data` (a data or preallocated zero cluster; a compressed cluster's bytes). Offsets are validated as
   * for any read. Tables are read past the cache, which the guest's I/O keeps for itself.
   */
  async countReferences(
    table: (offset: number, what: string) => void,
    data: (offset: number, bytes: number) => void,
  ): Promise<void> {
    const m: ClusterMapping = { kind: CLUSTER_UNALLOCATED, host: 0, compressedBytes: 0, copied: false };
    const t = new Uint8Array(this.clusterSize);
    for (let i = 0; i < this.header.l1Size; i++) {
      const offset = this.l2Offset(i);
      if (offset === 0) continue;
      table(offset, `L2 table ${i}`);
      await this.file.read(offset, t);
      for (let k = 0; k < this.l2Entries; k++) {
        this.decode(t, k, m);
        if (m.kind === CLUSTER_COMPRESSED) data(m.host, m.compressedBytes);
        else if (m.kind !== CLUSTER_UNALLOCATED && m.host !== 0) data(m.host, this.clusterSize);
      }
    }
  }

  /** Sets L2 entries [first, first+count) of the table at `l2Offset` from `entries` (hi, lo pairs). */
  async setL2Entries(l2Offset: number, first: number, entries: Uint32Array): Promise<void> {
    const bytes = new Uint8Array(entries.length * 4);
    const v = new DataView(bytes.buffer);
    for (let k = 0; k < entries.length; k++) v.setUint32(k * 4, entries[k]!);
    await this.inTurn(l2Offset, async () => {
      await this.file.write(l2Offset + first * 8, bytes);
      // The cache changes only once the file has: a reader in between still sees the old, valid mapping.
      this.l2Cache.get(l2Offset)?.set(bytes, first * 8);
    });
  }

  /** Points L1 entry `i` at a new L2 table (written and synced by the caller first). */
  async setL1Entry(i: number, l2Offset: number): Promise<void> {
    const bytes = new Uint8Array(8);
    const v = new DataView(bytes.buffer);
    v.setUint32(0, (OFLAG_COPIED_HI | Math.floor(l2Offset / 2 ** 32)) >>> 0);
    v.setUint32(4, l2Offset >>> 0);
    await this.file.write(this.header.l1TableOffset + i * 8, bytes);
    this.l1.set(bytes, i * 8);
  }

  /** Puts a new L2 table into the cache before L1 names it, so no reader loads it while it is changing. */
  cacheL2(offset: number, table: Uint8Array): void {
    this.l2Cache.set(offset, table);
  }
}

/** The hi/lo words of an L2 entry for a data cluster at `host` with the given flags. */
export function l2Words(host: number, zero: boolean, out: Uint32Array, at: number): void {
  out[at] = host === 0 ? 0 : (OFLAG_COPIED_HI | Math.floor(host / 2 ** 32)) >>> 0;
  out[at + 1] = ((host >>> 0) | (zero ? OFLAG_ZERO_LO : 0)) >>> 0;
}
