// One turn of a host's run loop: slices of guest instructions for a few milliseconds of host time, with the
// per-hart budget adapting so each slice takes about a millisecond whatever the host's speed. Shared by
// every host of a board (the Node engine, the browser tab's worker), which differ only in how they yield
// between turns and sleep while every hart waits in WFI.

import type { Clock } from "../ports.ts";
import type { RiscvVirtBoard } from "./riscv-virt.ts";

/** Host time one `runSlice` aims at; the per-hart budget adapts to it. */
const SLICE_MS = 1;
const MIN_BUDGET = 1_000;
const MAX_BUDGET = 2_000_000;
/** How long a guest-instruction rate is averaged over. */
const RATE_WINDOW_MS = 1000;

export class BoardTurn {
  /** Instructions per hart of the next slice. */
  budget = 20_000;
  /** Host milliseconds spent running guest code. */
  busyMs = 0;
  /** Guest instructions per second over the last full window. */
  rate = 0;
  private rateWindowStart = -1;
  private rateWindowInstr = 0;

  constructor(
    private readonly board: RiscvVirtBoard,
    private readonly clock: Clock,
  ) {}

  /**
   * Runs slices until `turnMs` of host time has passed, every hart waits, or `running()` turns false (a
   * power event during a slice). Returns the host time at its end. Exceptions from the machine propagate.
   */
  run(turnMs: number, running: () => boolean): number {
    const board = this.board;
    const turnStart = this.clock.nowMs();
    if (this.rateWindowStart < 0) this.rateWindowStart = turnStart;
    let now = turnStart;
    let executed = 0;
    do {
      const sliceStart = now;
      executed += board.runSlice(this.budget);
      now = this.clock.nowMs();
      // Aim each slice at SLICE_MS so timers and I/O are looked at often enough, whatever the host speed.
      const took = now - sliceStart;
      if (!board.allWaiting) {
        if (took < SLICE_MS / 2) this.budget = Math.min(MAX_BUDGET, this.budget * 2);
        else if (took > SLICE_MS * 2) this.budget = Math.max(MIN_BUDGET, Math.floor(this.budget / 2));
      }
    } while (running() && now - turnStart < turnMs && !board.allWaiting);
    this.busyMs += now - turnStart;
    this.rateWindowInstr += executed;
    if (now - this.rateWindowStart >= RATE_WINDOW_MS) {
      this.rate = (this.rateWindowInstr * 1000) / (now - this.rateWindowStart);
      this.rateWindowStart = now;
      this.rateWindowInstr = 0;
    }
    return now;
  }
}
