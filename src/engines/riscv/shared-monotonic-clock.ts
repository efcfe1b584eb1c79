// A host clock that reads the same on every thread of this process: performance.now() counts from each
// thread's own start, so it is moved onto the process's monotonic clock (process.hrtime) once per thread.
// Harts on different threads read guest time from it (the CLINT views of machine/smp/away-hart.ts).

import { performance } from "node:perf_hooks";
import type { Clock } from "../../machine/index.ts";

export function sharedMonotonicClock(): Clock {
  const offset = Number(process.hrtime.bigint()) / 1e6 - performance.now();
  return { nowMs: () => performance.now() + offset };
}
