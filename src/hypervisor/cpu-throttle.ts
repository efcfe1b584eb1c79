// The CPU cap of a VM, enforced inside its VMM process: over each period the process may use `capPercent`
// of one core; once it has, the guest is paused for the rest of the period (as cgroup v2 cpu.max does with
// quota and period).

/** cgroup v2's default cpu.max period. */
export const CPU_CAP_PERIOD_MS = 100;
/** How often usage is checked; the overshoot past the quota is at most about one check. */
const CHECK_EVERY_MS = 2;

export interface Pausable {
  pause(): Promise<void>;
  resume(): Promise<void>;
}

export class CpuThrottle {
  private timer: NodeJS.Timeout | undefined;
  private periodStart = 0;
  private cpuAtStart = 0;
  private paused = false;
  private busy = false;
  private debtMs = 0;

  /**
   * @param capPercent of one core, 1..100·cores
   * @param cpuMs the process's CPU time so far in ms (user + system); injected so that tests can drive it
   */
  constructor(
    private readonly guest: Pausable,
    private readonly capPercent: number,
    private readonly cpuMs: () => number = () => {
      const u = process.cpuUsage();
      return (u.user + u.system) / 1000;
    },
    private readonly nowMs: () => number = () => performance.now(),
  ) {}

  private quotaMs(): number {
    return (CPU_CAP_PERIOD_MS * this.capPercent) / 100;
  }

  start(): void {
    this.periodStart = this.nowMs();
    this.cpuAtStart = this.cpuMs();
    this.timer = setInterval(() => void this.check(), CHECK_EVERY_MS);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  /** One check: pause when the period's quota is used up, resume and start a new period when it ends. */
  async check(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    try {
      const now = this.nowMs();
      if (now - this.periodStart >= CPU_CAP_PERIOD_MS) {
        // Time used past the quota (a check comes only between engine slices) is paid back next period,
        // so that the long-run share converges on the cap instead of cap + one slice per period.
        const cpu = this.cpuMs();
        this.debtMs = Math.min(
          this.quotaMs(),
          Math.max(0, cpu - this.cpuAtStart - (this.quotaMs() - this.debtMs)),
        );
        this.periodStart = now;
        this.cpuAtStart = cpu;
        if (this.paused) {
          this.paused = false;
          await this.guest.resume();
        }
        return;
      }
      if (!this.paused && this.cpuMs() - this.cpuAtStart >= this.quotaMs() - this.debtMs) {
        this.paused = true;
        await this.guest.pause();
      }
    } finally {
      this.busy = false;
    }
  }
}
