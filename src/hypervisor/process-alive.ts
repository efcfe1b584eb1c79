// Whether a process still runs (a zombie does not); process-identity.ts adds which process it is.

import { readFileSync } from "node:fs";

/**
 * True while `pid` exists and is not a zombie. A process killed with SIGKILL stays a zombie until its
 * parent reaps it — for a detached daemon or VMM that parent is init, which here reaps only after a
 * second or more — and `kill(pid, 0)` succeeds on a zombie, so that alone would call a dead daemon alive
 * and keep its successor from taking the lock.
 */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "EPERM") return false;
  }
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    // No procfs (not Linux): kill(pid, 0) is all there is to go on.
    return true;
  }
  // Field 3, after the parenthesised command name (which may itself contain spaces or parentheses).
  const state = stat.slice(stat.lastIndexOf(")") + 2, stat.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X" && state !== "";
}
