// One RV64GC hart: RV64IMAC + Zicsr + Zifencei with M/S/U privilege, traps, interrupts and Sv39/Sv48
// (unprivileged spec v20191213; privileged spec v1.12 chapters 3 "Machine-Level ISA" and 4 "Supervisor-Level
// ISA"). Floating point is delegated to fpu.ts.
//
// 64-bit values are kept as two int32 halves (x[2i] low, x[2i+1] high) so the hot path never allocates or
// uses BigInt. A memory access that faults records cause/tval on the hart and throws the preallocated
// TRAP_SIGNAL; run() catches it outside the inner loop and enters the trap.

import { GuestRam } from "../bus/guest-ram.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { dropCodeOfOtherThreads } from "./fence-i.ts";
import { SharedRamAtomics } from "../bus/shared-ram-atomics.ts";
import { type ComponentState, checkState } from "../state/stateful.ts";
import {
  BlockCache,
  type BlockCacheClient,
  type CompiledBlock,
  SET_MASK as IMPORTED_SET_MASK,
} from "./block-cache.ts";
import { DebugTriggers, type DebugTriggersState } from "./debug-triggers.ts";
import { executeFp as importedExecuteFp } from "./fpu.ts";
import * as md from "./mul-div-64.ts";
import * as spec from "./priv-spec.ts";
import { RVC_TABLE as IMPORTED_RVC_TABLE } from "./rvc.ts";
import { WARM_UP_BASE, WARM_UP_PROGRAM, WARM_UP_RAM_BYTES } from "./warm-up-program.ts";

// Imported bindings copied into module constants: a loader that compiles modules to CommonJS (tsx) turns
// every use of an imported name into a getter call, which costs more than the instruction itself here.
const {
  CAUSE_BREAKPOINT,
  CAUSE_FETCH_ACCESS,
  CAUSE_FETCH_PAGE_FAULT,
  CAUSE_ILLEGAL_INSTRUCTION,
  CAUSE_LOAD_ACCESS,
  CAUSE_LOAD_PAGE_FAULT,
  CAUSE_MISALIGNED_LOAD,
  CAUSE_MISALIGNED_STORE,
  CAUSE_STORE_ACCESS,
  CAUSE_STORE_PAGE_FAULT,
  CAUSE_USER_ECALL,
  CSR_CYCLE,
  CSR_FCSR,
  CSR_FFLAGS,
  CSR_FRM,
  CSR_HPMCOUNTER3,
  CSR_HPMCOUNTER31,
  CSR_INSTRET,
  CSR_MARCHID,
  CSR_MCAUSE,
  CSR_MCONFIGPTR,
  CSR_MCOUNTEREN,
  CSR_MCOUNTINHIBIT,
  CSR_MCYCLE,
  CSR_MEDELEG,
  CSR_MENVCFG,
  CSR_MEPC,
  CSR_MHARTID,
  CSR_MHPMCOUNTER3,
  CSR_MHPMCOUNTER31,
  CSR_MHPMEVENT3,
  CSR_MHPMEVENT31,
  CSR_MIDELEG,
  CSR_MIE,
  CSR_MIMPID,
  CSR_MINSTRET,
  CSR_MIP,
  CSR_MISA,
  CSR_MSCRATCH,
  CSR_MSTATUS,
  CSR_MTVAL,
  CSR_MTVEC,
  CSR_MVENDORID,
  CSR_PMPADDR0,
  CSR_PMPADDR63,
  CSR_PMPCFG0,
  CSR_PMPCFG15,
  CSR_SATP,
  CSR_SCAUSE,
  CSR_SCOUNTEREN,
  CSR_SENVCFG,
  CSR_SEPC,
  CSR_SIE,
  CSR_SIP,
  CSR_SSCRATCH,
  CSR_SSTATUS,
  CSR_STVAL,
  CSR_STVEC,
  CSR_TIME,
  IRQ_M_EXT,
  IRQ_M_SOFT,
  IRQ_M_TIMER,
  IRQ_S_EXT,
  IRQ_S_SOFT,
  IRQ_S_TIMER,
  MEDELEG_WRITABLE,
  MIE_WRITABLE,
  MIP_S_BITS,
  MIP_SSIP,
  MISA_HI,
  MISA_LO,
  MSTATUS_FS,
  MSTATUS_HI_SD,
  MSTATUS_HI_XL,
  MSTATUS_MIE,
  MSTATUS_MPIE,
  MSTATUS_MPP,
  MSTATUS_MPP_SHIFT,
  MSTATUS_MPRV,
  MSTATUS_MXR,
  MSTATUS_SIE,
  MSTATUS_SPIE,
  MSTATUS_SPP,
  MSTATUS_SUM,
  MSTATUS_TSR,
  MSTATUS_TVM,
  MSTATUS_TW,
  MSTATUS_WRITABLE,
  PRV_M,
  PRV_S,
  PRV_U,
  PTE_A,
  PTE_D,
  PTE_R,
  PTE_U,
  PTE_V,
  PTE_W,
  PTE_X,
  SATP_MODE_BARE,
  SATP_MODE_SV39,
  SATP_MODE_SV48,
  SSTATUS_HI_XL,
  SSTATUS_VISIBLE,
} = spec;
const RVC_TABLE = IMPORTED_RVC_TABLE;
const SET_MASK = IMPORTED_SET_MASK;
const executeFp = importedExecuteFp;
const wide = md.wide;
const remainder = md.remainder;
const mul64 = md.mul64;
const mulh64 = md.mulh64;
const mulhsu64 = md.mulhsu64;
const mulhu64 = md.mulhu64;
const div64 = md.div64;
const divu64 = md.divu64;
const shl64 = md.shl64;
const srl64 = md.srl64;
const sra64 = md.sra64;

/** Thrown (never allocated per use) when an instruction traps; cause and tval are on the hart. */
const TRAP_SIGNAL = { trap: true } as const;

const TWO_POW_32 = 4294967296;
/** The PAUSE hint: fence w, 0. */
const PAUSE = 0x0100000f;
const TLB_BITS = 9;
const TLB_SIZE = 1 << TLB_BITS;
const TLB_MASK = TLB_SIZE - 1;
/** A tag no address matches: marks a TLB entry empty. Bit 11 is cleared by every tag mask (~4095 and the
 * misalignment-catching ~(4096 − width)), so not even a misaligned access to page 0 hits an empty entry. */
const TLB_EMPTY = 0x800;

/** 4 KiB pages a leaf PTE at level 0–3 maps: 512^level. */
const LEAF_SPAN = [1, 512, 262144, 134217728];

const ACCESS_FETCH = 0;
const ACCESS_LOAD = 1;
const ACCESS_STORE = 2;

/** Interrupts in the order §3.1.9 takes them: MEI, MSI, MTI, SEI, SSI, STI. */
const IRQ_PRIORITY = [IRQ_M_EXT, IRQ_M_SOFT, IRQ_M_TIMER, IRQ_S_EXT, IRQ_S_SOFT, IRQ_S_TIMER];

// Slots of the 64-bit plain-storage CSRs in `csr` (each uses two int32: low at 2·slot).
const S_MEPC = 0;
const S_SEPC = 1;
const S_MTVAL = 2;
const S_STVAL = 3;
const S_MSCRATCH = 4;
const S_SSCRATCH = 5;
const S_MTVEC = 6;
const S_STVEC = 7;
const S_SATP = 8;
const S_MENVCFG = 9;
const S_SENVCFG = 10;
const S_MCAUSE = 11;
const S_SCAUSE = 12;
const CSR_SLOTS = 13;

export interface Rv64HartState extends ComponentState {
  /** 2 added `triggers`; a version 1 state loads with the triggers reset. */
  readonly version: 1 | 2;
  readonly hartId: number;
  readonly x: Int32Array;
  readonly fr: Int32Array;
  readonly pcLo: number;
  readonly pcHi: number;
  readonly priv: number;
  readonly fflags: number;
  readonly frm: number;
  readonly mstatus: number;
  /** Plain 64-bit CSRs: mepc sepc mtval stval mscratch sscratch mtvec stvec satp menvcfg senvcfg mcause scause. */
  readonly csr: Int32Array;
  readonly mie: number;
  /** mip bits driven by device lines (MSIP, MTIP, SEIP, MEIP); the devices keep driving the same levels. */
  readonly mipHw: number;
  readonly mipSw: number;
  readonly mideleg: number;
  readonly medeleg: number;
  readonly mcounteren: number;
  readonly scounteren: number;
  readonly mcountinhibit: number;
  readonly pmpcfg: Int32Array;
  readonly pmpaddr: Int32Array;
  readonly instret: number;
  readonly cycleOffset: number;
  readonly instretOffset: number;
  readonly wfi: boolean;
  readonly triggers?: DebugTriggersState;
}

/** Options of a hart. */
export interface Rv64HartConfig {
  /** Compile hot basic blocks to JavaScript (block-compiler.ts); default true. Off, every instruction is
   * interpreted: the same results, instruction for instruction, only slower. */
  readonly jit?: boolean;
  /** Harts on other threads share this RAM (smp/): AMOs and SC compare-and-swap, FENCE is a barrier and
   * FENCE.I drops this hart's compiled code. */
  readonly sharedRam?: boolean;
}

export class Rv64Hart implements BlockCacheClient {
  /** Integer registers: x[2i] = low 32 bits, x[2i+1] = high 32 bits of xi. x0 stays 0. */
  readonly x = new Int32Array(64);
  /** Floating-point registers as raw bits, same layout. */
  readonly fr = new Int32Array(64);
  /** The FP registers as doubles (same memory as fr, host word order), for compiled blocks' D arithmetic. */
  readonly fd = new Float64Array(this.fr.buffer);
  fflags = 0;
  frm = 0;
  /** Result of loadFp64 (and other 64-bit loads). */
  tmpLo = 0;
  tmpHi = 0;
  pcLo = 0;
  pcHi = 0;

  private priv = PRV_M;
  /** Effective privilege of loads and stores (mstatus.MPRV applies MPP in M-mode). */
  private dataPriv = PRV_M;
  private mstatus = 0;
  private readonly csr = new Int32Array(CSR_SLOTS * 2);
  private mie = 0;
  /** Interrupt lines driven by devices (setPending). */
  private mipHw = 0;
  /** mip bits written by software (SSIP, STIP, SEIP). */
  private mipSw = 0;
  private mideleg = 0;
  private medeleg = 0;
  private mcounteren = 0;
  private scounteren = 0;
  private mcountinhibit = 0;
  private readonly pmpcfg = new Int32Array(16);
  private readonly pmpaddr = new Int32Array(128);
  private count = 0;
  private cycleOffset = 0;
  private instretOffset = 0;
  private wfi = false;
  /** Set when the inner loop must return so interrupts are looked at again. */
  private breakOut = false;
  /** Compiled blocks entered straight from the block before through its link, with no lookup (tests and
   * profiles read it). */
  chainedRuns = 0;
  /** Set by PAUSE: run() returns early. */
  private paused = false;

  private resValid = false;
  private resLo = 0;
  private resHi = 0;
  /** The value LR read: with shared RAM, SC succeeds only if memory still holds it (a compare-and-swap). */
  private resValLo = 0;
  private resValHi = 0;
  /** Non-null when harts on other threads share this RAM. */
  private readonly atomics: SharedRamAtomics | null;
  /**
   * With RAM in a SharedArrayBuffer (harts on other threads), RAM as doublewords (else null): an aligned 64-bit load or store is then one 8-byte host
   * access, single-copy atomic as RVWMO requires (two 32-bit halves let another thread see half of a store).
   * V8 compiles an aligned Float64Array access to one 8-byte load or store, and moves the bits unchanged
   * (NaN payloads included) between Float64Arrays; `pair64`/`pair32` split a doubleword into its halves.
   */
  readonly ramF64: Float64Array | null;
  readonly pair64 = new Float64Array(1);
  readonly pair32 = new Int32Array(this.pair64.buffer);

  private excCause = 0;
  private excTvalLo = 0;
  private excTvalHi = 0;
  /** tselect, tdata1–3, tinfo (debug-triggers.ts). */
  private readonly triggers = new DebugTriggers();
  /** Scratch results of csrRead. */
  private csrLo = 0;
  private csrHi = 0;

