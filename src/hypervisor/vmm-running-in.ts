// Whether a VMM process still runs from a VM's directory, judged from the directory alone: what deleting a
// VM whose definition is unusable (so whose id is unknown) must rule out before it removes the directory.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import { verifiedVmm } from "./vmm-process.ts";
import { parseRunRecord } from "./vmm-protocol.ts";

/**
 * The pid of the VMM that vmm.json in `dir` names while that process still runs and is a VMM of this
 * directory (verifiedVmm: the recorded identity, or its spec file on the command line). A pid that now
 * belongs to an unrelated process does not count.
 */
export function vmmRunningIn(dir: string): number | undefined {
  let text: string;
  try {
    text = readFileSync(join(dir, "vmm.json"), "utf8");
  } catch {
    return undefined;
  }
  const run = parseRunRecord(text);
  return run ? verifiedVmm(run, join(dir, "vmm-spec.json"))?.pid : undefined;
}
