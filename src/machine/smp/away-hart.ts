// One hart of a board, running on a thread of its own: guest RAM shared with the board (a SharedArrayBuffer),
// device windows reached through its link's mailbox, guest time from the shared time base, interrupt lines
// from the link. The thread's host calls `runUntilParked` and moves states in and out around it.

import { GuestRam } from "../bus/guest-ram.ts";
import type { AccessWidth, MmioDevice } from "../bus/mmio-device.ts";
import { PhysBus } from "../bus/phys-bus.ts";
import type { Clock } from "../ports.ts";
import { Rv64Hart, type Rv64HartState } from "../riscv/hart.ts";
import { HartLink } from "./hart-link.ts";
import { type AwayHartSetup, DEVICE_MIP_BITS } from "./remote-harts.ts";
import { TimeBaseReader } from "./time-base.ts";

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
  ) {}

  read(offset: number, width: AccessWidth): number {
    this.link.call(false, this.base + offset, width, 0, 0);
    return this.link.loadedLo >>> 0;
  }

  write(offset: number, width: AccessWidth, value: number): void {
    this.link.call(true, this.base + offset, width, value | 0, 0);
  }
}

export class AwayHart {
  readonly hart: Rv64Hart;
  private readonly link: HartLink;
  /** The line levels last given to the hart. */
  private applied = 0;
  private budget = 20_000;

  constructor(
    setup: AwayHartSetup,
    private readonly clock: Clock,
  ) {
    this.link = new HartLink(setup.link, new Int32Array(setup.doorbell));
    const ram = new GuestRam(setup.ramBase, setup.ram.byteLength, setup.ram);
    const bus = new PhysBus(ram);
    for (const w of setup.windows) bus.map(w.base, w.size, new LinkedWindow(w.id, w.base, this.link));
    const time = new TimeBaseReader(setup.timeBase, clock);
    this.hart = new Rv64Hart(setup.hartId, bus, time, { jit: setup.jit, sharedRam: true });
    const blocks = this.hart.blockCache;
    if (blocks !== null && setup.jitThreshold !== undefined) blocks.threshold = setup.jitThreshold;
  }

  load(state: Rv64HartState): void {
    this.hart.loadState(state);
    this.applied = state.mipHw;
    this.link.instretCount = this.hart.instretCount();
  }

  save(): Rv64HartState {
    return this.hart.saveState();
  }

  /** Runs the hart, sleeping while it waits in WFI, until the board asks it to park. */
  runUntilParked(): void {
    const link = this.link;
    const hart = this.hart;
    const clock = this.clock;
    while (!link.parkRequested) {
      const seen = link.wakeCount;
      this.takeLines();
      const start = clock.nowMs();
      hart.run(this.budget);
      const took = clock.nowMs() - start;
      link.instretCount = hart.instretCount();
      if (hart.waiting) {
        link.sleep(seen);
        continue;
      }
      if (took < SLICE_MS / 2) this.budget = Math.min(MAX_BUDGET, this.budget * 2);
      else if (took > SLICE_MS * 2) this.budget = Math.max(MIN_BUDGET, Math.floor(this.budget / 2));
    }
    link.instretCount = hart.instretCount();
  }

  /** Passes the board's line levels that changed on to the hart. */
  private takeLines(): void {
    const bits = this.link.lines;
    const changed = bits ^ this.applied;
    if (changed === 0) return;
    for (const bit of DEVICE_MIP_BITS)
      if ((changed & (1 << bit)) !== 0) this.hart.setPending(bit, (bits & (1 << bit)) !== 0);
    this.applied = bits;
  }
}