  // Translation state, derived from satp.
  private satpMode = SATP_MODE_BARE;
  private satpRoot = 0;

  // Direct-mapped TLBs: tag = page-aligned virtual address halves; off = RAM byte offset of the page. Three
  // sets: identity translations (M-mode or satp Bare), which never go stale, and Sv39/Sv48 translations with
  // S-mode and with U-mode permissions, so neither traps into M-mode nor system calls (U → S → U) empty a
  // set. These fields point at the sets in use: loads and stores at the set of the data privilege, fetch at
  // that of the hart's privilege.
  private readonly bareTlb = new TlbSet();
  private readonly supervisorTlb = new TlbSet();
  private readonly userTlb = new TlbSet();
  private rTagLo = this.bareTlb.rTagLo;
  private rTagHi = this.bareTlb.rTagHi;
  private rOff = this.bareTlb.rOff;
  private wTagLo = this.bareTlb.wTagLo;
  private wTagHi = this.bareTlb.wTagHi;
  private wOff = this.bareTlb.wOff;
  private xTagLo = this.bareTlb.xTagLo;
  private xTagHi = this.bareTlb.xTagHi;
  private xOff = this.bareTlb.xOff;
  // The page instructions are being fetched from: RAM offset (or -1 with its physical base for MMIO).
  private fPageLo = TLB_EMPTY;
  private fPageHi = 0;
  private fOff = -1;
  private fPa = 0;

  private readonly u8: Uint8Array;
  private readonly u16: Uint16Array;
  private readonly i32: Int32Array;

  /** Compiled blocks of this hart's RAM (shared with the other harts on it), or null with the JIT off. */
  private readonly jit: BlockCache | null;

  constructor(
    readonly hartId: number,
    private readonly bus: PhysBus,
    private readonly time: { mtime(): number },
    config: Rv64HartConfig = {},
  ) {
    this.u8 = bus.ram.u8;
    this.u16 = bus.ram.u16;
    this.i32 = bus.ram.i32;
    this.jit = config.jit === false ? null : BlockCache.of(bus.ram);
    this.jit?.addClient(this);
    this.atomics = config.sharedRam === true ? new SharedRamAtomics(bus.ram) : null;
    // The same test as the block cache's, whose blocks then take this view.
    this.ramF64 = bus.ram.shared ? bus.ram.f64 : null;
    if (!warmedUp) {
      warmedUp = true;
      warmUp();
    }
  }

  setPc(lo: number, hi: number): void {
    this.pcLo = lo | 0;
    this.pcHi = hi | 0;
  }

  /** Current privilege level: 0 U, 1 S, 3 M. */
  get privilege(): number {
    return this.priv;
  }

  /** True while in WFI with no interrupt pending in mip & mie. */
  get waiting(): boolean {
    return this.wfi && ((this.mipHw | this.mipSw) & this.mie) === 0;
  }

  /** Instructions executed since reset (traps included), as a double. */
  instretCount(): number {
    return this.count;
  }

  get instret(): number {
    return this.count;
  }

  /** Power-on reset (privileged spec §3.4): M-mode, registers and CSRs cleared, pc unchanged. */
  reset(): void {
    this.x.fill(0);
    this.fr.fill(0);
    this.fflags = 0;
    this.frm = 0;
    this.mstatus = 0;
    this.csr.fill(0);
    this.mie = 0;
    this.mipSw = 0;
    this.mideleg = 0;
    this.medeleg = 0;
    this.mcounteren = 0;
    this.scounteren = 0;
    this.mcountinhibit = 0;
    this.pmpcfg.fill(0);
    this.pmpaddr.fill(0);
    this.count = 0;
    this.cycleOffset = 0;
    this.instretOffset = 0;
    this.wfi = false;
    this.triggers.reset();
    this.resValid = false;
    this.satpMode = SATP_MODE_BARE;
    this.satpRoot = 0;
    this.priv = PRV_M;
    this.updateDataPriv();
    this.flushTlb();
    this.selectTlbs();
    this.breakOut = true;
    // RAM is reloaded around a reset: compiled code is derived from it.
    this.jit?.flush();
  }

  /** Whether the block compiler is on. */
  get jitEnabled(): boolean {
    return this.jit !== null;
  }

  /** The block cache this hart uses (tests and stats), or null with the JIT off. */
  get blockCache(): BlockCache | null {
    return this.jit;
  }

  /** BlockCacheClient: RAM page `page` now holds compiled code, so no write TLB may map it any longer. */
  dropWriteMappings(page: number): void {
    const base = page * 4096;
    for (const t of [this.bareTlb, this.supervisorTlb, this.userTlb]) {
      for (let i = 0; i < TLB_SIZE; i++) if (t.wOff[i] === base) t.wTagLo[i] = TLB_EMPTY;
    }
  }

  /** Empties the write TLBs (dirty-page tracking: the next store to each page is seen). */
  dropAllWriteMappings(): void {
    for (const t of [this.bareTlb, this.supervisorTlb, this.userTlb]) t.wTagLo.fill(TLB_EMPTY);
  }

  /** BlockCacheClient: compiled code was dropped; a running block leaves at its next check. */
  codeChanged(): void {
    this.breakOut = true;
  }

  clearReservation(): void {
    this.resValid = false;
  }

  /** Drive interrupt-pending bit `bit` of mip (MSIP 3, MTIP 7, SEIP 9, MEIP 11, …) from a device. */
  setPending(bit: number, level: boolean): void {
    if (level) this.mipHw |= 1 << bit;
    else this.mipHw &= ~(1 << bit);
    this.breakOut = true;
    if (this.wfi && ((this.mipHw | this.mipSw) & this.mie) !== 0) this.wfi = false;
  }

  /** Executes up to `budget` instructions (fewer when it enters WFI or executes PAUSE); returns how many
   * it took. */
  run(budget: number): number {
    const start = this.count;
    const end = start + budget;
    if (this.wfi) {
      // §3.3.3: WFI resumes when any interrupt is pending in mip & mie, whatever the global enables.
      if (((this.mipHw | this.mipSw) & this.mie) === 0) return 0;
      this.wfi = false;
    }
    while (this.count < end) {
      this.checkInterrupts();
      try {
        this.inner(end);
      } catch (e) {
        if (e !== TRAP_SIGNAL) throw e;
        // A trapping instruction counts as a step so a fault storm still ends the slice.
        this.count++;
        this.enterTrap(false, this.excCause, this.excTvalLo, this.excTvalHi);
      }
      if (this.paused) {
        this.paused = false;
        break;
      }
      if (this.wfi) {
        // WFI with an interrupt already pending in mip & mie completes at once.
        if (((this.mipHw | this.mipSw) & this.mie) === 0) break;
        this.wfi = false;
      }
    }
    return this.count - start;
  }

