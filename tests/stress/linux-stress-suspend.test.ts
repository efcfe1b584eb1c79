// Linux under parallel stress on 4 vCPUs, suspended and resumed in the middle of it through the
// hypervisor: every hart stops wherever it is (inside a futex wait, a pipe copy, an LR/SC loop, an IPI in
// flight), its state goes to files and a new VMM process goes on from them. The stress (linux-stress.c) must
// still finish with every result exact and the kernel's log clean.
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, until } from "../integration/linux-vm-fixture.ts";
import { assertEveryCpuBusy, buildLinuxStress, KERNEL_TROUBLE } from "./linux-stress-program.ts";

const { client, tsvm, exec, booted } = await linuxVmFixture("stress-suspend");
const scratch = mkdtempSync(join(tmpdir(), "tsvm-stress-suspend-"));
after(() => rmSync(scratch, { recursive: true, force: true }));
const CPUS = 4;

async function suspendResume(): Promise<void> {
  const s = await tsvm("suspend", "stress");
  assert.equal(s.code, 0, s.stderr);
  assert.equal((await client.getInstance("stress")).status, "SUSPENDED");
  const r = await tsvm("resume", "stress");
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await client.getInstance("stress")).status, "RUNNING");
}

test("Linux on 4 vCPUs suspended and resumed mid-stress: the stress finishes exact, every vCPU busy, the log clean", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async (t) => {
  const t0 = Date.now();
  const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const elf = buildLinuxStress(scratch);
  const created = await tsvm("create", "stress", "--cpus", String(CPUS), "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  await booted("stress");
  mark("booted");
  const cp = await tsvm("cp", elf, "stress:/root/linux-stress");
  assert.equal(cp.code, 0, cp.stderr);
  // Detached, so the exec returns while the stress runs; /root/running appears once it has started.
  const stat = `grep "^cpu[0-9]" /proc/stat >> /root/out`;
  await exec(
    "stress",
    `setsid sh -c 'echo nproc=$(nproc) > /root/out; ${stat}; touch /root/running; ` +
      `/root/linux-stress ${CPUS} 1 0 /root/stop >> /root/out 2>&1; echo status=$? >> /root/out; ${stat}; ` +
      `echo done >> /root/out' </dev/null >/dev/null 2>&1 &`,
  );
  await until("the stress to start", async () =>
    (await exec("stress", "test -e /root/running && echo yes")).trim() === "yes" ? true : undefined,
  );
  mark("stress started");
  await suspendResume();
  mark("suspended and resumed");
  // The suspend came while the stress ran: it runs until /root/stop exists.
  const during = await exec("stress", "cat /root/out");
  assert.ok(!during.includes("status="), `the stress ended before the test stopped it:\n${during}`);
  await exec("stress", "touch /root/stop");
  const out = await until(
    "the stress to finish",
    async () => {
      const o = await exec("stress", "cat /root/out 2>/dev/null; true");
      return o.split("\n").includes("done") ? o : undefined;
    },
    300_000,
  );
  mark("stress finished");
  t.diagnostic(out.match(/^STRESS.*$/m)?.[0] ?? out);
  assert.match(out, /^STRESS OK rounds=\d+/m, out);
  assert.match(out, /^status=0$/m, out);
  const busy = assertEveryCpuBusy(out, CPUS);
  t.diagnostic(`busy jiffies ${busy.join(", ")}`);
  const trouble = await exec("stress", `dmesg | grep -E '${KERNEL_TROUBLE}'; true`);
  assert.equal(trouble, "", "the kernel's log reports trouble");
  const vm = await client.getInstance("stress");
  assert.deepEqual(vm.history.filter((h) => h.to === "SUSPENDED").length, 1, "suspended once");
});
