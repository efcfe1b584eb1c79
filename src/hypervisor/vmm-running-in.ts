// Whether a VMM process still runs from a VM's directory, judged from the directory alone: what deleting a
// VM whose definition is unusable (so whose id is unknown) must rule out before it removes the directory.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { processAlive } from "./process-alive.ts";
import { parseRunRecord } from "./vmm-protocol.ts";

/**
 * The pid of the VMM that vmm.json in `dir` names when that process is alive and was started on this
 * directory's spec (its command line names `dir/vmm-spec.json`), else undefined. A pid that now belongs to
 * an unrelated process does not count. Without procfs a live pid is taken as the VMM, to be safe.
 */
export function vmmRunningIn(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, "vmm.json"), "utf8");
  } catch {
    return undefined;
  }
  const run = parseRunRecord(text);
  if (!run || !processAlive(run.pid)) return undefined;
  let args: string[];
  try {
    args = readFileSync(`/proc/${run.pid}/cmdline`, "utf8").split("\0");
  } catch {
    return run.pid;
  }
  return args.includes(join(dir, "vmm-spec.json")) ? run.pid : undefined;
}