  private inner(end: number): void {
    const x = this.x;
    const u8 = this.u8;
    const u16 = this.u16;
    const i32 = this.i32;
    const f64 = this.ramF64;
    const pair64 = this.pair64;
    const pair32 = this.pair32;
    this.breakOut = false;
    // Hot state lives in locals while the loop runs (a field access per use costs more than the work). The
    // count and pc are stored back in `finally`, also when an instruction traps: a trapping instruction
    // leaves pc at itself, which is the epc enterTrap records. Anything that runs outside this function
    // (exec, the slow paths) gets pc written back first and its effects read back after.
    let n = this.count;
    let pcLo = this.pcLo;
    let pcHi = this.pcHi;
    let fPageLo = this.fPageLo;
    let fPageHi = this.fPageHi;
    let fOff = this.fOff;
    let rTagLo = this.rTagLo;
    let rTagHi = this.rTagHi;
    let rOff = this.rOff;
    let wTagLo = this.wTagLo;
    let wTagHi = this.wTagHi;
    let wOff = this.wOff;
    // `jumped`: pc may have left the fetch page (a jump, a taken branch, an instruction exec ran, a block, a
    // step onto the next page, or entry here). Only then is the fetch page checked and a compiled block
    // looked up, so straight-line interpretation pays one test of `jumped` per instruction.
    const jit = this.jit;
    const dm = jit === null ? null : jit.dm;
    const pageGen = jit === null ? null : jit.pageGen;
    const hotTag = jit === null ? null : jit.hotTag;
    const hotCount = jit === null ? null : jit.hotCount;
    const threshold = jit === null ? 0 : jit.threshold;
    let jumped = true;
    // The links of the block that last left through a linked exit (a constant pc in its own page, so the
    // fetch page still holds) and that exit's slot: where the block found at the new pc is remembered.
    let links: Array<CompiledBlock | null> | null = null;
    let linkPairs: Uint8Array | null = null;
    let slot = 0;
    let chained = 0;
    try {
      loop: while (n < end) {
        if (jumped) {
          jumped = false;
          if ((pcLo & -4096) !== fPageLo || pcHi !== fPageHi) {
            this.pcLo = pcLo;
            this.pcHi = pcHi;
            this.refillFetch();
            fPageLo = this.fPageLo;
            fPageHi = this.fPageHi;
            fOff = this.fOff;
          }
          if (fOff >= 0 && dm !== null && pageGen !== null && hotTag !== null && hotCount !== null) {
            const off = fOff + (pcLo & 0xfff);
            // The two slots of off's set (block-cache.ts).
            const k0 = ((off >>> 1) & SET_MASK) << 1;
            let blk: CompiledBlock | null = dm[k0]!;
            if (blk === null || blk.off !== off) blk = dm[k0 + 1]!;
            if (links !== null) {
              // A linked exit: a block there found before, and the one found now is remembered.
              // A JALR's pair of slots (CompiledBlock.pairs) keeps the last two blocks its targets had.
              let linked: CompiledBlock | null = links[slot]!;
              if (linked !== null && linked.off !== off && linkPairs !== null && linkPairs[slot] === 1)
                linked = links[slot + 1]!;
              if (linked !== null && linked.off === off && linked.gen === pageGen[off >>> 12]) blk = linked;
              else if (blk !== null && blk.off === off && blk.gen === pageGen[off >>> 12]) {
                if (linkPairs !== null && linkPairs[slot] === 1) links[slot + 1] = links[slot]!;
                links[slot] = blk;
              }
              links = null;
            }
            if (blk === null || blk.off !== off || blk.gen !== pageGen[off >>> 12]) {
              // Not compiled (or stale): count the start in the slot counting it, else in a slot whose count
              // is zero; else wear both counts down by one (Misra–Gries: a start taking over a third of its
              // set's visits keeps a slot, however many rare ones pass). Replacing the lower count instead
              // let two starts that ran by turns reset each other forever while a third held the other slot:
              // one recursion hot spot ran 5.8 M times uncompiled. Compile it once hot. Inline, as this runs
              // at every jump the interpreter takes.
              let k = k0;
              if (hotTag[k0] !== off) {
                if (hotTag[k0 + 1] === off) k = k0 + 1;
                else if (hotCount[k0] === 0 || hotCount[k0 + 1] === 0) {
                  if (hotCount[k0] !== 0) k = k0 + 1;
                  hotTag[k] = off;
                } else {
                  hotCount[k0]--;
                  hotCount[k0 + 1]--;
                  k = -1;
                }
              }
              if (k < 0 || ++hotCount[k]! < threshold) blk = null;
              else blk = this.jitCompile(off, k);
            }
            // Run a block only when a whole pass fits the budget, so run(budget) never overshoots.
            if (blk !== null && n + blk.len <= end) {
              // A block calls nothing and cannot trap: it returns with this.pcLo/pcHi/count set, and its link
              // slot when it left to a constant pc in its page. Blocks chain through their links here, with no
              // fetch-page check or table lookup, while the next one is valid and fits the budget and nothing
              // asked the loop to stop (breakOut: an interrupt, changed code).
              let ran: CompiledBlock = blk;
              let before = n;
              let e = ran.run(this, x, u8, u16, i32, pcLo, pcHi, n, end);
              n = this.count;
              while (e >= 0 && !this.breakOut) {
                // The next block is in ran's page, which no write changed since ran was entered (a write into
                // a code page sets breakOut): it is valid when compiled at ran's generation. A JALR's slot is
                // shared by its targets: the block there must start at the pc the exit left at.
                const want = (ran.off & -4096) | (this.pcLo & 4095);
                let next: CompiledBlock | null = ran.links[e]!;
                if (next !== null && next.off !== want && ran.pairs[e] === 1) next = ran.links[e + 1]!;
                if (next === null || next.gen !== ran.gen || next.off !== want || n + next.len > end) break;
                ran = next;
                chained++;
                before = n;
                e = ran.run(this, x, u8, u16, i32, this.pcLo, this.pcHi, n, end);
                n = this.count;
              }
              pcLo = this.pcLo;
              pcHi = this.pcHi;
              // A block leaves before an instruction it cannot finish itself (TLB miss, MMIO, misaligned):
              // when that was its first, the interpreter runs it before a block is looked up again.
              jumped = n !== before;
              if (e >= 0) {
                links = ran.links;
                linkPairs = ran.pairs;
                slot = e;
              }
              if (this.breakOut) break;
              continue;
            }
          }
        }
        let insn: number;
        let len = 4;
        if (fOff >= 0) {
          const o = (fOff + (pcLo & 0xfff)) >> 1;
          insn = u16[o];
          if ((insn & 3) === 3) {
            if ((pcLo & 0xfff) === 0xffe) {
              this.pcLo = pcLo;
              this.pcHi = pcHi;
              insn = this.fetchCrossPage(insn);
            } else insn |= u16[o + 1] << 16;
          } else len = 2;
        } else {
          this.pcLo = pcLo;
          this.pcHi = pcHi;
          insn = this.fetchMmio();
          if ((insn & 3) !== 3) len = 2;
        }
        if (len === 2) {
          const e = RVC_TABLE[insn];
          if (e === 0) this.illegal(insn);
          insn = e;
        }
        const d = (insn >> 6) & 62; // 2·rd
        const a = (insn >> 14) & 62; // 2·rs1
        const b = (insn >> 19) & 62; // 2·rs2
        const f3 = (insn >> 12) & 7;
        // The common integer instructions run here; the rest (and every illegal encoding) go to exec. The
        // switch is on opcode bits 6:2 (bits 1:0 are 11 once RVC is expanded): 32 dense values make V8 emit a
        // jump table, where the sparse 7-bit opcodes got a chain of compares.
        const major = (insn >>> 2) & 31;
        switch (major) {
          case 4: {
            // OP-IMM
            const al = x[a];
            const ah = x[a + 1];
            const il = insn >> 20;
            const ih = il >> 31;
            if (f3 === 0) {
              const lo = (al + il) | 0;
              // Carry out of the unsigned low-half sum: the sum wrapped below the first operand.
              x[d + 1] = (ah + ih + (lo >>> 0 < al >>> 0 ? 1 : 0)) | 0;
              x[d] = lo;
            } else if (f3 === 4) {
              x[d] = al ^ il;
              x[d + 1] = ah ^ ih;
            } else if (f3 === 6) {
              x[d] = al | il;
              x[d + 1] = ah | ih;
            } else if (f3 === 7) {
              x[d] = al & il;
              x[d + 1] = ah & ih;
            } else if (f3 === 1 && insn >>> 26 === 0) {
              const s = il & 63;
              if (s >= 32) {
                x[d + 1] = al << (s - 32);
                x[d] = 0;
              } else if (s !== 0) {
                x[d + 1] = (ah << s) | (al >>> (32 - s));
                x[d] = al << s;
              } else {
                x[d] = al;
                x[d + 1] = ah;
              }
            } else if (f3 === 5 && (insn >>> 26 === 0 || insn >>> 26 === 0x10)) {
              const s = il & 63;
              const arith = insn >>> 26 !== 0;
              if (s >= 32) {
                x[d] = arith ? ah >> (s - 32) : ah >>> (s - 32);
                x[d + 1] = arith ? ah >> 31 : 0;
              } else if (s !== 0) {
                x[d] = (al >>> s) | (ah << (32 - s));
                x[d + 1] = arith ? ah >> s : ah >>> s;
              } else {
                x[d] = al;
                x[d + 1] = ah;
              }
            } else if (f3 === 2) {
              x[d] = ah < ih || (ah === ih && al >>> 0 < il >>> 0) ? 1 : 0;
              x[d + 1] = 0;
            } else if (f3 === 3) {
              x[d] = ah >>> 0 < ih >>> 0 || (ah === ih && al >>> 0 < il >>> 0) ? 1 : 0;
              x[d + 1] = 0;
            } else this.illegal(insn);
            break;
          }
          case 6: {
            // OP-IMM-32
            const al = x[a];
            const sh = (insn >> 20) & 31;
            let r: number;
            if (f3 === 0) r = (al + (insn >> 20)) | 0;
            else if (f3 === 1 && insn >>> 25 === 0) r = al << sh;
            else if (f3 === 5 && insn >>> 25 === 0) r = al >>> sh;
            else if (f3 === 5 && insn >>> 25 === 0x20) r = al >> sh;
            else this.illegal(insn);
            x[d] = r | 0;
            x[d + 1] = r >> 31;
            break;
          }
          case 12: {
            // OP: add/sub and the logical ops here, the rest (shifts, compares, M) in execOp.
            const f7 = insn >>> 25;
            if (f3 === 0 && f7 === 0) {
              const al = x[a];
              const lo = (al + x[b]) | 0;
              x[d + 1] = (x[a + 1] + x[b + 1] + (lo >>> 0 < al >>> 0 ? 1 : 0)) | 0;
              x[d] = lo;
            } else if (f3 === 0 && f7 === 0x20) {
              const al = x[a];
              const bl = x[b];
              x[d + 1] = (x[a + 1] - x[b + 1] - (al >>> 0 < bl >>> 0 ? 1 : 0)) | 0;
              x[d] = (al - bl) | 0;
            } else if (f7 === 0 && f3 >= 4 && f3 !== 5) {
              const al = x[a];
              const ah = x[a + 1];
              const bl = x[b];
              const bh = x[b + 1];
              if (f3 === 4) {
                x[d] = al ^ bl;
                x[d + 1] = ah ^ bh;
              } else if (f3 === 6) {
                x[d] = al | bl;
                x[d + 1] = ah | bh;
              } else {
                x[d] = al & bl;
                x[d + 1] = ah & bh;
              }
            } else this.execOp(insn, d, a, b, f3);
            break;
          }
          case 14: {
            // OP-32: addw/subw here, the rest in execOp32.
            const f7 = insn >>> 25;
            if (f3 === 0 && (f7 === 0 || f7 === 0x20)) {
              const r = f7 === 0 ? (x[a] + x[b]) | 0 : (x[a] - x[b]) | 0;
              x[d] = r;
              x[d + 1] = r >> 31;
            } else this.execOp32(insn, d, a, b, f3);
            break;
          }
          case 13: {
            // LUI
            const v = insn & 0xfffff000;
            x[d] = v;
            x[d + 1] = v >> 31;
            break;
          }
          case 5: {
            // AUIPC
            const v = insn & 0xfffff000;
            const lo = (pcLo + v) | 0;
            x[d + 1] = (pcHi + (v >> 31) + (lo >>> 0 < pcLo >>> 0 ? 1 : 0)) | 0;
            x[d] = lo;
            break;
          }
          case 0: {
            // LOAD, through the read TLB: for 2/4/8-byte accesses the tag compare masks with ~(4096 − width)
            // instead of ~4095, so a misaligned address never matches and takes the slow path.
            const il = insn >> 20;
            const al = x[a];
            const lo = (al + il) | 0;
            const hi = (x[a + 1] + (il >> 31) + (lo >>> 0 < al >>> 0 ? 1 : 0)) | 0;
            const i = (lo >>> 12) & TLB_MASK;
            const th = rTagHi[i] === hi;
            const tl = rTagLo[i];
            let v: number;
            switch (f3) {
              case 0:
                v = th && tl === (lo & -4096) ? u8[rOff[i] + (lo & 0xfff)] : this.loadSlow(lo, hi, 1);
                v = (v << 24) >> 24;
                x[d + 1] = v >> 31;
                break;
              case 1:
                v = th && tl === (lo & -4095) ? u16[(rOff[i] + (lo & 0xfff)) >> 1] : this.loadSlow(lo, hi, 2);
                v = (v << 16) >> 16;
                x[d + 1] = v >> 31;
                break;
              case 2:
                v = th && tl === (lo & -4093) ? i32[(rOff[i] + (lo & 0xfff)) >> 2] : this.loadSlow(lo, hi, 4);
                x[d + 1] = v >> 31;
                break;
              case 3:
                if (th && tl === (lo & -4089)) {
                  const w = (rOff[i] + (lo & 0xfff)) >> 2;
                  if (f64 === null) {
                    v = i32[w];
                    x[d + 1] = i32[w + 1];
                  } else {
                    pair64[0] = f64[w >> 1]!;
                    v = pair32[0]!;
                    x[d + 1] = pair32[1]!;
                  }
                } else {
                  v = this.loadSlow(lo, hi, 8);
                  x[d + 1] = this.tmpHi;
                }
                break;
              case 4:
                v = th && tl === (lo & -4096) ? u8[rOff[i] + (lo & 0xfff)] : this.loadSlow(lo, hi, 1);
                x[d + 1] = 0;
                break;
              case 5:
                v = th && tl === (lo & -4095) ? u16[(rOff[i] + (lo & 0xfff)) >> 1] : this.loadSlow(lo, hi, 2);
                x[d + 1] = 0;
                break;
              case 6:
                v = th && tl === (lo & -4093) ? i32[(rOff[i] + (lo & 0xfff)) >> 2] : this.loadSlow(lo, hi, 4);
                x[d + 1] = 0;
                break;
              default:
                this.illegal(insn);
            }
            x[d] = v;
            break;
          }
          case 8: {
            // STORE, through the write TLB (same tag trick as loads).
            const il = ((insn >> 25) << 5) | ((insn >> 7) & 31);
            const al = x[a];
            const lo = (al + il) | 0;
            const hi = (x[a + 1] + (il >> 31) + (lo >>> 0 < al >>> 0 ? 1 : 0)) | 0;
            const i = (lo >>> 12) & TLB_MASK;
            const th = wTagHi[i] === hi;
            const tl = wTagLo[i];
            switch (f3) {
              case 0:
                if (th && tl === (lo & -4096)) u8[wOff[i] + (lo & 0xfff)] = x[b];
                else this.storeSlow(lo, hi, 1, x[b], 0);
                break;
              case 1:
                if (th && tl === (lo & -4095)) u16[(wOff[i] + (lo & 0xfff)) >> 1] = x[b];
                else this.storeSlow(lo, hi, 2, x[b], 0);
                break;
              case 2:
                if (th && tl === (lo & -4093)) i32[(wOff[i] + (lo & 0xfff)) >> 2] = x[b];
                else this.storeSlow(lo, hi, 4, x[b], 0);
                break;
              case 3:
                if (th && tl === (lo & -4089)) {
                  const w = (wOff[i] + (lo & 0xfff)) >> 2;
                  if (f64 === null) {
                    i32[w] = x[b];
                    i32[w + 1] = x[b + 1];
                  } else {
                    pair32[0] = x[b];
                    pair32[1] = x[b + 1];
                    f64[w >> 1] = pair64[0]!;
                  }
                } else this.storeSlow(lo, hi, 8, x[b], x[b + 1]);
                break;
              default:
                this.illegal(insn);
            }
            break;
          }
          case 24: {
            // BRANCH
            const al = x[a];
            const ah = x[a + 1];
            const bl = x[b];
            const bh = x[b + 1];
            let taken: boolean;
            switch (f3) {
              case 0:
                taken = al === bl && ah === bh;
                break;
              case 1:
                taken = al !== bl || ah !== bh;
                break;
              case 4:
                taken = ah < bh || (ah === bh && al >>> 0 < bl >>> 0);
                break;
              case 5:
                taken = ah > bh || (ah === bh && al >>> 0 >= bl >>> 0);
                break;
              case 6:
                taken = ah >>> 0 < bh >>> 0 || (ah === bh && al >>> 0 < bl >>> 0);
                break;
              case 7:
                taken = ah >>> 0 > bh >>> 0 || (ah === bh && al >>> 0 >= bl >>> 0);
                break;
              default:
                this.illegal(insn);
            }
            if (taken) {
              const off =
                ((insn >> 31) << 12) |
                (((insn >> 7) & 1) << 11) |
                (((insn >> 25) & 0x3f) << 5) |
                (((insn >> 8) & 0xf) << 1);
              const lo = (pcLo + off) | 0;
              // Carry (off ≥ 0: the sum wrapped below pc) or borrow (off < 0: it wrapped above pc).
              if (off >= 0) {
                if (lo >>> 0 < pcLo >>> 0) pcHi = (pcHi + 1) | 0;
              } else if (lo >>> 0 > pcLo >>> 0) pcHi = (pcHi - 1) | 0;
              pcLo = lo;
              n++;
              jumped = true;
              if (this.breakOut) break loop;
              continue;
            }
            break;
          }
          case 27: {
            // JAL
            const off =
              ((insn >> 31) << 20) |
              (insn & 0xff000) |
              (((insn >> 20) & 1) << 11) |
              (((insn >> 21) & 0x3ff) << 1);
            const ret = (pcLo + len) | 0;
            x[d + 1] = ret >>> 0 < len ? (pcHi + 1) | 0 : pcHi;
            x[d] = ret;
            x[0] = 0;
            x[1] = 0;
            const lo = (pcLo + off) | 0;
            if (off >= 0) {
              if (lo >>> 0 < pcLo >>> 0) pcHi = (pcHi + 1) | 0;
            } else if (lo >>> 0 > pcLo >>> 0) pcHi = (pcHi - 1) | 0;
            pcLo = lo;
            n++;
            jumped = true;
            if (this.breakOut) break loop;
            continue;
          }
          case 25: {
            // JALR
            if (f3 !== 0) this.illegal(insn);
            const il = insn >> 20;
            const al = x[a];
            const sum = (al + il) | 0;
            const thi = (x[a + 1] + (il >> 31) + (sum >>> 0 < al >>> 0 ? 1 : 0)) | 0;
            const ret = (pcLo + len) | 0;
            x[d + 1] = ret >>> 0 < len ? (pcHi + 1) | 0 : pcHi;
            x[d] = ret;
            x[0] = 0;
            x[1] = 0;
            pcLo = sum & ~1;
            pcHi = thi;
            n++;
            jumped = true;
            if (this.breakOut) break loop;
            continue;
          }
          default:
            // Everything else runs in exec, which works on the fields: hand it pc and the count, and read back
            // what it may have changed (pc, privilege and so the TLB sets, the fetch page).
            this.pcLo = pcLo;
            this.pcHi = pcHi;
            this.count = n;
            this.exec(insn, len);
            x[0] = 0;
            x[1] = 0;
            n++;
            pcLo = this.pcLo;
            pcHi = this.pcHi;
            fPageLo = this.fPageLo;
            fPageHi = this.fPageHi;
            fOff = this.fOff;
            rTagLo = this.rTagLo;
            rTagHi = this.rTagHi;
            rOff = this.rOff;
            wTagLo = this.wTagLo;
            wTagHi = this.wTagHi;
            wOff = this.wOff;
            jumped = true;
            if (this.breakOut) break loop;
            continue;
        }
        x[0] = 0;
        x[1] = 0;
        const next = (pcLo + len) | 0;
        if ((next & 0xfff) < len) {
          // Onto the next page (and past 2^32 when the low half wrapped).
          if (next >>> 0 < len) pcHi = (pcHi + 1) | 0;
          jumped = true;
        }
        pcLo = next;
        n++;
        // Of the instructions that get here only a load or store can have set breakOut (an MMIO access that
        // raised an interrupt, a store into compiled code), through its slow path.
        if ((major === 0 || major === 8) && this.breakOut) break;
      }
    } finally {
      this.count = n;
      this.pcLo = pcLo;
      this.pcHi = pcHi;
      this.chainedRuns += chained;
    }
  }

