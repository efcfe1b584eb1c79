// Which process a recorded pid was: its boot, its start time and its command line, so that a pid read from
// a file is signalled only while it still names the same process (after a host reboot, or once the
// process is gone, the pid may belong to anything).

import { readFileSync } from "node:fs";
import { processAlive } from "./process-alive.ts";

export interface ProcessIdentity {
  readonly pid: number;
  /** /proc/sys/kernel/random/boot_id: pids and start times mean nothing across a reboot. */
  readonly bootId: string;
  /** Field 22 of /proc/PID/stat: clock ticks after boot at which the process started. */
  readonly startTime: string;
}

let bootIdCache: string | undefined;

function bootId(): string | undefined {
  try {
    bootIdCache ??= readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim();
  } catch {}
  return bootIdCache;
}

/** The identity of the live process `pid` (undefined when it is gone, a zombie, or there is no procfs). */
export function readProcessIdentity(pid: number): ProcessIdentity | undefined {
  if (!processAlive(pid)) return undefined;
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  const boot = bootId();
  // Fields after the parenthesised command name (which may hold spaces): state is field 3, starttime 22.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  const startTime = fields[22 - 3];
  if (boot === undefined || startTime === undefined || !/^\d+$/.test(startTime)) return undefined;
  return { pid, bootId: boot, startTime };
}

/** The process's arguments (/proc/PID/cmdline), or undefined when it cannot be read. */
export function processArguments(pid: number): string[] | undefined {
  try {
    const raw = readFileSync(`/proc/${pid}/cmdline`, "utf8");
    return raw.split("\0").filter((a, i, all) => i < all.length - 1 || a !== "");
  } catch {
    return undefined;
  }
}

/**
 * True while the process recorded as `id` still runs: same pid, same boot, same start time, and — when
 * `argument` is given — that argument on its command line (a VMM's spec file names its VM).
 */
export function isSameProcess(id: ProcessIdentity, argument?: string): boolean {
  const now = readProcessIdentity(id.pid);
  if (!now || now.bootId !== id.bootId || now.startTime !== id.startTime) return false;
  return argument === undefined || (processArguments(id.pid)?.includes(argument) ?? false);
}
