// The reference counts of a writable qcow2 file (spec: "Host cluster management"): the refcount table, its
// refcount blocks behind a bounded cache, and cluster allocation. Clusters are handed out from a small pool
// whose refcounts were written and synced first, so an L2 entry can never reach the disk pointing at a
// cluster whose refcount did not; a crash leaks the unused part of the pool, never more. Frees wait for the
// next flush (the L2 entries that dropped them are synced first), so a crash never leaves a referenced
// cluster with a refcount of zero.

import type { DiskFile } from "./disk-file.ts";
import { Qcow2Error } from "./qcow2-error.ts";
import { MAX_REFTABLE_BYTES, type Qcow2Header } from "./qcow2-header.ts";
import { TableCache } from "./table-cache.ts";

/**
 * Bytes of clusters reserved per sync: 2 MiB, doubling up to 32 MiB while refills come less than a second
 * apart, so a guest filling its disk costs one fdatasync per 32 MiB. What a crash leaks of a pool mostly
 * lies past the end of the file, where it takes no space, and the next writable open gives it back
 * (qcow2-leak-repair.ts).
 */
const POOL_MIN_BYTES = 2 * 1024 * 1024;
export const POOL_MAX_BYTES = 32 * 1024 * 1024;
const POOL_GROW_WITHIN_MS = 1000;
/** Frees held back before a flush forces them out anyway. */
const MAX_PENDING_FREES = 4096;
/** Clusters past the end of the file that may legitimately have refcounts (a crashed writer's pool). */
const MAX_USED_PAST_END = 1024;

export class Qcow2Refcounts {
  private readonly clusterSize: number;
  private readonly bits: number;
  private readonly perBlock: number;
  private readonly max: number;
  private table: Uint8Array;
  private tableView: DataView;
  /** Where the refcount table is now: it moves when it grows. */
  private tableOffset: number;
  private readonly blocks = new TableCache(32);
  private readonly pool: number[] = [];
  /** Clusters reserved at the next refill (POOL_MIN_BYTES to POOL_MAX_BYTES worth). */
  private poolClusters: number;
  private lastRefillMs = Number.NEGATIVE_INFINITY;
  private pendingFrees: number[] = [];
  /** No cluster below this index is free (a hint; frees move it back). */
  private freeHint = 0;

  private constructor(
    private readonly file: DiskFile,
    private readonly header: Qcow2Header,
    table: Uint8Array,
    /** The largest pool (see POOL_MAX_BYTES; smaller for measurements). */
    private readonly poolMaxBytes: number,
  ) {
    this.clusterSize = header.clusterSize;
    this.bits = 2 ** header.refcountOrder;
    this.perBlock = (header.clusterSize * 8) / this.bits;
    this.max = this.bits >= 53 ? Number.MAX_SAFE_INTEGER : 2 ** this.bits - 1;
    this.table = table;
    this.tableView = new DataView(table.buffer, table.byteOffset, table.length);
    this.tableOffset = header.refcountTableOffset;
    this.poolClusters = this.minPoolClusters;
  }

  private get minPoolClusters(): number {
    return Math.max(1, Math.min(POOL_MIN_BYTES, this.poolMaxBytes) / this.clusterSize);
  }

  static async load(
    file: DiskFile,
    header: Qcow2Header,
    poolMaxBytes = POOL_MAX_BYTES,
  ): Promise<Qcow2Refcounts> {
    const table = new Uint8Array(header.refcountTableClusters * header.clusterSize);
    await file.read(header.refcountTableOffset, table);
    return new Qcow2Refcounts(file, header, table, poolMaxBytes);
  }

  private bad(problem: string): Qcow2Error {
    return new Qcow2Error("bad-disk-image", `disk image ${this.file.path}: ${problem}`);
  }

  /** The offset of refcount block `index`, validated, or 0 when it is not allocated. */
  private blockOffset(index: number): number {
    if (index * 8 >= this.table.length) return 0;
    const hi = this.tableView.getUint32(index * 8);
    const lo = this.tableView.getUint32(index * 8 + 4);
    if (hi === 0 && lo === 0) return 0;
    if (hi >= 2 ** 21) throw this.bad(`refcount block ${index} has an impossible offset`);
    const offset = hi * 2 ** 32 + ((lo & ~511) >>> 0);
    if (offset % this.clusterSize !== 0 || offset === 0)
      throw this.bad(`refcount block ${index} offset 0x${offset.toString(16)} is not cluster-aligned`);
    if (offset + this.clusterSize > this.file.size)
      throw this.bad(`refcount block ${index} at 0x${offset.toString(16)} lies beyond the end of the file`);
    return offset;
  }