  /** A block start got hot: its block, compiled now. */
  private jitCompile(off: number, counter: number): CompiledBlock | null {
    return this.jit === null ? null : this.jit.compile(off, counter);
  }

  // ---------------------------------------------------------------- instruction fetch

  private refillFetch(): void {
    const lo = this.pcLo & -4096;
    const hi = this.pcHi;
    const i = (lo >>> 12) & TLB_MASK;
    if (this.xTagLo[i] === lo && this.xTagHi[i] === hi) {
      this.fOff = this.xOff[i];
    } else {
      const pa = this.translate(this.pcLo, hi, ACCESS_FETCH) - (this.pcLo & 0xfff);
      this.fOff = this.bus.ramOffset(pa, 4096);
      this.fPa = pa;
    }
    this.fPageLo = lo;
    this.fPageHi = hi;
  }

  /** A 32-bit instruction whose upper half lies on the next page. */
  private fetchCrossPage(low: number): number {
    const lo = (this.pcLo + 2) | 0;
    const hi = lo === 0 ? (this.pcHi + 1) | 0 : this.pcHi;
    const pa = this.translate(lo, hi, ACCESS_FETCH);
    if (!this.bus.load(pa, 2)) this.fault(CAUSE_FETCH_ACCESS, lo, hi);
    // The fetch page was replaced by translate's TLB fill only for the next page; keep ours.
    return (low & 0xffff) | (this.bus.lo << 16);
  }

  /** Fetch from a page that is not RAM (e.g. a boot ROM device). */
  private fetchMmio(): number {
    const pa = this.fPa + (this.pcLo & 0xfff);
    if (!this.bus.load(pa, 2)) this.fault(CAUSE_FETCH_ACCESS, this.pcLo, this.pcHi);
    const low = this.bus.lo;
    if ((low & 3) !== 3) return low;
    if ((this.pcLo & 0xfff) === 0xffe) return this.fetchCrossPage(low);
    if (!this.bus.load(pa + 2, 2)) this.fault(CAUSE_FETCH_ACCESS, this.pcLo, this.pcHi);
    return low | (this.bus.lo << 16);
  }

  // ---------------------------------------------------------------- execute

  private advance(len: number): void {
    const lo = (this.pcLo + len) | 0;
    if (lo >>> 0 < len) this.pcHi = (this.pcHi + 1) | 0;
    this.pcLo = lo;
  }

  private exec(insn: number, len: number): void {
    const d = (insn >> 6) & 62; // 2·rd
    const a = (insn >> 14) & 62; // 2·rs1
    const b = (insn >> 19) & 62; // 2·rs2
    const f3 = (insn >> 12) & 7;
    switch (insn & 0x7f) {
      // OP-IMM(-32), OP(-32), LUI, AUIPC, LOAD, STORE, BRANCH, JAL and JALR run inline in inner() and never
      // reach exec.
      case 0x2f:
        this.execAmo(insn, d, a, b, f3);
        break;
      case 0x0f:
        // MISC-MEM: FENCE and FENCE.I are no-ops here (one in-order hart at a time, no decoded-code cache).
        if (f3 > 1) this.illegal(insn);
        if (this.atomics !== null) {
          if (f3 === 1 && this.jit !== null) dropCodeOfOtherThreads(this.jit);
          else this.atomics.fence();
        }
        // PAUSE (Zihintpause, a FENCE with pred=W, succ=0) marks a spin-wait loop: end this hart's turn so
        // the hart it waits for gets to run.
        if (insn === PAUSE) {
          this.paused = true;
          this.breakOut = true;
        }
        break;
      case 0x73:
        if (f3 === 0) {
          this.execSystem(insn);
          return;
        }
        this.execCsr(insn, d, a, f3);
        break;
      case 0x07:
      case 0x27:
      case 0x43:
      case 0x47:
      case 0x4b:
      case 0x4f:
      case 0x53:
        executeFp(this, insn);
        break;
      default:
        this.illegal(insn);
    }
    this.advance(len);
  }

  private execOp(insn: number, d: number, a: number, b: number, f3: number): void {
    const x = this.x;
    const al = x[a];
    const ah = x[a + 1];
    const bl = x[b];
    const bh = x[b + 1];
    const f7 = insn >>> 25;
    if (f7 === 0) {
      switch (f3) {
        case 0: {
          const lo = (al + bl) | 0;
          x[d + 1] = (ah + bh + ((al >>> 0) + (bl >>> 0) >= TWO_POW_32 ? 1 : 0)) | 0;
          x[d] = lo;
          return;
        }
        case 1:
          shl64(al, ah, bl & 63);
          break;
        case 2:
          x[d] = ah < bh || (ah === bh && al >>> 0 < bl >>> 0) ? 1 : 0;
          x[d + 1] = 0;
          return;
        case 3:
          x[d] = ah >>> 0 < bh >>> 0 || (ah === bh && al >>> 0 < bl >>> 0) ? 1 : 0;
          x[d + 1] = 0;
          return;
        case 4:
          x[d] = al ^ bl;
          x[d + 1] = ah ^ bh;
          return;
        case 5:
          srl64(al, ah, bl & 63);
          break;
        case 6:
          x[d] = al | bl;
          x[d + 1] = ah | bh;
          return;
        default:
          x[d] = al & bl;
          x[d + 1] = ah & bh;
          return;
      }
    } else if (f7 === 0x20) {
      if (f3 === 0) {
        const lo = (al - bl) | 0;
        x[d + 1] = (ah - bh - (al >>> 0 < bl >>> 0 ? 1 : 0)) | 0;
        x[d] = lo;
        return;
      }
      if (f3 === 5) sra64(al, ah, bl & 63);
      else this.illegal(insn);
    } else if (f7 === 1) {
      switch (f3) {
        case 0:
          mul64(al, ah, bl, bh);
          break;
        case 1:
          mulh64(al, ah, bl, bh);
          break;
        case 2:
          mulhsu64(al, ah, bl, bh);
          break;
        case 3:
          mulhu64(al, ah, bl, bh);
          break;
        case 4:
          div64(al, ah, bl, bh);
          break;
        case 5:
          divu64(al, ah, bl, bh);
          break;
        case 6:
          div64(al, ah, bl, bh);
          x[d] = remainder[0];
          x[d + 1] = remainder[1];
          return;
        default:
          divu64(al, ah, bl, bh);
          x[d] = remainder[0];
          x[d + 1] = remainder[1];
          return;
      }
    } else this.illegal(insn);
    x[d] = wide[0];
    x[d + 1] = wide[1];
  }

  private execOp32(insn: number, d: number, a: number, b: number, f3: number): void {
    const x = this.x;
    const av = x[a];
    const bv = x[b];
    const f7 = insn >>> 25;
    let r = 0;
    if (f7 === 0) {
      if (f3 === 0) r = (av + bv) | 0;
      else if (f3 === 1) r = av << (bv & 31);
      else if (f3 === 5) r = av >>> (bv & 31);
      else this.illegal(insn);
    } else if (f7 === 0x20) {
      if (f3 === 0) r = (av - bv) | 0;
      else if (f3 === 5) r = av >> (bv & 31);
      else this.illegal(insn);
    } else if (f7 === 1) {
      switch (f3) {
        case 0:
          r = Math.imul(av, bv);
          break;
        case 4: // DIVW: by zero −1; overflow gives the dividend (§13.2)
          r = bv === 0 ? -1 : av === -2147483648 && bv === -1 ? av : (av / bv) | 0;
          break;
        case 5:
          r = bv === 0 ? -1 : ((av >>> 0) / (bv >>> 0)) | 0;
          break;
        case 6: // REMW: by zero the dividend; overflow 0
          r = bv === 0 ? av : bv === -1 ? 0 : (av % bv) | 0;
          break;
        case 7:
          r = bv === 0 ? av : ((av >>> 0) % (bv >>> 0)) | 0;
          break;
        default:
          this.illegal(insn);
      }
    } else this.illegal(insn);
    x[d] = r | 0;
    x[d + 1] = r >> 31;
  }

  // ---------------------------------------------------------------- atomics (A extension, §8)

