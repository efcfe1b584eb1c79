// The compiled blocks of one guest RAM, keyed by RAM byte offset (guest-physical address − RAM base), and the
// bookkeeping that keeps them true to memory: a page holding compiled code is a "code page"; every write into
// one (a hart's store, AMO or page-table A/D update, a device's DMA) drops all blocks of that page at once by
// bumping the page's generation. Harts refuse write-TLB fast paths for code pages, so their stores reach the
// slow path that notices. Derived state only: nothing here is saved in a snapshot.

import type { GuestRam } from "../bus/guest-ram.ts";
import { type BlockFn, compileBlock } from "./block-compiler.ts";

/** Executions of a block start before it is compiled: cold code stays in the interpreter. */
export const JIT_THRESHOLD = 40;
/** Most blocks kept (compiled or marked uncompilable); the whole cache is dropped when it is full, so a guest
 * that keeps writing new code cannot grow the host's heap without bound. */
export const MAX_BLOCKS = 16384;
const DM_BITS = 14;
export const DM_MASK = (1 << DM_BITS) - 1;
const HOT_BITS = 14;
const HOT_MASK = (1 << HOT_BITS) - 1;
/** Pass length of a "this start does not compile" marker: never fits the budget, so it is never run. */
const NEVER = 0x40000000;

/** One compiled block: valid while `gen` equals its page's generation. */
export class CompiledBlock {
  constructor(
    readonly off: number,
    readonly gen: number,
    /** Most instructions one call retires before it returns or loops. */
    readonly len: number,
    readonly run: BlockFn,
  ) {}
}

/** What the cache asks of each hart that runs its blocks. */
export interface BlockCacheClient {
  /** Forget write-TLB entries onto RAM page `page` (it now holds code), in every TLB set. */
  dropWriteMappings(page: number): void;
  /** Code changed under the hart: leave any running block at the next instruction boundary. */
  codeChanged(): void;
}

function neverRuns(): void {}

export class BlockCache {
  /** Per RAM page: bumped when the page's blocks are dropped. */
  readonly pageGen: Int32Array;
  /** Per RAM page: 1 while blocks compiled from it may be valid. */
  readonly codePage: Uint8Array;
  /** Direct-mapped first level, indexed by (off >> 1) & DM_MASK. */
  readonly dm: Array<CompiledBlock | null> = new Array(DM_MASK + 1).fill(null);
  private readonly blocks = new Map<number, CompiledBlock>();
  private readonly hotTag = new Int32Array(HOT_MASK + 1).fill(-1);
  private readonly hotCount = new Int32Array(HOT_MASK + 1);
  private readonly clients: BlockCacheClient[] = [];
  /** Executions of a block start before it is compiled (tests lower it). */
  threshold = JIT_THRESHOLD;
  /** Most blocks kept before the cache is emptied (tests lower it). */
  maxBlocks = MAX_BLOCKS;
  /** Blocks compiled since creation (for tests and stats). */
  compiled = 0;
  /** Times the cache was emptied because it was full. */
  flushes = 0;

  constructor(private readonly ram: GuestRam) {
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

  get size(): number {
    return this.blocks.size;
  }

  addClient(c: BlockCacheClient): void {
    this.clients.push(c);
  }

  /**
   * The block starting at RAM offset `off` after a first-level miss: from the map, or compiled once the start
   * has been seen JIT_THRESHOLD times. Null while it is still cold.
   */
  miss(off: number): CompiledBlock | null {
    const page = off >>> 12;
    const gen = this.pageGen[page]!;
    let b = this.blocks.get(off);
    if (b === undefined || b.gen !== gen) {
      const k = (off >>> 1) & HOT_MASK;
      if (this.hotTag[k] !== off) {
        this.hotTag[k] = off;
        this.hotCount[k] = 0;
      }
      if (++this.hotCount[k]! < this.threshold) return null;
      this.hotCount[k] = 0;
      b = this.compile(off, page, gen);
    }
    this.dm[(off >>> 1) & DM_MASK] = b;
    return b;
  }

  private compile(off: number, page: number, gen: number): CompiledBlock {
    if (this.blocks.size >= this.maxBlocks) this.flush();
    const code = compileBlock(this.ram.u16, off);
    const b =
      code === null
        ? new CompiledBlock(off, gen, NEVER, neverRuns)
        : new CompiledBlock(off, gen, code.len, code.fn);
    if (code !== null) this.compiled++;
    this.blocks.set(off, b);
    if (this.codePage[page] === 0) {
      this.codePage[page] = 1;
      for (const c of this.clients) c.dropWriteMappings(page);
    }
    return b;
  }

  /** Drops every block (cache full, fence.i of a whole machine, reset, snapshot load). */
  flush(): void {
    if (this.blocks.size > 0) this.flushes++;
    this.blocks.clear();
    this.dm.fill(null);
    this.hotTag.fill(-1);
    // Generations move on so no block still referenced anywhere matches; code pages stay marked until their
    // next write, which only costs that write the slow path.
    for (let p = 0; p < this.pageGen.length; p++) this.pageGen[p] = (this.pageGen[p]! + 1) | 0;
    for (const c of this.clients) c.codeChanged();
  }

  /** RAM page `page` was written: drop its blocks. */
  invalidatePage(page: number): void {
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
