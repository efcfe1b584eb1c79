// End to end with real Linux: the daemon (started on demand by bin/tsvm), a VM of the default image on the
// riscv engine in its own VMM process, its serial console over the API, kill -9 of its VMM (REPAIRING →
// a fresh boot), kill -9 of the daemon (the VM keeps running and is re-attached), and a guest that reboots
// itself (it stays RUNNING in the same VMM, as on Compute Engine).
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { linuxVmFixture, noImage, until } from "./linux-vm-fixture.ts";

const { home, client, tsvm, prompts, typeLine } = await linuxVmFixture("hv-linux");
const run = (command: string, expect: string) => typeLine("web", command, expect);

test("a Linux VM: create, console, VMM killed and repaired, daemon killed and re-attached, guest reboot", {
  skip: noImage,
}, async () => {
  await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: 5000 }));
  const created = await tsvm("create", "web", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  await prompts("web", 1);
  await run("echo $((6*7))", "42");
  await run("uname -m", "riscv64");

  const first = await client.getInstance("web");
  process.kill(first.vmmPid!, "SIGKILL");
  const repaired = await until("the repaired VM", async () => {
    const vm = await client.getInstance("web");
    return vm.status === "RUNNING" && vm.vmmPid !== null && vm.vmmPid !== first.vmmPid ? vm : undefined;
  });
  assert.deepEqual(
    repaired.history.slice(-3).map((h) => h.to),
    ["REPAIRING", "STAGING", "RUNNING"],
  );
  await prompts("web", 2);
  await run("echo repaired-$((1+1))", "repaired-2");

  const daemon = JSON.parse(await readFile(join(home, "daemon.json"), "utf8")) as { pid: number };
  process.kill(daemon.pid, "SIGKILL");
  const again = await tsvm("describe", "web", "--format", "json");
  assert.equal(again.code, 0, again.stderr);
  const vm = JSON.parse(again.stdout);
  assert.equal(vm.status, "RUNNING");
  assert.equal(vm.vmmPid, repaired.vmmPid, "the same VMM, re-attached");
  await run("echo here-$((2+1))", "here-3");

  // A reboot from inside the guest is not a lifecycle event: same VMM, still RUNNING, no new transition.
  const beforeReboot = await client.getInstance("web");
  await run("reboot", "reboot: Restarting system");
  await prompts("web", 3);
  await run("echo rebooted-$((3+1))", "rebooted-4");
  const rebooted = await client.getInstance("web");
  assert.equal(rebooted.status, "RUNNING");
  assert.equal(rebooted.vmmPid, beforeReboot.vmmPid, "the guest rebooted inside the same VMM");
  assert.equal(rebooted.history.length, beforeReboot.history.length, "a guest reboot adds no transition");
});