  private execAmo(insn: number, d: number, a: number, b: number, f3: number): void {
    const x = this.x;
    const lo = x[a];
    const hi = x[a + 1];
    const f5 = insn >>> 27;
    if (f3 !== 2 && f3 !== 3) this.illegal(insn);
    const dw = f3 === 3;
    const size = dw ? 8 : 4;
    if (f5 === 2) {
      // LR
      if (((insn >> 20) & 31) !== 0) this.illegal(insn);
      if ((lo & (size - 1)) !== 0) this.fault(CAUSE_MISALIGNED_LOAD, lo, hi);
      if (dw) {
        x[d] = this.ld(lo, hi);
        x[d + 1] = this.tmpHi;
      } else {
        const v = this.lw(lo, hi);
        x[d] = v;
        x[d + 1] = v >> 31;
      }
      this.resValid = true;
      this.resLo = lo;
      this.resHi = hi;
      this.resValLo = x[d];
      this.resValHi = x[d + 1];
      return;
    }
    // "AMOs and SC raise store/AMO address-misaligned exceptions" when not naturally aligned.
    if ((lo & (size - 1)) !== 0) this.fault(CAUSE_MISALIGNED_STORE, lo, hi);
    if (f5 === 3) {
      // SC
      let ok = this.resValid && this.resLo === lo && this.resHi === hi;
      this.resValid = false;
      if (ok && this.atomics !== null) {
        const w = this.amoOffset(lo, hi, size) >> 2;
        ok = this.atomics.cas(w, dw, this.resValLo, this.resValHi, x[b], dw ? x[b + 1] : 0);
      } else if (ok) {
        if (dw) this.sd(lo, hi, x[b], x[b + 1]);
        else this.sw(lo, hi, x[b]);
      }
      x[d] = ok ? 0 : 1;
      x[d + 1] = 0;
      return;
    }
    const off = this.amoOffset(lo, hi, size);
    const i32 = this.i32;
    const w = off >> 2;
    const ol = i32[w];
    const oh = dw ? i32[w + 1] : ol >> 31;
    const bl = x[b];
    const bh = dw ? x[b + 1] : bl >> 31;
    let nl: number;
    let nh: number;
    switch (f5) {
      case 0x01:
        nl = bl;
        nh = bh;
        break;
      case 0x00: {
        nl = (ol + bl) | 0;
        nh = (oh + bh + ((ol >>> 0) + (bl >>> 0) >= TWO_POW_32 ? 1 : 0)) | 0;
        break;
      }
      case 0x04:
        nl = ol ^ bl;
        nh = oh ^ bh;
        break;
      case 0x0c:
        nl = ol & bl;
        nh = oh & bh;
        break;
      case 0x08:
        nl = ol | bl;
        nh = oh | bh;
        break;
      case 0x10:
      case 0x14: {
        const lt = oh < bh || (oh === bh && ol >>> 0 < bl >>> 0);
        const pickOld = f5 === 0x10 ? lt : !lt;
        nl = pickOld ? ol : bl;
        nh = pickOld ? oh : bh;
        break;
      }
      case 0x18:
      case 0x1c: {
        const lt = oh >>> 0 < bh >>> 0 || (oh === bh && ol >>> 0 < bl >>> 0);
        const pickOld = f5 === 0x18 ? lt : !lt;
        nl = pickOld ? ol : bl;
        nh = pickOld ? oh : bh;
        break;
      }
      default:
        this.illegal(insn);
    }
    // With shared RAM another thread may have written since the read: then the AMO starts over.
    if (this.atomics !== null && !this.atomics.cas(w, dw, ol, oh, nl, nh)) {
      this.execAmo(insn, d, a, b, f3);
      return;
    }
    if (this.atomics === null) {
      i32[w] = nl;
      if (dw) i32[w + 1] = nh;
    }
    x[d] = ol;
    x[d + 1] = oh;
  }