  private async block(offset: number): Promise<Uint8Array> {
    const cached = this.blocks.get(offset);
    if (cached) return cached;
    const b = new Uint8Array(this.clusterSize);
    await this.file.read(offset, b);
    this.blocks.set(offset, b);
    return b;
  }

  private entry(block: Uint8Array, i: number): number {
    const bits = this.bits;
    if (bits < 8) {
      // Sub-byte refcounts are packed from the least significant bit (QEMU's get_refcount_ro0..2).
      const perByte = 8 / bits;
      return (block[Math.floor(i / perByte)]! >> ((i % perByte) * bits)) & (2 ** bits - 1);
    }
    const bytes = bits / 8;
    let v = 0;
    for (let k = 0; k < bytes; k++) v = v * 256 + block[i * bytes + k]!;
    return v;
  }

  private setEntry(block: Uint8Array, i: number, value: number): void {
    const bits = this.bits;
    if (bits < 8) {
      const perByte = 8 / bits;
      const shift = (i % perByte) * bits;
      const at = Math.floor(i / perByte);
      block[at] = (block[at]! & ~((2 ** bits - 1) << shift)) | (value << shift);
      return;
    }
    const bytes = bits / 8;
    for (let k = bytes - 1; k >= 0; k--) {
      block[i * bytes + k] = value % 256;
      value = Math.floor(value / 256);
    }
  }

  /** Adds `delta` to the refcounts of `clusters` (all in one block), with one write of the changed bytes. */
  private async change(clusters: number[], delta: number): Promise<void> {
    const index = Math.floor(clusters[0]! / this.perBlock);
    const offset = this.blockOffset(index);
    if (offset === 0) throw this.bad(`refcount block ${index} is missing for an allocated cluster`);
    const block = await this.block(offset);
    let lo = Number.POSITIVE_INFINITY;
    let hi = 0;
    for (const c of clusters) {
      const i = c % this.perBlock;
      const old = this.entry(block, i);
      const now = old + delta;
      if (now > this.max)
        throw this.bad(`refcount of cluster ${c} would overflow (${old} is the ${this.bits}-bit maximum)`);
      if (now < 0) throw this.bad(`refcount of cluster ${c} would drop below zero`);
      this.setEntry(block, i, now);
      const byte = Math.floor((i * this.bits) / 8);
      lo = Math.min(lo, byte);
      hi = Math.max(hi, byte + Math.max(1, this.bits / 8));
    }
    await this.file.write(offset + lo, block.subarray(lo, hi));
  }

  /** One more reference to host cluster `cluster` (refused on overflow). */
  async increment(cluster: number): Promise<void> {
    await this.change([cluster], 1);
  }

  /** Applies `delta` to many clusters, one write per refcount block touched. */
  private async changeAll(clusters: number[], delta: number): Promise<void> {
    clusters.sort((a, b) => a - b);
    let run: number[] = [];
    for (const c of clusters) {
      if (run.length > 0 && Math.floor(c / this.perBlock) !== Math.floor(run[0]! / this.perBlock)) {
        await this.change(run, delta);
        run = [];
      }
      run.push(c);
    }
    if (run.length > 0) await this.change(run, delta);
  }

  /** A cluster (byte offset) whose refcount is already 1 on disk; the caller will reference it. */
  async allocate(): Promise<number> {
    if (this.pool.length === 0) await this.refill();
    return this.pool.shift()! * this.clusterSize;
  }

