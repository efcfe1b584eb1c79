// The compiled blocks of one guest RAM, keyed by RAM byte offset (guest-physical address − RAM base), and the
// bookkeeping that keeps them true to memory: a page holding compiled code is a "code page"; every write into
// one (a hart's store, AMO or page-table A/D update, a device's DMA) drops all blocks of that page at once by
// bumping the page's generation. Harts refuse write-TLB fast paths for code pages, so their stores reach the
// slow path that notices. Derived state only: nothing here is saved in a snapshot.

import type { GuestRam } from "../bus/guest-ram.ts";
import { type BlockFn, compileBlock } from "./block-compiler.ts";

/**
 * Executions of a block start before it is compiled: cold code stays in the interpreter. High on purpose: V8
 * runs a new function in its own interpreter until it has optimized it (about 6 ms of compiling per block on
 * the optimizing compiler's thread, more after a deoptimization), so a block pays off only when it runs very
 * often. Booting Linux: 40 made ~4,000 blocks and the boot 3–5× slower; 10,000 (~150 blocks) ~20% slower;
 * 30,000 (~70 blocks: memcpy, memset, inflate, checksums) the same as the interpreter alone. A hot loop
 * reaches it within a millisecond.
 */
export const JIT_THRESHOLD = 30000;
/** Most blocks made (compiled or marked uncompilable) before the whole cache is dropped, so a guest that keeps
 * writing new hot code cannot grow the host's heap without bound: a block's source and bytecode take a few
 * KiB, its optimized code tens more, so this bounds the cache to well under 100 MiB. Booting Linux makes ~70. */
export const MAX_BLOCKS = 2048;
const DM_BITS = 14;
export const DM_MASK = (1 << DM_BITS) - 1;
/** The table is two-way: a start's set is (off >> 1) & SET_MASK, its slots 2·set and 2·set + 1. Direct-mapped,
 * two hot starts 16 KiB apart in RAM that ran by turns reset each other's count forever and neither was ever
 * compiled (Ackermann's unrolled code in the recursion bench: 10 % of its instructions interpreted). */
export const SET_MASK = DM_MASK >>> 1;
/** Pass length of a "this start does not compile" marker: never fits the budget, so it is never run. */
const NEVER = 0x40000000;

/** One compiled block: valid while `gen` equals its page's generation. */
export class CompiledBlock {
  /** Per link slot of `run` (CompiledCode.exits): the block last found at that exit's pc, which is in this
   * block's page, so a hart goes on there without looking it up (it checks the generation, as for any block).
   * Links hold only blocks made since the last flush, so they keep no more alive than MAX_BLOCKS. */
  readonly links: Array<CompiledBlock | null>;
  /** Per link slot: 1 at the first of a JALR's two slots, whose targets vary: the block found is kept in the
   * first and the one it replaces moves to the second. */
  readonly pairs: Uint8Array;

  constructor(
    readonly off: number,
    readonly gen: number,
    /** Most instructions one call retires before it returns or loops. */
    readonly len: number,
    readonly run: BlockFn,
    exits = 0,
    pairs: readonly number[] = [],
  ) {
    this.links = new Array<CompiledBlock | null>(exits).fill(null);
    this.pairs = new Uint8Array(exits);
    for (const p of pairs) this.pairs[p] = 1;
  }
}

/** What the cache asks of each hart that runs its blocks. */
export interface BlockCacheClient {
  /** Forget write-TLB entries onto RAM page `page` (it now holds code), in every TLB set. */
  dropWriteMappings(page: number): void;
  /** Code changed under the hart: leave any running block at the next instruction boundary. */
  codeChanged(): void;
}

function neverRuns(): number {
  return -1;
}

export class BlockCache {
  /** Per RAM page: bumped when the page's blocks are dropped. */
  readonly pageGen: Int32Array;
  /** Per RAM page: 1 while blocks compiled from it may be valid. */
  readonly codePage: Uint8Array;
  /** The blocks, two-way set-associative (SET_MASK): a hart looks one up inline, with no call. A block evicted
   * by another start of the same set is garbage, compiled again if it gets hot again. */
  readonly dm: Array<CompiledBlock | null> = new Array(DM_MASK + 1).fill(null);
  /** Per slot: a start being counted and how often it was seen (counted inline by the hart: a start not
   * counted in either slot of its set takes one whose count is zero, else lowers both). */
  readonly hotTag = new Int32Array(DM_MASK + 1).fill(-1);
  readonly hotCount = new Int32Array(DM_MASK + 1);
  private readonly clients: BlockCacheClient[] = [];
  /** Alternates which slot of a full set gives its block up. */
  private evict = 0;
  /** Executions of a block start before it is compiled (tests lower it). */
  threshold = JIT_THRESHOLD;
  /** Most blocks made before the cache is emptied (tests lower it). */
  maxBlocks = MAX_BLOCKS;
  /** Blocks made since the last flush: a bound on what the cache holds. */
  private made = 0;
  /** Blocks compiled since creation (for tests and stats). */
  compiled = 0;
  /** Times the cache was emptied because it was full. */
  flushes = 0;
  /** Pages whose blocks a write dropped (for tests and stats). */
  invalidations = 0;