  /** RAM offset of an aligned AMO target, translated for writing; MMIO targets are access faults. */
  private amoOffset(lo: number, hi: number, size: number): number {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.wTagLo[i] === (lo & -4096) && this.wTagHi[i] === hi) return this.wOff[i] + (lo & 0xfff);
    const pa = this.translate(lo, hi, ACCESS_STORE);
    const off = this.bus.ramOffset(pa, size);
    if (off < 0) this.fault(CAUSE_STORE_ACCESS, lo, hi);
    // The AMO writes this word after returning; dropping the page's blocks first is the same to the guest.
    this.noteCodeWrite(off);
    return off;
  }

  // ---------------------------------------------------------------- SYSTEM

  private execSystem(insn: number): void {
    switch (insn) {
      case 0x00000073: // ECALL
        this.fault(CAUSE_USER_ECALL + this.priv, 0, 0);
        break;
      case 0x00100073: // EBREAK
        this.fault(CAUSE_BREAKPOINT, this.pcLo, this.pcHi);
        break;
      case 0x30200073: // MRET
        if (this.priv < PRV_M) this.illegal(insn);
        this.mret();
        return;
      case 0x10200073: // SRET: "TSR=1 … attempts to execute SRET while executing in S-mode will raise an
        // illegal instruction exception"
        if (this.priv < PRV_S || (this.priv === PRV_S && (this.mstatus & MSTATUS_TSR) !== 0))
          this.illegal(insn);
        this.sret();
        return;
      case 0x10500073: // WFI
        if (this.priv === PRV_U || (this.priv < PRV_M && (this.mstatus & MSTATUS_TW) !== 0))
          this.illegal(insn);
        this.advance(4);
        this.wfi = true;
        this.breakOut = true;
        return;
      default:
        if ((insn & 0xfe007fff) === 0x12000073) {
          // SFENCE.VMA: "TVM=1 … attempts to execute SFENCE.VMA … while executing in S-mode will raise an
          // illegal instruction exception"
          if (this.priv === PRV_U || (this.priv === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0))
            this.illegal(insn);
          this.flushTlb();
          this.advance(4);
          return;
        }
        this.illegal(insn);
    }
  }

  private mret(): void {
    const s = this.mstatus;
    const mpp = (s & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT;
    let n = s & ~(MSTATUS_MIE | MSTATUS_MPP);
    if (s & MSTATUS_MPIE) n |= MSTATUS_MIE;
    n |= MSTATUS_MPIE;
    // "If y≠M, xRET also sets MPRV=0."
    if (mpp !== PRV_M) n &= ~MSTATUS_MPRV;
    this.mstatus = n;
    this.pcLo = this.csr[S_MEPC * 2];
    this.pcHi = this.csr[S_MEPC * 2 + 1];
    this.setPriv(mpp);
    this.breakOut = true;
  }

  private sret(): void {
    const s = this.mstatus;
    const spp = s & MSTATUS_SPP ? PRV_S : PRV_U;
    let n = s & ~(MSTATUS_SIE | MSTATUS_SPP | MSTATUS_MPRV);
    if (s & MSTATUS_SPIE) n |= MSTATUS_SIE;
    n |= MSTATUS_SPIE;
    this.mstatus = n;
    this.pcLo = this.csr[S_SEPC * 2];
    this.pcHi = this.csr[S_SEPC * 2 + 1];
    this.setPriv(spp);
    this.breakOut = true;
  }

  private setPriv(p: number): void {
    this.priv = p;
    this.updateDataPriv();
    this.selectTlbs();
  }

  /** Point the TLB fields at the sets the current privileges use (see the field comment). */
  private selectTlbs(): void {
    const bare = this.satpMode === SATP_MODE_BARE;
    const d = bare || this.dataPriv === PRV_M ? this.bareTlb : this.virtTlbFor(this.dataPriv);
    const f = bare || this.priv === PRV_M ? this.bareTlb : this.virtTlbFor(this.priv);
    this.rTagLo = d.rTagLo;
    this.rTagHi = d.rTagHi;
    this.rOff = d.rOff;
    this.wTagLo = d.wTagLo;
    this.wTagHi = d.wTagHi;
    this.wOff = d.wOff;
    this.xTagLo = f.xTagLo;
    this.xTagHi = f.xTagHi;
    this.xOff = f.xOff;
    this.fPageLo = TLB_EMPTY;
  }

  /** The set of Sv39/Sv48 translations with the permissions of S-mode or U-mode. */
  private virtTlbFor(priv: number): TlbSet {
    return priv === PRV_S ? this.supervisorTlb : this.userTlb;
  }

  private updateDataPriv(): void {
    const s = this.mstatus;
    this.dataPriv =
      this.priv === PRV_M && (s & MSTATUS_MPRV) !== 0 ? (s & MSTATUS_MPP) >>> MSTATUS_MPP_SHIFT : this.priv;
  }

  // ---------------------------------------------------------------- traps and interrupts

  private checkInterrupts(): void {
    const pending = (this.mipHw | this.mipSw) & this.mie;
    if (pending === 0) return;
    // §3.1.9: M-level interrupts are enabled below M, or in M with MIE; delegated ones below M only when
    // taken in S (S-mode with SIE, or U-mode).
    const m = pending & ~this.mideleg;
    const mOn = this.priv < PRV_M || (this.mstatus & MSTATUS_MIE) !== 0;
    let take = mOn ? m : 0;
    if (take === 0) {
      const s = pending & this.mideleg;
      const sOn = this.priv < PRV_S || (this.priv === PRV_S && (this.mstatus & MSTATUS_SIE) !== 0);
      take = sOn ? s : 0;
    }
    if (take === 0) return;
    for (let k = 0; k < IRQ_PRIORITY.length; k++) {
      const irq = IRQ_PRIORITY[k];
      if (take & (1 << irq)) {
        this.wfi = false;
        this.enterTrap(true, irq, 0, 0);
        return;
      }
    }
  }

  private enterTrap(interrupt: boolean, cause: number, tvalLo: number, tvalHi: number): void {
    const deleg = interrupt ? this.mideleg : this.medeleg;
    const c = this.csr;
    const from = this.priv;
    let s = this.mstatus;
    let vec: number;
    if (from <= PRV_S && ((deleg >>> cause) & 1) !== 0) {
      c[S_SCAUSE * 2] = cause;
      c[S_SCAUSE * 2 + 1] = interrupt ? 0x80000000 | 0 : 0;
      c[S_SEPC * 2] = this.pcLo;
      c[S_SEPC * 2 + 1] = this.pcHi;
      c[S_STVAL * 2] = tvalLo;
      c[S_STVAL * 2 + 1] = tvalHi;
      s = (s & ~(MSTATUS_SPIE | MSTATUS_SIE | MSTATUS_SPP)) | (s & MSTATUS_SIE ? MSTATUS_SPIE : 0);
      if (from === PRV_S) s |= MSTATUS_SPP;
      this.mstatus = s;
      vec = S_STVEC;
      this.setPriv(PRV_S);
    } else {
      c[S_MCAUSE * 2] = cause;
      c[S_MCAUSE * 2 + 1] = interrupt ? 0x80000000 | 0 : 0;
      c[S_MEPC * 2] = this.pcLo;
      c[S_MEPC * 2 + 1] = this.pcHi;
      c[S_MTVAL * 2] = tvalLo;
      c[S_MTVAL * 2 + 1] = tvalHi;
      s = (s & ~(MSTATUS_MPIE | MSTATUS_MIE | MSTATUS_MPP)) | (s & MSTATUS_MIE ? MSTATUS_MPIE : 0);
      s |= from << MSTATUS_MPP_SHIFT;
      this.mstatus = s;
      vec = S_MTVEC;
      this.setPriv(PRV_M);
    }
    const tl = c[vec * 2];
    const base = tl & ~3;
    // Vectored mode: "asynchronous interrupts set pc to BASE+4×cause".
    const off = interrupt && (tl & 3) === 1 ? cause * 4 : 0;
    const lo = (base + off) | 0;
    this.pcHi = (c[vec * 2 + 1] + ((base >>> 0) + off >= TWO_POW_32 ? 1 : 0)) | 0;
    this.pcLo = lo;
  }

  private fault(cause: number, tvalLo: number, tvalHi: number): never {
    this.excCause = cause;
    this.excTvalLo = tvalLo;
    this.excTvalHi = tvalHi;
    throw TRAP_SIGNAL;
  }

  private illegal(insn: number): never {
    // mtval = the faulting instruction bits (zero-extended).
    return this.fault(CAUSE_ILLEGAL_INSTRUCTION, insn, 0);
  }

  // ---------------------------------------------------------------- FpuHost surface

  raiseIllegalInstruction(insn: number): never {
    return this.illegal(insn);
  }

  /**
   * Runs FP instruction `insn` for a compiled block (block-compiler.ts), which keeps no integer register the
   * instruction uses in a local across the call. Returns true, having changed nothing, when the instruction
   * would trap (FS off, an illegal encoding or rounding mode: every such check comes before any write): the
   * block then leaves before it and the interpreter raises the trap.
   */
  fpFromBlock(insn: number): boolean {
    try {
      executeFp(this, insn);
      return false;
    } catch (e) {
      if (e !== TRAP_SIGNAL) throw e;
      return true;
    }
  }

  fpEnabled(): boolean {
    return (this.mstatus & MSTATUS_FS) !== 0;
  }

  markFsDirty(): void {
    this.mstatus |= MSTATUS_FS;
  }

  loadFp32(lo: number, hi: number): number {
    return this.lw(lo, hi);
  }

  loadFp64(lo: number, hi: number): void {
    this.ld(lo, hi);
  }

  storeFp32(lo: number, hi: number, v: number): void {
    this.sw(lo, hi, v);
  }

  storeFp64(lo: number, hi: number, vlo: number, vhi: number): void {
    this.sd(lo, hi, vlo, vhi);
  }

  // ---------------------------------------------------------------- loads and stores
  //
  // A hit is one tag compare and one add. For 2/4/8-byte accesses the tag compare masks with
  // ~(4096 − width) instead of ~4095, so a misaligned address never matches and takes the slow path.

  private lb(lo: number, hi: number): number {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.rTagLo[i] === (lo & -4096) && this.rTagHi[i] === hi) return this.u8[this.rOff[i] + (lo & 0xfff)];
    return this.loadSlow(lo, hi, 1);
  }

  private lw(lo: number, hi: number): number {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.rTagLo[i] === (lo & -4093) && this.rTagHi[i] === hi)
      return this.i32[(this.rOff[i] + (lo & 0xfff)) >> 2];
    return this.loadSlow(lo, hi, 4);
  }

  /** 64-bit load: returns the low half, the high half is left in tmpHi. */
  private ld(lo: number, hi: number): number {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.rTagLo[i] === (lo & -4089) && this.rTagHi[i] === hi) {
      const w = (this.rOff[i] + (lo & 0xfff)) >> 2;
      const f64 = this.ramF64;
      if (f64 !== null) {
        this.pair64[0] = f64[w >> 1]!;
        this.tmpLo = this.pair32[0]!;
        this.tmpHi = this.pair32[1]!;
        return this.tmpLo;
      }
      const v = this.i32[w];
      this.tmpLo = v;
      this.tmpHi = this.i32[w + 1];
      return v;
    }
    return this.loadSlow(lo, hi, 8);
  }

  private sb(lo: number, hi: number, v: number): void {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.wTagLo[i] === (lo & -4096) && this.wTagHi[i] === hi) this.u8[this.wOff[i] + (lo & 0xfff)] = v;
    else this.storeSlow(lo, hi, 1, v, 0);
  }

  private sw(lo: number, hi: number, v: number): void {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.wTagLo[i] === (lo & -4093) && this.wTagHi[i] === hi)
      this.i32[(this.wOff[i] + (lo & 0xfff)) >> 2] = v;
    else this.storeSlow(lo, hi, 4, v, 0);
  }

  private sd(lo: number, hi: number, vlo: number, vhi: number): void {
    const i = (lo >>> 12) & TLB_MASK;
    if (this.wTagLo[i] === (lo & -4089) && this.wTagHi[i] === hi) {
      const w = (this.wOff[i] + (lo & 0xfff)) >> 2;
      const f64 = this.ramF64;
      if (f64 !== null) {
        this.pair32[0] = vlo;
        this.pair32[1] = vhi;
        f64[w >> 1] = this.pair64[0]!;
      } else {
        this.i32[w] = vlo;
        this.i32[w + 1] = vhi;
      }
    } else this.storeSlow(lo, hi, 8, vlo, vhi);
  }

  /**
   * TLB miss, MMIO or misaligned load. Returns the zero-extended value (int32 bits for width 4; for width 8
   * the low half, with the high half in tmpHi).
   */
  private loadSlow(lo: number, hi: number, width: number): number {
    if ((lo & (width - 1)) !== 0) {
      // Misaligned: performed byte by byte (each byte translated on its own), as hardware may.
      let rl = 0;
      let rh = 0;
      for (let k = 0; k < width; k++) {
        const bl = (lo + k) | 0;
        const bh = bl >>> 0 < lo >>> 0 ? (hi + 1) | 0 : hi;
        const v = this.lb(bl, bh);
        if (k < 4) rl |= v << (8 * k);
        else rh |= v << (8 * (k - 4));
      }
      this.tmpLo = rl;
      this.tmpHi = rh;
      return width === 2 ? rl & 0xffff : rl;
    }
    const pa = this.translate(lo, hi, ACCESS_LOAD);
    const bus = this.bus;
    if (!bus.load(pa, width)) this.fault(CAUSE_LOAD_ACCESS, lo, hi);
    this.tmpLo = bus.lo;
    this.tmpHi = bus.hi;
    return bus.lo;
  }

  private storeSlow(lo: number, hi: number, width: number, vlo: number, vhi: number): void {
    if ((lo & (width - 1)) !== 0) {
      // Translate both ends first so a fault leaves memory untouched.
      const el = (lo + width - 1) | 0;
      const eh = el >>> 0 < lo >>> 0 ? (hi + 1) | 0 : hi;
      this.translate(lo, hi, ACCESS_STORE);
      this.translate(el, eh, ACCESS_STORE);
      for (let k = 0; k < width; k++) {
        const bl = (lo + k) | 0;
        const bh = bl >>> 0 < lo >>> 0 ? (hi + 1) | 0 : hi;
        const v = k < 4 ? vlo >>> (8 * k) : vhi >>> (8 * (k - 4));
        this.sb(bl, bh, v & 0xff);
      }
      return;
    }
    const pa = this.translate(lo, hi, ACCESS_STORE);
    if (!this.bus.store(pa, width, vlo, vhi)) this.fault(CAUSE_STORE_ACCESS, lo, hi);
    if (this.jit !== null) this.noteCodeWrite(this.bus.ramOffset(pa, width));
  }

  /** A store reached RAM offset `off` (-1: not RAM) outside the write TLB: drop code compiled from its page. */
  private noteCodeWrite(off: number): void {
    const jit = this.jit;
    if (jit !== null && off >= 0 && jit.codePage[off >>> 12] !== 0) jit.invalidatePage(off >>> 12);
  }

  // ---------------------------------------------------------------- address translation (§4.3, §4.4)

  /** Forget every cached Sv39/Sv48 translation (SFENCE.VMA, satp writes). */
  flushTlb(): void {
    this.supervisorTlb.flush();
    this.userTlb.flush();
    this.fPageLo = TLB_EMPTY;
  }

  /**
   * Physical address of virtual address lo/hi for `access`, filling the matching TLB when the page is RAM.
   * Throws the access's page fault or access fault.
   */
  private translate(lo: number, hi: number, access: number): number {
    const priv = access === ACCESS_FETCH ? this.priv : this.dataPriv;
    let pa: number;
    if (priv === PRV_M || this.satpMode === SATP_MODE_BARE) {
      // Bare: physical = virtual. Addresses at or above 2^53 exist on no board we model.
      if (hi >>> 0 >= 0x200000) this.fault(accessFaultCause(access), lo, hi);
      pa = (hi >>> 0) * TWO_POW_32 + (lo >>> 0);
    } else {
      pa = this.walk(lo, hi, access, priv);
    }
    const pageOff = this.bus.ramOffset(pa - (lo & 0xfff), 4096);
    if (pageOff >= 0) {
      const i = (lo >>> 12) & TLB_MASK;
      const tag = lo & -4096;
      if (access === ACCESS_LOAD) {
        this.rTagLo[i] = tag;
        this.rTagHi[i] = hi;
        this.rOff[i] = pageOff;
      } else if (access === ACCESS_STORE) {
        // Dirty-page tracking: a page is marked when mapped for writing (the store TLB is emptied whenever
        // the map is taken), so stores through the TLB, here and in compiled blocks, cost nothing more.
        const dirty = this.bus.ram.dirtyPages;
        if (dirty !== null) dirty[pageOff >>> 12] = 1;
        // A page holding compiled code never gets a write-TLB entry: its stores take storeSlow, which drops
        // the page's blocks.
        if (this.jit !== null && this.jit.codePage[pageOff >>> 12] !== 0) return pa;
        this.wTagLo[i] = tag;
        this.wTagHi[i] = hi;
        this.wOff[i] = pageOff;
        // A writable page is readable too only if R is set; the read TLB is filled by loads alone.
      } else {
        this.xTagLo[i] = tag;
        this.xTagHi[i] = hi;
        this.xOff[i] = pageOff;
      }
    }
    return pa;
  }

  /** The Sv39/Sv48 walk of §4.3.2, with hardware A/D updates. Returns the physical address. */
  private walk(lo: number, hi: number, access: number, priv: number): number {
    const levels = this.satpMode === SATP_MODE_SV39 ? 3 : 4;
    // "Instruction fetch addresses and load and store effective addresses … must have bits 63–VA_BITS all
    // equal to bit VA_BITS−1, or else a page-fault exception will occur."
    const sh = levels === 3 ? 25 : 16;
    if ((hi << sh) >> sh !== hi) this.fault(pageFaultCause(access), lo, hi);
    const vpnAll = (hi & 0xffff) * 1048576 + (lo >>> 12); // up to 36 bits: exact
    const i32 = this.i32;
    let base = this.satpRoot;
    let pteLo = 0;
    let pteHi = 0;
    let level = levels - 1;
    let pteOff = 0;
    for (;;) {
      // VPN[level] is virtual-address bits 12+9·level … 20+9·level: taken from the 32-bit halves with shifts
      // (a floating-point division per level cost more than the rest of the step).
      const vpn =
        level === 0
          ? (lo >>> 12) & 511
          : level === 1
            ? (lo >>> 21) & 511
            : level === 2
              ? ((lo >>> 30) | (hi << 2)) & 511
              : (hi >>> 7) & 511;
      pteOff = this.bus.ramOffset(base + vpn * 8, 8);
      // A page-table entry outside RAM is an access fault of the original access type.
      if (pteOff < 0) this.fault(accessFaultCause(access), lo, hi);
      if (this.ramF64 !== null) {
        // Another hart may be writing this PTE: read it whole.
        this.pair64[0] = this.ramF64[pteOff >> 3]!;
        pteLo = this.pair32[0]!;
        pteHi = this.pair32[1]!;
      } else {
        pteLo = i32[pteOff >> 2];
        pteHi = i32[(pteOff >> 2) + 1];
      }
      // Invalid, W without R, or reserved/Svpbmt/Svnapot bits 63:54 set (none implemented): page fault.
      if ((pteLo & PTE_V) === 0 || (pteLo & (PTE_R | PTE_W)) === PTE_W || pteHi >>> 22 !== 0)
        this.fault(pageFaultCause(access), lo, hi);
      if ((pteLo & (PTE_R | PTE_X)) !== 0) break;
      if (level === 0) this.fault(pageFaultCause(access), lo, hi);
      level--;
      base = ((pteHi & 0x3fffff) * 4194304 + (pteLo >>> 10)) * 4096;
    }
    // Leaf permission checks.
    const s = this.mstatus;
    if (priv === PRV_U) {
      if ((pteLo & PTE_U) === 0) this.fault(pageFaultCause(access), lo, hi);
    } else if ((pteLo & PTE_U) !== 0) {
      // S-mode never executes user pages, and touches their data only with SUM.
      if (access === ACCESS_FETCH || (s & MSTATUS_SUM) === 0) this.fault(pageFaultCause(access), lo, hi);
    }
    if (access === ACCESS_FETCH) {
      if ((pteLo & PTE_X) === 0) this.fault(CAUSE_FETCH_PAGE_FAULT, lo, hi);
    } else if (access === ACCESS_LOAD) {
      if ((pteLo & PTE_R) === 0 && ((s & MSTATUS_MXR) === 0 || (pteLo & PTE_X) === 0))
        this.fault(CAUSE_LOAD_PAGE_FAULT, lo, hi);
    } else if ((pteLo & PTE_W) === 0) this.fault(CAUSE_STORE_PAGE_FAULT, lo, hi);
    const ppn = (pteHi & 0x3fffff) * 4194304 + (pteLo >>> 10);
    // Pages a leaf at this level spans (a table, not 2 ** (9 · level): the power and the two float modulos
    // below were 2 % of a boot's time; a 4 KiB leaf, the common case, needs neither).
    const span = LEAF_SPAN[level]!;
    // "If i > 0 and pte.ppn[i−1:0] ≠ 0, this is a misaligned superpage; stop and raise a page-fault".
    if (level > 0 && ppn % span !== 0) this.fault(pageFaultCause(access), lo, hi);
    // Hardware A/D update, in place on the PTE: atomic, as the spec requires, because one hart runs at a time,
    // or with harts on other threads a compare-and-swap; if the PTE changed since it was read, walk again.
    const want = access === ACCESS_STORE ? PTE_A | PTE_D : PTE_A;
    if ((pteLo & want) !== want) {
      if (this.atomics === null) i32[pteOff >> 2] = pteLo | want;
      else if (Atomics.compareExchange(i32, pteOff >> 2, pteLo, pteLo | want) !== pteLo)
        return this.walk(lo, hi, access, priv);
      this.bus.ram.markDirty(pteOff, 8);
      this.noteCodeWrite(pteOff);
    }
    const pageNumber = level === 0 ? ppn : ppn + (vpnAll % span);
    if (pageNumber >= 2 ** 41) this.fault(accessFaultCause(access), lo, hi);
    return pageNumber * 4096 + (lo & 0xfff);
  }

  // ---------------------------------------------------------------- CSRs (Zicsr, §2 and §3)

  private execCsr(insn: number, d: number, a: number, f3: number): void {
    const x = this.x;
    const csr = insn >>> 20;
    const rs1 = a >> 1;
    const op = f3 & 3;
    const srcLo = f3 & 4 ? rs1 : x[a];
    const srcHi = f3 & 4 ? 0 : x[a + 1];
    // CSRRW always writes; CSRRS/CSRRC with rs1 = x0 (or uimm = 0) do not.
    const writes = op === 1 || rs1 !== 0;
    if (op === 0) this.illegal(insn);
    if (((csr >> 8) & 3) > this.priv) this.illegal(insn);
    if (writes && csr >>> 10 === 3) this.illegal(insn);
    this.csrRead(csr, insn);
    const oldLo = this.csrLo;
    const oldHi = this.csrHi;
    if (writes) {
      let nl = srcLo;
      let nh = srcHi;
      // §3.1.9: reading mip returns SEIP as the OR of the software bit and the PLIC's signal, "but the
      // software-writable SEIP bit is used as the source for the read-modify-write" — else OpenSBI's
      // `csrs mip, STIP` would latch a passing external interrupt into the software bit for good.
      const rmwLo = csr === CSR_MIP ? (oldLo & ~MIP_S_BITS) | this.mipSw : oldLo;
      if (op === 2) {
        nl = rmwLo | srcLo;
        nh = oldHi | srcHi;
      } else if (op === 3) {
        nl = rmwLo & ~srcLo;
        nh = oldHi & ~srcHi;
      }
      this.csrWrite(csr, nl, nh, insn);
      // A write that may enable or raise an interrupt ends the inner loop, so interrupts are looked at again
      // before the next instruction. Other CSRs (sscratch, sepc, … which Linux writes on every trap) keep the
      // loop running; translation changes need no exit either, as the inner loop re-reads the TLB sets after
      // every instruction it hands to exec.
      if (breaksOut(csr)) this.breakOut = true;
    }
    x[d] = oldLo;
    x[d + 1] = oldHi;
  }

  private mstatusHi(): number {
    return ((this.mstatus & MSTATUS_FS) === MSTATUS_FS ? MSTATUS_HI_SD : 0) | 0;
  }

  /** Counter CSRs below M: "When the CY, TM, IR, or HPMn bit in mcounteren is clear, attempts to read … in
   * S-mode or U-mode will cause an illegal instruction exception" (and scounteren likewise for U-mode). */
  private checkCounter(csr: number, insn: number): void {
    const bit = 1 << (csr & 31);
    if (this.priv < PRV_M && (this.mcounteren & bit) === 0) this.illegal(insn);
    if (this.priv === PRV_U && (this.scounteren & bit) === 0) this.illegal(insn);
  }

  private set64(v: number): void {
    this.csrLo = (v % TWO_POW_32) | 0;
    this.csrHi = Math.floor(v / TWO_POW_32) | 0;
  }

  private csrRead(csr: number, insn: number): void {
    const c = this.csr;
    let lo = 0;
    let hi = 0;
    switch (csr) {
      case CSR_FFLAGS:
      case CSR_FRM:
      case CSR_FCSR:
        if ((this.mstatus & MSTATUS_FS) === 0) this.illegal(insn);
        lo = csr === CSR_FFLAGS ? this.fflags : csr === CSR_FRM ? this.frm : (this.frm << 5) | this.fflags;
        break;
      case CSR_CYCLE:
        this.checkCounter(csr, insn);
        this.set64(this.count + this.cycleOffset);
        return;
      case CSR_TIME:
        this.checkCounter(csr, insn);
        this.set64(this.time.mtime());
        return;
      case CSR_INSTRET:
        this.checkCounter(csr, insn);
        this.set64(this.count + this.instretOffset);
        return;
      case CSR_MCYCLE:
        this.set64(this.count + this.cycleOffset);
        return;
      case CSR_MINSTRET:
        this.set64(this.count + this.instretOffset);
        return;
      case CSR_SSTATUS:
        lo = this.mstatus & SSTATUS_VISIBLE;
        hi = SSTATUS_HI_XL | this.mstatusHi();
        break;
      case CSR_SIE:
        lo = this.mie & this.mideleg;
        break;
      case CSR_SIP:
        lo = (this.mipHw | this.mipSw) & this.mideleg;
        break;
      case CSR_STVEC:
      case CSR_SSCRATCH:
      case CSR_SEPC:
      case CSR_SCAUSE:
      case CSR_STVAL:
      case CSR_SENVCFG:
      case CSR_MTVEC:
      case CSR_MSCRATCH:
      case CSR_MEPC:
      case CSR_MCAUSE:
      case CSR_MTVAL:
      case CSR_MENVCFG: {
        const s = plainSlot(csr);
        lo = c[s * 2];
        hi = c[s * 2 + 1];
        break;
      }
      case CSR_SATP:
        if (this.priv === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0) this.illegal(insn);
        lo = c[S_SATP * 2];
        hi = c[S_SATP * 2 + 1];
        break;
      case CSR_SCOUNTEREN:
        lo = this.scounteren;
        break;
      case CSR_MVENDORID:
      case CSR_MARCHID:
      case CSR_MIMPID:
      case CSR_MCONFIGPTR:
        break;
      case CSR_MHARTID:
        lo = this.hartId;
        break;
      case CSR_MSTATUS:
        lo = this.mstatus;
        hi = MSTATUS_HI_XL | this.mstatusHi();
        break;
      case CSR_MISA:
        lo = MISA_LO;
        hi = MISA_HI;
        break;
      case CSR_MEDELEG:
        lo = this.medeleg;
        break;
      case CSR_MIDELEG:
        lo = this.mideleg;
        break;
      case CSR_MIE:
        lo = this.mie;
        break;
      case CSR_MIP:
        lo = this.mipHw | this.mipSw;
        break;
      case CSR_MCOUNTEREN:
        lo = this.mcounteren;
        break;
      case CSR_MCOUNTINHIBIT:
        lo = this.mcountinhibit;
        break;
      default:
        if (csr >= CSR_HPMCOUNTER3 && csr <= CSR_HPMCOUNTER31) {
          this.checkCounter(csr, insn);
        } else if (csr >= CSR_MHPMCOUNTER3 && csr <= CSR_MHPMCOUNTER31) {
          // Not implemented: hard-wired zero.
        } else if (csr >= CSR_MHPMEVENT3 && csr <= CSR_MHPMEVENT31) {
          // Hard-wired zero.
        } else if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15) {
          // RV64 has only the even pmpcfg registers.
          if (csr & 1) this.illegal(insn);
          const k = csr - CSR_PMPCFG0;
          lo = this.pmpcfg[k];
          hi = this.pmpcfg[k + 1];
        } else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
          const k = (csr - CSR_PMPADDR0) * 2;
          lo = this.pmpaddr[k];
          hi = this.pmpaddr[k + 1];
        } else if (DebugTriggers.handles(csr)) {
          this.triggers.read(csr);
          lo = this.triggers.lo;
          hi = this.triggers.hi;
        } else this.illegal(insn);
    }
    this.csrLo = lo;
    this.csrHi = hi;
  }

  private csrWrite(csr: number, lo: number, hi: number, insn: number): void {
    const c = this.csr;
    switch (csr) {
      case CSR_FFLAGS:
        this.fflags = lo & 31;
        this.markFsDirty();
        return;
      case CSR_FRM:
        this.frm = lo & 7;
        this.markFsDirty();
        return;
      case CSR_FCSR:
        this.fflags = lo & 31;
        this.frm = (lo >> 5) & 7;
        this.markFsDirty();
        return;
      case CSR_MCYCLE:
        this.cycleOffset = (hi >>> 0) * TWO_POW_32 + (lo >>> 0) - this.count;
        return;
      case CSR_MINSTRET:
        // The write happens before this instruction retires; the count is bumped after it.
        this.instretOffset = (hi >>> 0) * TWO_POW_32 + (lo >>> 0) - this.count - 1;
        return;
      case CSR_SSTATUS:
        this.writeMstatus((this.mstatus & ~SSTATUS_VISIBLE) | (lo & SSTATUS_VISIBLE));
        return;
      case CSR_SIE:
        this.mie = (this.mie & ~this.mideleg) | (lo & this.mideleg & MIP_S_BITS);
        return;
      case CSR_SIP:
        // Only SSIP is writable from S-mode, and only when delegated.
        if (this.mideleg & MIP_SSIP) this.mipSw = (this.mipSw & ~MIP_SSIP) | (lo & MIP_SSIP);
        return;
      case CSR_STVEC:
      case CSR_MTVEC: {
        // WARL MODE: only Direct (0) and Vectored (1).
        const s = plainSlot(csr);
        c[s * 2] = (lo & ~3) | ((lo & 3) === 1 ? 1 : 0);
        c[s * 2 + 1] = hi;
        return;
      }
      case CSR_SEPC:
      case CSR_MEPC: {
        // IALIGN = 16: bit 0 always reads zero.
        const s = plainSlot(csr);
        c[s * 2] = lo & ~1;
        c[s * 2 + 1] = hi;
        return;
      }
      case CSR_MENVCFG:
        // PBMTE (62) and STCE (63) would claim Svpbmt/Sstc, which are not implemented.
        c[S_MENVCFG * 2] = lo;
        c[S_MENVCFG * 2 + 1] = hi & 0x3fffffff;
        return;
      case CSR_SSCRATCH:
      case CSR_SCAUSE:
      case CSR_STVAL:
      case CSR_SENVCFG:
      case CSR_MSCRATCH:
      case CSR_MCAUSE:
      case CSR_MTVAL: {
        const s = plainSlot(csr);
        c[s * 2] = lo;
        c[s * 2 + 1] = hi;
        return;
      }
      case CSR_SATP: {
        if (this.priv === PRV_S && (this.mstatus & MSTATUS_TVM) !== 0) this.illegal(insn);
        const mode = hi >>> 28;
        // "If satp is written with an unsupported MODE, the entire write has no effect".
        if (mode !== SATP_MODE_BARE && mode !== SATP_MODE_SV39 && mode !== SATP_MODE_SV48) return;
        c[S_SATP * 2] = lo;
        c[S_SATP * 2 + 1] = hi;
        this.satpMode = mode;
        this.satpRoot = ((hi & 0xfff) * TWO_POW_32 + (lo >>> 0)) * 4096;
        this.flushTlb();
        this.selectTlbs();
        return;
      }
      case CSR_SCOUNTEREN:
        this.scounteren = lo;
        return;
      case CSR_MSTATUS:
        this.writeMstatus(lo);
        return;
      case CSR_MISA:
        // WARL: the extension set is fixed.
        return;
      case CSR_MEDELEG:
        this.medeleg = lo & MEDELEG_WRITABLE;
        return;
      case CSR_MIDELEG:
        this.mideleg = lo & MIP_S_BITS;
        return;
      case CSR_MIE:
        this.mie = lo & MIE_WRITABLE;
        return;
      case CSR_MIP:
        this.mipSw = lo & MIP_S_BITS;
        return;
      case CSR_MCOUNTEREN:
        this.mcounteren = lo;
        return;
      case CSR_MCOUNTINHIBIT:
        // Bit 1 (TM) is read-only zero.
        this.mcountinhibit = lo & ~2;
        return;
      default:
        if (csr >= CSR_PMPCFG0 && csr <= CSR_PMPCFG15) {
          const k = csr - CSR_PMPCFG0;
          this.pmpcfg[k] = lo;
          this.pmpcfg[k + 1] = hi;
        } else if (csr >= CSR_PMPADDR0 && csr <= CSR_PMPADDR63) {
          // pmpaddr holds bits 55:2 of an address: 54 bits.
          const k = (csr - CSR_PMPADDR0) * 2;
          this.pmpaddr[k] = lo;
          this.pmpaddr[k + 1] = hi & 0x3fffff;
        } else if (DebugTriggers.handles(csr)) this.triggers.write(csr, lo, hi);
      // mhpmcounter/mhpmevent: writes ignored (read-only-zero implementation).
    }
  }

  private writeMstatus(v: number): void {
    const old = this.mstatus;
    let n = (old & ~MSTATUS_WRITABLE) | (v & MSTATUS_WRITABLE);
    // MPP is WARL over {U, S, M}: the reserved value 2 becomes U.
    if ((n & MSTATUS_MPP) === 2 << MSTATUS_MPP_SHIFT) n &= ~MSTATUS_MPP;
    this.mstatus = n;
    this.updateDataPriv();
    // Clearing SUM or MXR takes permissions away from cached translations; setting them only adds.
    if (old & ~n & (MSTATUS_SUM | MSTATUS_MXR)) this.flushTlb();
    if ((old ^ n) & (MSTATUS_MPRV | MSTATUS_MPP)) this.selectTlbs();
  }

  // ---------------------------------------------------------------- state

  saveState(): Rv64HartState {
    return {
      version: 2,
      hartId: this.hartId,
      x: this.x.slice(),
      fr: this.fr.slice(),
      pcLo: this.pcLo,
      pcHi: this.pcHi,
      priv: this.priv,
      fflags: this.fflags,
      frm: this.frm,
      mstatus: this.mstatus,
      csr: this.csr.slice(),
      mie: this.mie,
      mipHw: this.mipHw,
      mipSw: this.mipSw,
      mideleg: this.mideleg,
      medeleg: this.medeleg,
      mcounteren: this.mcounteren,
      scounteren: this.scounteren,
      mcountinhibit: this.mcountinhibit,
      pmpcfg: this.pmpcfg.slice(),
      pmpaddr: this.pmpaddr.slice(),
      instret: this.count,
      cycleOffset: this.cycleOffset,
      instretOffset: this.instretOffset,
      wfi: this.wfi,
      triggers: this.triggers.saveState(),
    };
  }

  /** Restores a saved hart. The reservation is cleared and the TLBs flushed. */
  loadState(s: Rv64HartState): void {
    const id = `hart${this.hartId}`;
    checkState(
      s && (s.version === 1 || s.version === 2),
      id,
      `version ${s?.version} is not supported (expected 1 or 2)`,
    );
    checkState(s.hartId === this.hartId, id, `it belongs to hart ${s.hartId}`);
    checkState(s.x instanceof Int32Array && s.x.length === 64, id, "x must be an Int32Array of 64");
    checkState(s.fr instanceof Int32Array && s.fr.length === 64, id, "fr must be an Int32Array of 64");
    checkState(s.csr instanceof Int32Array && s.csr.length === CSR_SLOTS * 2, id, "csr has the wrong size");
    checkState(s.pmpcfg instanceof Int32Array && s.pmpcfg.length === 16, id, "pmpcfg has the wrong size");
    checkState(s.pmpaddr instanceof Int32Array && s.pmpaddr.length === 128, id, "pmpaddr has the wrong size");
    checkState(s.priv === PRV_U || s.priv === PRV_S || s.priv === PRV_M, id, `priv ${s.priv} is invalid`);
    for (const k of [
      "pcLo",
      "pcHi",
      "fflags",
      "frm",
      "mstatus",
      "mie",
      "mipHw",
      "mipSw",
      "mideleg",
      "medeleg",
      "mcounteren",
      "scounteren",
      "mcountinhibit",
    ] as const)
      checkState(Number.isInteger(s[k]) && s[k] === (s[k] | 0), id, `${k} is not a 32-bit integer`);
    for (const k of ["instret", "cycleOffset", "instretOffset"] as const)
      checkState(Number.isFinite(s[k]), id, `${k} is not a number`);
    checkState(s.x[0] === 0 && s.x[1] === 0, id, "x0 is not zero");
    const satpMode = s.csr[S_SATP * 2 + 1] >>> 28;
    checkState(
      satpMode === SATP_MODE_BARE || satpMode === SATP_MODE_SV39 || satpMode === SATP_MODE_SV48,
      id,
      `satp mode ${satpMode} is not supported`,
    );
    // Loads (or resets) the triggers first: it validates before it changes anything, as the rest does.
    if (s.version === 2) this.triggers.loadState(s.triggers as DebugTriggersState, id);
    else this.triggers.reset();

    this.x.set(s.x);
    this.fr.set(s.fr);
    this.pcLo = s.pcLo;
    this.pcHi = s.pcHi;
    this.fflags = s.fflags & 31;
    this.frm = s.frm & 7;
    this.mstatus = s.mstatus & MSTATUS_WRITABLE;
    this.csr.set(s.csr);
    this.mie = s.mie & MIE_WRITABLE;
    this.mipHw = s.mipHw & MIE_WRITABLE;
    this.mipSw = s.mipSw & MIP_S_BITS;
    this.mideleg = s.mideleg & MIP_S_BITS;
    this.medeleg = s.medeleg & MEDELEG_WRITABLE;
    this.mcounteren = s.mcounteren;
    this.scounteren = s.scounteren;
    this.mcountinhibit = s.mcountinhibit;
    this.pmpcfg.set(s.pmpcfg);
    this.pmpaddr.set(s.pmpaddr);
    this.count = s.instret;
    this.cycleOffset = s.cycleOffset;
    this.instretOffset = s.instretOffset;
    this.wfi = s.wfi === true;
    const satpLo = this.csr[S_SATP * 2];
    const satpHi = this.csr[S_SATP * 2 + 1];
    this.satpMode = satpMode;
    this.satpRoot = ((satpHi & 0xfff) * TWO_POW_32 + (satpLo >>> 0)) * 4096;
    this.resValid = false;
    this.priv = s.priv;
    this.updateDataPriv();
    this.flushTlb();
    this.selectTlbs();
    this.breakOut = true;
    // Compiled code is derived state: RAM is about to be (or was) replaced.
    this.jit?.flush();
  }
}

