// The VMM's side of fencing (docs/cluster.md "Fencing"): in a cluster the daemon sends each VMM a heartbeat
// every HEARTBEAT_EVERY_MS saying how long ago its host's lease was last renewed; the VMM of a VM on shared
// storage that has heard of no renewal for its fence deadline (the daemon's own, lease-fence.ts, and two
// heartbeats) ends itself at once. So a daemon killed on its own, or stalled, cannot leave a guest running
// that another host may restart elsewhere.

import { performance } from "node:perf_hooks";

/** How often the daemon sends each VMM a heartbeat (and how often the VMM looks at its deadline). */
export const HEARTBEAT_EVERY_MS = 500;

/** What the daemon tells the VMMs of the host's lease; absent outside a cluster (no VMM-side fence). */
export interface LeaseWitness {
  /** The fence deadline: how long a VMM may go without hearing of a lease renewal (ms). */
  readonly fenceAfterMs: number;
  /** How long ago the host's lease was last renewed, now (ms). */
  leaseAgeMs(): number;
}

/**
 * Counts down to the fence. The lease's renewal time is kept on this process's monotonic clock (now less
 * the age a heartbeat reports), so neither a wall-clock step nor the daemon's clock matters.
 */
export class VmmWatchdog {
  private renewedAtMs: number;
  private timer: NodeJS.Timeout | undefined;
  private fired = false;

  constructor(
    private readonly fenceAfterMs: number,
    private readonly fence: (reason: string) => void,
    private readonly now: () => number = () => performance.now(),
  ) {
    // The daemon launched (or adopted) this VMM just now, with its lease fresh.
    this.renewedAtMs = this.now();
  }

  /** A heartbeat: the lease was renewed `leaseAgeMs` ago. Bad values (a hostile sender) count as none. */
  heard(leaseAgeMs: unknown): void {
    if (typeof leaseAgeMs !== "number" || !Number.isFinite(leaseAgeMs) || leaseAgeMs < 0) return;
    this.renewedAtMs = Math.max(this.renewedAtMs, this.now() - leaseAgeMs);
  }

  /** How long since the last renewal heard of (ms). */
  silentMs(): number {
    return this.now() - this.renewedAtMs;
  }

  start(): void {
    this.timer = setInterval(() => this.check(), HEARTBEAT_EVERY_MS);
    this.timer.unref();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  /**
   * Fences when the deadline has passed. An event loop that was busy (a long save) runs its timers before
   * it reads the heartbeats queued meanwhile, so the deadline is looked at again after one I/O phase.
   */
  check(): void {
    if (this.fired || this.silentMs() < this.fenceAfterMs) return;
    setImmediate(() => {
      const silent = this.silentMs();
      if (this.fired || silent < this.fenceAfterMs) return;
      this.fired = true;
      this.stop();
      this.fence(
        `no heartbeat from the daemon told of a lease renewal for ${(silent / 1000).toFixed(1)} s ` +
          `(fence deadline ${(this.fenceAfterMs / 1000).toFixed(1)} s): another host may soon restart this VM`,
      );
    });
  }
}