  /** Finds free clusters, takes them (refcount 1) and syncs, so they are safe to reference. */
  private async refill(): Promise<void> {
    const now = performance.now();
    this.poolClusters =
      now - this.lastRefillMs < POOL_GROW_WITHIN_MS
        ? Math.min(this.poolClusters * 2, Math.max(1, this.poolMaxBytes / this.clusterSize))
        : this.minPoolClusters;
    this.lastRefillMs = now;
    const taken: number[] = [];
    let c = this.freeHint;
    while (taken.length < this.poolClusters) {
      // A hostile file may count every cluster as used, far past its end: stop rather than scan for ever.
      if (c > Math.ceil(this.file.size / this.clusterSize) + MAX_USED_PAST_END)
        throw this.bad("its refcounts claim clusters far beyond the end of the file");
      const index = Math.floor(c / this.perBlock);
      const offset = this.blockOffset(index);
      if (offset === 0) {
        // No refcount block covers this range yet, so all of it is free: the new block goes at its first
        // free cluster and counts itself (a self-describing block, as QEMU places them).
        if (!this.isFixedMetadata(c)) await this.newBlock(index, c);
        c++;
        continue;
      }
      const block = await this.block(offset);
      const blockEnd = (index + 1) * this.perBlock;
      for (; c < blockEnd && taken.length < this.poolClusters; c++)
        if (this.entry(block, c % this.perBlock) === 0 && !this.isFixedMetadata(c)) taken.push(c);
    }
    this.freeHint = c;
    await this.changeAll([...taken], 1);
    await this.file.sync();
    this.pool.push(...taken);
  }

  /**
   * The header, L1 table and refcount table never move: a (hostile or corrupt) file that counts them as
   * free must not get data written over them.
   */
  private isFixedMetadata(cluster: number): boolean {
    const h = this.header;
    const at = cluster * this.clusterSize;
    const inside = (start: number, bytes: number) => at + this.clusterSize > start && at < start + bytes;
    return (
      cluster === 0 || inside(h.l1TableOffset, h.l1Size * 8) || inside(this.tableOffset, this.table.length)
    );
  }

  private async newBlock(index: number, at: number): Promise<number> {
    if ((index + 1) * 8 > this.table.length) {
      await this.growTable(index, at);
      return this.blockOffset(index);
    }
    const offset = at * this.clusterSize;
    const block = new Uint8Array(this.clusterSize);
    this.setEntry(block, at % this.perBlock, 1);
    await this.file.write(offset, block);
    await this.file.sync();
    this.blocks.set(offset, block);
    await this.setTableEntry(index, offset);
    return offset;
  }

  private async setTableEntry(index: number, offset: number): Promise<void> {
    const entry = u64Bytes(offset);
    await this.file.write(this.tableOffset + index * 8, entry);
    this.table.set(entry, index * 8);
  }

  /**
   * Moves the refcount table to a bigger one that covers block `index` (QEMU grows it the same way): the
   * new table and the refcount blocks that count it go at cluster `at` and after (all free: no block covers
   * them yet), are written and synced, and only then does the header point at them; the old table's
   * clusters are freed afterwards. A crash before the header write leaves unreferenced clusters, no more.
   */
  private async growTable(index: number, at: number): Promise<void> {
    const cs = this.clusterSize;
    let tableClusters = Math.ceil(Math.max((index + 1) * 8, this.table.length * 2) / cs);
    let blocks = 0;
    // The new clusters [at, at + tableClusters + blocks) need blocks of their own; iterate to a fixed point.
    for (;;) {
      const first = Math.floor(at / this.perBlock);
      const last = Math.floor((at + tableClusters + blocks - 1) / this.perBlock);
      const needBlocks = last - first + 1;
      const needTable = Math.ceil(Math.max((last + 1) * 8, (index + 1) * 8, this.table.length) / cs);
      if (needBlocks === blocks && needTable <= tableClusters) break;
      blocks = needBlocks;
      tableClusters = Math.max(tableClusters, needTable);
    }
    if (tableClusters * cs > MAX_REFTABLE_BYTES)
      throw new Qcow2Error(
        "disk-io-failed",
        `disk image ${this.file.path} is full: its refcount table cannot grow past 8 MiB`,
      );
    const table = new Uint8Array(tableClusters * cs);
    table.set(this.table);
    const tableAt = at * cs;
    const firstBlockIndex = Math.floor(at / this.perBlock);
    for (let b = 0; b < blocks; b++) {
      const blockCluster = at + tableClusters + b;
      const block = new Uint8Array(cs);
      for (let c = at; c < at + tableClusters + blocks; c++)
        if (Math.floor(c / this.perBlock) === firstBlockIndex + b) this.setEntry(block, c % this.perBlock, 1);
      await this.file.write(blockCluster * cs, block);
      this.blocks.set(blockCluster * cs, block);
      table.set(u64Bytes(blockCluster * cs), (firstBlockIndex + b) * 8);
    }
    await this.file.write(tableAt, table);
    await this.file.sync();
    const header = new Uint8Array(12);
    header.set(u64Bytes(tableAt), 0);
    new DataView(header.buffer).setUint32(8, tableClusters);
    await this.file.write(48, header); // refcount_table_offset and refcount_table_clusters, one sector
    await this.file.sync();
    const oldAt = this.tableOffset;
    const oldClusters = this.table.length / cs;
    this.table = table;
    this.tableView = new DataView(table.buffer);
    this.tableOffset = tableAt;
    for (let c = 0; c < oldClusters; c++) this.release(oldAt + c * cs);
  }

