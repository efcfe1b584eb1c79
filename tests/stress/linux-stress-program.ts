// What the Linux stress tests share: linux-stress.c built for the guest, the kernel log lines that fail
// them, and the check that every vCPU took part.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));

/** An extended regular expression (grep -E) for lines of the kernel's log that mean it went wrong: an oops,
 * BUG or WARNING, an RCU stall, a lockup, a hung task, a process killed by a fault it should never take. */
export const KERNEL_TROUBLE =
  "Oops|BUG:|WARNING:|rcu.*stall|soft lockup|hard LOCKUP|hung_task|blocked for more|segfault";

/** Builds linux-stress.c (static riscv64, glibc) into `dir`; returns the program's path. */
export function buildLinuxStress(dir: string): string {
  const elf = join(dir, "linux-stress");
  execFileSync(
    "riscv64-linux-gnu-gcc",
    [
      ...["-march=rv64gc", "-mabi=lp64d", "-O2", "-static", "-pthread", "-Wall", "-Werror"],
      ...["-o", elf, join(here, "linux-stress.c")],
    ],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  return elf;
}

/** Busy jiffies (user + nice + system + irq + softirq) of each CPU in /proc/stat lines. */
function busyTicks(lines: string[]): number[] {
  return lines.map((l) => {
    const f = l.trim().split(/\s+/).slice(1).map(Number);
    return f[0]! + f[1]! + f[2]! + f[5]! + f[6]!;
  });
}

/**
 * `output` holds `nproc=N`, the guest's /proc/stat CPU lines before the stress and again after it: asserts
 * that the guest brought up `cpus` CPUs and each was busy for a good share of the stress (a jiffy is 4 ms at
 * the image's HZ=250). Returns each CPU's busy jiffies.
 */
export function assertEveryCpuBusy(output: string, cpus: number): number[] {
  const lines = output.split("\n");
  assert.ok(lines.includes(`nproc=${cpus}`), `the guest did not bring up ${cpus} CPUs:\n${output}`);
  const stat = lines.filter((l) => /^cpu\d+ /.test(l));
  assert.equal(stat.length, 2 * cpus, output);
  const before = busyTicks(stat.slice(0, cpus));
  const busy = busyTicks(stat.slice(cpus)).map((t, i) => t - before[i]!);
  for (const [i, t] of busy.entries())
    assert.ok(t >= 25, `cpu${i} was busy for only ${t} jiffies during the stress: ${busy.join(", ")}`);
  return busy;
}