let warmedUp = false;

/** Instructions of warm-up-program.S each warm-up hart runs: about 100 passes of its loop, in 100 calls of
 * run(). */
const WARM_UP_RUNS = 100;
const WARM_UP_BUDGET = 200;

/** Where the warm-up maps its ROM: one `ret` (jalr x0, 0(ra)), so a fetch from MMIO (as from the board's boot
 * ROM, where every boot starts) is among the paths V8 has seen, then a word that reads 0xffffffff (MMIO loads,
 * and a value past 2^31 through the bus). */
const WARM_UP_ROM_BASE = 0x1000;

/** Maps the warm-up program's ROM on `bus` (hart.test.ts runs the program too). */
export function mapWarmUpRom(bus: PhysBus): void {
  bus.map(WARM_UP_ROM_BASE, 0x1000, {
    id: "warm-up-rom",
    read: (offset: number) => (offset === 0 ? 0x8067 : offset === 4 ? 0xffffffff : 0),
    write: () => {},
  });
}

/**
 * Runs warm-up-program.S on two scratch harts, once per process. V8 optimizes the inner loop only with what it
 * has seen run: a path first taken later (a rarer load width, a branch condition, a TLB miss) throws the
 * optimized code away and recompiles it (~100 ms on V8's thread, the boot meanwhile in V8's slow tiers).
 * Without a warm-up a Linux boot did that about 30 times; with this one `--trace-deopt` shows one compile of
 * the loop and no deoptimization before or during a boot. Harts share that knowledge, as they share code.
 */