  /**
   * Tells `count` the clusters the refcount structures themselves occupy: the table and every block it
   * names (each offset validated by blockOffset before it is reported).
   */
  countOwnClusters(count: (offset: number, bytes: number, what: string) => void): void {
    count(this.tableOffset, this.table.length, "the refcount table");
    for (let i = 0; i * 8 < this.table.length; i++) {
      const offset = this.blockOffset(i);
      if (offset !== 0) count(offset, this.clusterSize, `refcount block ${i}`);
    }
  }

  /**
   * Lowers every refcount above `expected[cluster]` (the references counted from the metadata; 0 past
   * its end) to it: leaked clusters get 0. Only counts nothing references are lowered, so a crash in the
   * middle leaves leaks again, never a referenced cluster counted as free. A count below its references
   * is corruption this does not guess at: refused. Returns how many clusters it freed; syncs if any.
   */
  async reclaim(expected: Uint32Array): Promise<number> {
    let freed = 0;
    let changed = false;
    const covered = Math.min(expected.length, (this.table.length / 8) * this.perBlock);
    for (let index = 0; index * 8 < this.table.length; index++) {
      const offset = this.blockOffset(index);
      const first = index * this.perBlock;
      if (offset === 0) {
        for (let c = first; c < Math.min(first + this.perBlock, expected.length); c++)
          if (expected[c]! > 0) throw this.tooLow(c, 0, expected[c]!);
        continue;
      }
      const block = await this.block(offset);
      let lo = Number.POSITIVE_INFINITY;
      let hi = 0;
      for (let i = 0; i < this.perBlock; i++) {
        const c = first + i;
        const want = c < expected.length ? expected[c]! : 0;
        const have = this.entry(block, i);
        if (have === want) continue;
        if (have < want) throw this.tooLow(c, have, want);
        this.setEntry(block, i, want);
        if (want === 0) {
          freed++;
          this.freeHint = Math.min(this.freeHint, c);
        }
        const byte = Math.floor((i * this.bits) / 8);
        lo = Math.min(lo, byte);
        hi = Math.max(hi, byte + Math.max(1, this.bits / 8));
      }
      if (hi > 0) {
        await this.file.write(offset + lo, block.subarray(lo, hi));
        changed = true;
      }
    }
    // Clusters past the last block the table can name: none may be referenced.
    for (let c = covered; c < expected.length; c++)
      if (expected[c]! > 0) throw this.tooLow(c, 0, expected[c]!);
    if (changed) await this.file.sync();
    return freed;
  }

  private tooLow(cluster: number, have: number, want: number): Qcow2Error {
    return this.bad(
      `cluster ${cluster} is referenced ${want} times but its refcount is ${have}; repair it with qemu-img check -r all`,
    );
  }

  /** The largest refcount this file's refcount width can hold. */
  get maxRefcount(): number {
    return this.max;
  }

  /** Drops one reference to the cluster at byte offset `offset` at the next flush (see the file comment). */
  release(offset: number): void {
    this.pendingFrees.push(Math.floor(offset / this.clusterSize));
  }

  get hasManyPendingFrees(): boolean {
    return this.pendingFrees.length >= MAX_PENDING_FREES;
  }

  /** Applies the held-back frees. Call only after a sync made the L2 changes that dropped them durable. */
  async applyFrees(): Promise<void> {
    if (this.pendingFrees.length === 0) return;
    const frees = this.pendingFrees;
    this.pendingFrees = [];
    await this.changeAll(frees, -1);
    for (const c of frees) this.freeHint = Math.min(this.freeHint, c);
  }

  /** Gives back the pool's unused clusters (before closing: else they would show as leaks). */
  async returnPool(): Promise<void> {
    const unused = this.pool.splice(0);
    if (unused.length === 0) return;
    await this.changeAll(unused, -1);
    for (const c of unused) this.freeHint = Math.min(this.freeHint, c);
  }
}

function u64Bytes(value: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, Math.floor(value / 2 ** 32));
  v.setUint32(4, value >>> 0);
  return out;
}
