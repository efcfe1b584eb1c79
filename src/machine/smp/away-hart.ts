// One hart of a board, running on a thread of its own: guest RAM shared with the board (a SharedArrayBuffer),
// device windows reached through its link's mailbox, except the CLINT: a view of its own over the board's
// CLINT registers gives the hart guest time, its timer and IPIs on this thread (a round trip to the board's
// thread per timer programming or mtime read cost the hart more time waiting than running). The PLIC's
// lines come from the link. The thread's host calls `runUntilParked` and moves states in and out around it.

import { GuestRam } from "../bus/guest-ram.ts";
import { CallbackIrqLine, type IrqLine } from "../bus/irq-line.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import { Clint } from "../devices/clint.ts";
import { ClintRegisters } from "../devices/clint-registers.ts";
import type { Clock } from "../ports.ts";
import { Rv64Hart, type Rv64HartState } from "../riscv/hart.ts";
import { HartLink } from "./hart-link.ts";
import { type AwayHartSetup, LINKED_MIP_BITS } from "./remote-harts.ts";

/** mip bit numbers of the CLINT's lines (privileged spec §3.1.9). */
const MIP_MSIP = 3;
const MIP_MTIP = 7;
/** The lines of other harts in this hart's CLINT view: their own threads look at them. */
const ELSEWHERE: IrqLine = { set() {} };

/** Host time one run of the hart aims at between looks at its link (interrupt latency on this thread). */
const SLICE_MS = 1;
const MIN_BUDGET = 1_000;
const MAX_BUDGET = 2_000_000;

/** A device window of the board, reached through the link. */
class LinkedWindow implements MmioDevice {
  constructor(
    readonly id: string,
    private readonly base: number,
    private readonly link: HartLink,
    /** This window's index in the setup (the link counts round trips per window). */
    private readonly index: number,
    private readonly clock: Clock,
  ) {}

  read(offset: number, width: AccessWidth): number {
    const start = this.clock.nowMs();
    this.link.call(false, this.base + offset, width, 0, 0);
    this.link.countCall(this.index, this.clock.nowMs() - start);
    return this.link.loadedLo >>> 0;
  }

  write(offset: number, width: AccessWidth, value: number): void {
    const start = this.clock.nowMs();
    this.link.call(true, this.base + offset, width, value | 0, 0);
    this.link.countCall(this.index, this.clock.nowMs() - start);
  }
}

export class AwayHart {
  readonly hart: Rv64Hart;
  private readonly link: HartLink;
  /** This thread's view of the board's CLINT. */
  private readonly clint: Clint;
  private readonly msip: CallbackIrqLine;
  private readonly mtip: CallbackIrqLine;
  /** The line levels last given to the hart. */
  private applied = 0;
  private budget = 20_000;
  /** The board's last write-TLB drop request this hart acted on (hart-link.ts). */
  private dropped = 0;

  constructor(
    setup: AwayHartSetup,
    private readonly clock: Clock,
  ) {
    const doorbell = new Int32Array(setup.doorbell);
    const link = new HartLink(setup.link, doorbell);
    this.link = link;
    const ram = new GuestRam(setup.ramBase, setup.ram.byteLength, setup.ram);
    // Always marked (cheap: a byte per write-TLB fill): the board clears it when its tracking starts.
    ram.dirtyPages = new Uint8Array(setup.dirtyMap);
    const bus = new PhysBus(ram);
    const own = setup.hartId;
    this.msip = new CallbackIrqLine((level) => this.hart.setPending(MIP_MSIP, level));
    this.mtip = new CallbackIrqLine((level) => this.hart.setPending(MIP_MTIP, level));
    const peers = setup.peers.map((b) => (b === null ? null : new HartLink(b, doorbell)));
    const { regs, id, harts } = setup.clint;
    const lines = (mine: IrqLine) => Array.from({ length: harts }, (_, h) => (h === own ? mine : ELSEWHERE));
    this.clint = new Clint(clock, lines(this.msip), lines(this.mtip), id, {
      regs: new ClintRegisters(regs, harts),
      // An IPI (or a timer) for another hart: wake it on its thread, or the board's for hart 0.
      onHartWritten: (h) => {
        if (h === own) return;
        const peer = peers[h];
        if (peer) peer.wake();
        else link.ringDoorbell();
      },
    });
    for (const [i, w] of setup.windows.entries())
      bus.map(w.base, w.size, w.id === id ? this.clint : new LinkedWindow(w.id, w.base, link, i, clock));
    this.hart = new Rv64Hart(own, bus, this.clint, { jit: setup.jit, sharedRam: true });
    const blocks = this.hart.blockCache;
    if (blocks !== null && setup.jitThreshold !== undefined) blocks.threshold = setup.jitThreshold;
  }

  load(state: Rv64HartState): void {
    this.hart.loadState(state);
    this.applied = state.mipHw;
    // The state set the hart's MSIP and MTIP: the CLINT's levels go to it again whatever they were.
    this.msip.forget();
    this.mtip.forget();
    this.clint.updateHart(this.hart.hartId);
    this.link.instretCount = this.hart.instretCount();
  }

  save(): Rv64HartState {
    return this.hart.saveState();
  }

  /** Runs the hart, sleeping while it waits in WFI, until the board asks it to park. */
  runUntilParked(): void {
    const link = this.link;
    link.running = true;
    try {
      this.runLoop();
    } finally {
      // Also when the hart failed: nobody may wait for this thread's acknowledgements any longer.
      link.instretCount = this.hart.instretCount();
      link.running = false;
    }
  }

  private runLoop(): void {
    const link = this.link;
    const hart = this.hart;
    const clock = this.clock;
    while (!link.parkRequested) {
      const seen = link.wakeCount;
      this.takeLines();
      this.takeDropRequest();
      const start = clock.nowMs();
      hart.run(this.budget);
      const ran = clock.nowMs();
      const took = ran - start;
      link.countRun(took);
      link.instretCount = hart.instretCount();
      if (hart.waiting) {
        // Until woken (an interrupt line, an IPI, a park) or until this hart's own timer is due.
        const id = hart.hartId;
        link.sleep(seen, this.clint.nextDeadlineMs(id, id + 1) - ran);
        link.countSleep(clock.nowMs() - ran);
        continue;
      }
      if (took < SLICE_MS / 2) this.budget = Math.min(MAX_BUDGET, this.budget * 2);
      else if (took > SLICE_MS * 2) this.budget = Math.max(MIN_BUDGET, Math.floor(this.budget / 2));
    }
  }

  /** Dirty-page tracking took the map: the next store to each page must mark it again. */
  private takeDropRequest(): void {
    const req = this.link.dropRequest;
    if (req === this.dropped) return;
    this.hart.dropAllWriteMappings();
    this.dropped = req;
    this.link.ackDrop(req);
  }

  /** Passes the PLIC's line levels that changed on to the hart, and the CLINT's levels now. */
  private takeLines(): void {
    this.clint.updateHart(this.hart.hartId);
    const bits = this.link.lines;
    const changed = bits ^ this.applied;
    if (changed === 0) return;
    for (const bit of LINKED_MIP_BITS)
      if ((changed & (1 << bit)) !== 0) this.hart.setPending(bit, (bits & (1 << bit)) !== 0);
    this.applied = bits;
  }
}