function warmUp(): void {
  // One hart with the JIT off, so the interpreter sees every path itself (compiled blocks would take the hot
  // ones over), and one with it on and compiling at once, so the block dispatch is seen too. They take turns
  // in short runs, so that V8 has feedback from both before it first optimizes the loop: one after the
  // other, the first optimization lacked the second's paths and was thrown away again (a recompile of the
  // loop takes V8 ~100 ms, during which a boot ran at a fraction of its speed).
  const harts = [false, true].map((jit) => {
    const ram = new GuestRam(WARM_UP_BASE, WARM_UP_RAM_BYTES);
    for (const part of WARM_UP_PROGRAM) ram.u16.set(part.halfwords, part.offset >> 1);
    const bus = new PhysBus(ram);
    mapWarmUpRom(bus);
    const hart = new Rv64Hart(0, bus, { mtime: () => 0 }, { jit });
    if (hart.blockCache !== null) hart.blockCache.threshold = 1;
    hart.setPc(WARM_UP_BASE, 0);
    return hart;
  });
  for (let k = 0; k < WARM_UP_RUNS; k++) for (const hart of harts) hart.run(WARM_UP_BUDGET);
}

/** One set of direct-mapped TLBs: read, write and fetch. */
class TlbSet {
  readonly rTagLo = new Int32Array(TLB_SIZE).fill(TLB_EMPTY);
  readonly rTagHi = new Int32Array(TLB_SIZE);
  readonly rOff = new Int32Array(TLB_SIZE);
  readonly wTagLo = new Int32Array(TLB_SIZE).fill(TLB_EMPTY);
  readonly wTagHi = new Int32Array(TLB_SIZE);
  readonly wOff = new Int32Array(TLB_SIZE);
  readonly xTagLo = new Int32Array(TLB_SIZE).fill(TLB_EMPTY);
  readonly xTagHi = new Int32Array(TLB_SIZE);
  readonly xOff = new Int32Array(TLB_SIZE);

  flush(): void {
    this.rTagLo.fill(TLB_EMPTY);
    this.wTagLo.fill(TLB_EMPTY);
    this.xTagLo.fill(TLB_EMPTY);
  }
}

function accessFaultCause(access: number): number {
  return access === ACCESS_FETCH
    ? CAUSE_FETCH_ACCESS
    : access === ACCESS_LOAD
      ? CAUSE_LOAD_ACCESS
      : CAUSE_STORE_ACCESS;
}

function pageFaultCause(access: number): number {
  return access === ACCESS_FETCH
    ? CAUSE_FETCH_PAGE_FAULT
    : access === ACCESS_LOAD
      ? CAUSE_LOAD_PAGE_FAULT
      : CAUSE_STORE_PAGE_FAULT;
}

/** Whether writing `csr` can change which interrupts are pending and enabled (mstatus.MIE/SIE, mie, mip,
 * mideleg) or the translation in use (satp). */
function breaksOut(csr: number): boolean {
  switch (csr) {
    case CSR_MSTATUS:
    case CSR_SSTATUS:
    case CSR_MIE:
    case CSR_SIE:
    case CSR_MIP:
    case CSR_SIP:
    case CSR_MIDELEG:
    case CSR_SATP:
      return true;
    default:
      return false;
  }
}

/** Slot in `csr` of a plain-storage CSR. */
function plainSlot(csr: number): number {
  switch (csr) {
    case CSR_MEPC:
      return S_MEPC;
    case CSR_SEPC:
      return S_SEPC;
    case CSR_MTVAL:
      return S_MTVAL;
    case CSR_STVAL:
      return S_STVAL;
    case CSR_MSCRATCH:
      return S_MSCRATCH;
    case CSR_SSCRATCH:
      return S_SSCRATCH;
    case CSR_MTVEC:
      return S_MTVEC;
    case CSR_STVEC:
      return S_STVEC;
    case CSR_MENVCFG:
      return S_MENVCFG;
    case CSR_SENVCFG:
      return S_SENVCFG;
    case CSR_MCAUSE:
      return S_MCAUSE;
    default:
      return S_SCAUSE;
  }
}
