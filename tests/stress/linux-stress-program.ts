// What the Linux stress tests share: linux-stress.c built for the guest, and the kernel log lines that fail
// them.
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
