// Linux under parallel stress on 2 vCPUs (TSVM_STRESS_CPUS=2,4,8 for more): the default image boots
// through `tsvm run` with linux-stress.c (threads on a contended mutex and condition variables, processes on
// a raw futex in shared memory, a ring of pipes, checksummed pipe streams) added to its initramfs, runs it
// for a while, and must finish with every result exact, every vCPU having run guest code, and no oops, BUG,
// WARNING, stall or lockup in the kernel's log. A hang shows as the run's deadline.
// TSVM_STRESS_SECONDS=300 makes it a soak. linux-stress-suspend.test.ts runs the same stress on 4 vCPUs
// under the hypervisor, suspended once mid-stress.
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { CpioNewcWriter } from "../../src/images/cpio-newc.ts";
import { img, skip, tsvmRun } from "../integration/tsvm-run-fixture.ts";
import { assertEveryCpuBusy, buildLinuxStress, KERNEL_TROUBLE } from "./linux-stress-program.ts";

/** Guest seconds of stress per run (rounds go on until then); at least one round runs whatever it says. */
const SECONDS = Number(process.env.TSVM_STRESS_SECONDS ?? 15);
/** The VMs' vCPU counts; 4 vCPUs run in linux-stress-suspend.test.ts, under the hypervisor. */
const CPUS = (process.env.TSVM_STRESS_CPUS ?? "2").split(",").map(Number);
/** A boot plus the stress plus a round that started just before the end, with room for a loaded host. */
const DEADLINE_MS = (SECONDS + 600) * 1000;

const scratch = mkdtempSync(join(tmpdir(), "tsvm-linux-stress-"));
after(() => rmSync(scratch, { recursive: true, force: true }));

let initrd: string | undefined;

/** The image's initramfs with /stress/linux-stress in front (Linux unpacks concatenated archives). */
function stressInitrd(): string {
  if (initrd !== undefined) return initrd;
  const elf = buildLinuxStress(scratch);
  const cpio = new CpioNewcWriter();
  cpio.addDirectory("stress");
  cpio.addFile("stress/linux-stress", readFileSync(elf), 0o755);
  initrd = join(scratch, "initrd");
  writeFileSync(initrd, Buffer.concat([cpio.finish(), readFileSync(img!.initrd)]));
  return initrd;
}

for (const cpus of CPUS) {
  test(`Linux on ${cpus} vCPUs survives ${SECONDS} s of threads, futexes, processes and pipes, results exact`, {
    skip,
  }, async () => {
    const workers = 2 * cpus; // more runnable threads than vCPUs: preemption, migration, IPIs
    const script = [
      "echo nproc=$(nproc)",
      "grep '^cpu[0-9]' /proc/stat",
      `/stress/linux-stress ${workers} 1 ${SECONDS}`,
      "echo status=$?",
      "grep '^cpu[0-9]' /proc/stat",
      `dmesg | grep -E '${KERNEL_TROUBLE}' | sed 's/^/TROUBLE /'`,
      "true",
    ].join("; ");
    const t0 = Date.now();
    const r = await tsvmRun(
      ["--cpus", String(cpus), "--kernel", img!.kernel, "--initrd", stressInitrd(), "--exec", script],
      DEADLINE_MS,
    );
    const took = ((Date.now() - t0) / 1000).toFixed(0);
    assert.equal(r.status, 0, `tsvm run: ${r.stderr}\n${r.stdout}`);
    assert.match(r.stdout, /^STRESS OK rounds=\d+/m, r.stdout);
    assert.ok(r.stdout.split("\n").includes("status=0"), r.stdout);
    assert.deepEqual(
      r.stdout.split("\n").filter((l) => l.startsWith("TROUBLE ")),
      [],
      "the kernel's log reports trouble",
    );
    const busy = assertEveryCpuBusy(r.stdout, cpus);
    console.log(
      `# ${cpus} vCPUs: ${r.stdout.match(/^STRESS OK.*$/m)![0]}, busy jiffies ${busy.join(", ")}, ${took} s`,
    );
  });
}
