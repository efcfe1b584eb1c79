// Fencing by lease (docs/cluster.md "Fencing"): a host that has not renewed its lease for three quarters of
// its TTL must assume its lease may expire for the other hosts, who may then restart its VMs elsewhere; so
// it stops its VMMs itself, at once and without asking etcd (which it cannot reach), before that can
// happen. The other hosts wait a further TTL after seeing it DOWN (failover.ts), which covers a host whose
// event loop stalled past this deadline.

import { readFileSync } from "node:fs";

/** The share of the lease's TTL a host may go without a renewal before it fences itself. */
export const FENCE_AFTER_TTL_SHARE = 0.75;
/** How often the deadline is checked. */
const CHECK_EVERY_MS = 200;
/** How long a SIGKILLed VMM may take to be gone before the fence says so. */
const KILL_WAIT_MS = 3000;

/** Watches a lease's renewals; calls `fence` once when none came for FENCE_AFTER_TTL_SHARE of the TTL. */
export function watchLease(options: {
  ttlSeconds: number;
  /** When the lease was last renewed (Date.now() time). */
  renewedAt: () => number;
  fence: (reason: string) => void;
}): { stop(): void } {
  const limitMs = options.ttlSeconds * 1000 * FENCE_AFTER_TTL_SHARE;
  const timer = setInterval(() => {
    const silentMs = Date.now() - options.renewedAt();
    if (silentMs < limitMs) return;
    clearInterval(timer);
    options.fence(
      `the lease was not renewed for ${(silentMs / 1000).toFixed(1)} s (TTL ${options.ttlSeconds} s): another host may soon take this host's VMs`,
    );
  }, CHECK_EVERY_MS);
  timer.unref();
  return { stop: () => clearInterval(timer) };
}

/**
 * SIGKILLs each process and waits, synchronously (no event of the daemon may run in between: nothing may
 * restart a VM now), until each is gone or a zombie. Answers the pids still alive after KILL_WAIT_MS.
 */
export function killNow(pids: readonly number[]): number[] {
  for (const pid of pids) {
    try {
      process.kill(pid, "SIGKILL");
    } catch {
      // already gone
    }
  }
  const deadline = Date.now() + KILL_WAIT_MS;
  let alive = pids.filter(processRunning);
  while (alive.length > 0 && Date.now() < deadline) alive = alive.filter(processRunning);
  return alive;
}

/** Whether `pid` still runs (a zombie, dead but not yet reaped by its parent, does not). */
export function processRunning(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2)[0] !== "Z";
  } catch {
    return false;
  }
}