  /** Harts on other threads share this RAM (a SharedArrayBuffer): blocks make 64-bit accesses whole. */
  private readonly atomic64: boolean;

  constructor(private readonly ram: GuestRam) {
    this.atomic64 = ram.shared;
    const pages = ram.size >>> 12;
    this.pageGen = new Int32Array(pages);
    this.codePage = new Uint8Array(pages);
    ram.addWriteListener(this);
  }

  /** The cache of `ram`, shared by every hart on it (a store by one must drop blocks another runs). */
  static of(ram: GuestRam): BlockCache {
    let c = caches.get(ram);
    if (c === undefined) {
      c = new BlockCache(ram);
      caches.set(ram, c);
    }
    return c;
  }

  /** Blocks made since the last flush (at most maxBlocks). */
  get size(): number {
    return this.made;
  }

  addClient(c: BlockCacheClient): void {
    this.clients.push(c);
  }

  /** Compiles the block at RAM offset `off` (its start got hot, counted in slot `counter`) and installs it in
   * its set; a start that does not compile gets a marker that never runs, so it is not tried again until its
   * page changes. */
  compile(off: number, counter = ((off >>> 1) & SET_MASK) << 1): CompiledBlock {
    if (this.made >= this.maxBlocks) this.flush();
    const page = off >>> 12;
    const code = compileBlock(this.ram.u16, off, this.atomic64);
    const gen = this.pageGen[page]!;
    const b =
      code === null
        ? new CompiledBlock(off, gen, NEVER, neverRuns)
        : new CompiledBlock(off, gen, code.len, code.fn, code.exits, code.pairs);
    if (code !== null) this.compiled++;
    this.made++;
    this.dm[this.slotFor(off)] = b;
    this.hotTag[counter] = -1;
    this.hotCount[counter] = 0;
    if (this.codePage[page] === 0) {
      this.codePage[page] = 1;
      for (const c of this.clients) c.dropWriteMappings(page);
    }
    return b;
  }

  /** The slot of off's set to put its block in: one holding nothing, a stale block or off's own, else each
   * slot in turn. */
  private slotFor(off: number): number {
    const k0 = ((off >>> 1) & SET_MASK) << 1;
    for (let k = k0; k <= k0 + 1; k++) {
      const b = this.dm[k]!;
      if (b === null || b.off === off || b.gen !== this.pageGen[b.off >>> 12]) return k;
    }
    this.evict ^= 1;
    return k0 + this.evict;
  }

  /** Drops every block (cache full, fence.i of a whole machine, reset, snapshot load). */
  flush(): void {
    if (this.made > 0) this.flushes++;
    this.made = 0;
    this.dm.fill(null);
    this.hotTag.fill(-1);
    this.hotCount.fill(0);
    // Generations move on so no block still referenced anywhere matches; code pages stay marked until their
    // next write, which only costs that write the slow path.
    for (let p = 0; p < this.pageGen.length; p++) this.pageGen[p] = (this.pageGen[p]! + 1) | 0;
    for (const c of this.clients) c.codeChanged();
  }

  /** RAM page `page` was written: drop its blocks. */
  invalidatePage(page: number): void {
    this.invalidations++;
    this.codePage[page] = 0;
    this.pageGen[page] = (this.pageGen[page]! + 1) | 0;
    for (const c of this.clients) c.codeChanged();
  }

  /** GuestRam write listener: a device wrote [off, off + len) of RAM. */
  ramWritten(off: number, len: number): void {
    if (len <= 0) return;
    const last = Math.min((off + len - 1) >>> 12, this.codePage.length - 1);
    for (let p = off >>> 12; p <= last; p++) if (this.codePage[p] !== 0) this.invalidatePage(p);
  }
}

const caches = new WeakMap<GuestRam, BlockCache>();
