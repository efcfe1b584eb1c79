// End to end with real Linux, several VMs at once: the CPU cap (a busy guest under --cpu-cap 50% uses
// 40-55% of a host core, and `tsvm top` shows it), the CPU weight (two busy guests pinned to one host core
// share it by their weights), and isolation (kill -9 of one VMM: that VM is repaired with a fresh boot, the
// others keep running untouched). CPU is measured from /proc/<vmmPid>/stat over windows after the boots.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import {
  BOOT_MARK,
  BOOT_TIMEOUT_MS,
  linuxVmFixture,
  measureCpuPercent,
  noImage,
  until,
} from "./linux-vm-fixture.ts";

const { client, tsvm, exec, booted } = await linuxVmFixture("hv-resources");

/** Long enough that scheduling noise of a loaded host averages out; the issue asks for several seconds. */
const WINDOW_MS = 8000;
/** A guest process spinning in the shell, detached so that the exec returns; its PID is in /tmp/hog.pid. */
const START_HOG = "setsid sh -c 'echo $$ > /tmp/hog.pid; while :; do :; done' </dev/null >/dev/null 2>&1 &";
const STOP_HOG = "kill $(cat /tmp/hog.pid)";

let ready: Promise<void> | undefined;
/** The three VMs, created once and booted, shared by the tests of this file. */
function vms(): Promise<void> {
  ready ??= (async () => {
    for (const args of [
      ["hog", "--cpu-cap", "50%"],
      ["heavy", "--cpu-weight", "100"],
      ["light", "--cpu-weight", "25"],
    ]) {
      const r = await tsvm("create", ...args, "--memory", "256M");
      assert.equal(r.code, 0, r.stderr);
    }
    for (const vm of ["hog", "heavy", "light"]) await booted(vm);
  })();
  return ready;
}

async function vmmPid(vm: string): Promise<number> {
  const pid = (await client.getInstance(vm)).vmmPid;
  assert.ok(pid !== null, `${vm} has a VMM`);
  return pid;
}

async function guestUptime(vm: string): Promise<number> {
  return Number((await exec(vm, "read up idle < /proc/uptime; echo $up")).trim());
}

/** The CPUs this host process's threads may run on, as taskset prints them (e.g. "0,1" or "0-1"). */
function affinity(pid: number): string {
  return execFileSync("taskset", ["-p", "-c", String(pid)], { encoding: "utf8" })
    .split(":")[1]!
    .trim();
}

test("a busy Linux guest under --cpu-cap 50% uses 40-55% of a host core; tsvm top shows the cap and its CPU %", {
  skip: noImage,
  timeout: 3 * BOOT_TIMEOUT_MS,
}, async (t) => {
  await vms();
  const pid = await vmmPid("hog");
  await exec("hog", START_HOG);
  try {
    await new Promise((r) => setTimeout(r, 2000)); // the throttle settles into its periods
    // top samples the VMM's own CPU time over the same window as /proc.
    const [[measured], top] = await Promise.all([
      measureCpuPercent([pid], WINDOW_MS),
      tsvm("top", "--iterations", "1", "--interval", String(WINDOW_MS / 1000), "--format", "json"),
    ]);
    assert.equal(top.code, 0, top.stderr);
    const row = (
      JSON.parse(top.stdout) as {
        name: string;
        cpuPercent: number;
        cpuCapPercent: number;
        cpuWeight: number;
      }[]
    ).find((r) => r.name === "hog");
    t.diagnostic(
      `hog VMM ${pid}: ${measured!.toFixed(1)}% of a core over ${WINDOW_MS / 1000} s (/proc); ` +
        `tsvm top: ${row?.cpuPercent.toFixed(1)}%, cap ${row?.cpuCapPercent}%`,
    );
    assert.ok(measured! >= 40 && measured! <= 55, `measured ${measured!.toFixed(1)}%, want 40-55%`);
    assert.equal(row?.cpuCapPercent, 50);
    assert.equal(row?.cpuWeight, 100, "top shows the weight too (the default)");
    assert.ok(row.cpuPercent >= 40 && row.cpuPercent <= 55, `top says ${row.cpuPercent.toFixed(1)}%`);
  } finally {
    await exec("hog", STOP_HOG);
  }
});

test("two busy Linux guests on one host core share it by CPU weight (100 vs 25)", {
  skip: noImage,
  timeout: 3 * BOOT_TIMEOUT_MS,
}, async (t) => {
  await vms();
  const pids = [await vmmPid("heavy"), await vmmPid("light")];
  const masks = pids.map(affinity);
  for (const vm of ["heavy", "light"]) await exec(vm, START_HOG);
  try {
    // Every thread of both VMMs on core 0, so that they contend for it.
    for (const pid of pids) execFileSync("taskset", ["-a", "-p", "-c", "0", String(pid)]);
    await new Promise((r) => setTimeout(r, 2000));
    const [heavy, light] = await measureCpuPercent(pids, WINDOW_MS);
    const nice = pids.map((pid) => {
      const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
      return stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16];
    });
    t.diagnostic(
      `on core 0 over ${WINDOW_MS / 1000} s: weight 100 (nice ${nice[0]}) ${heavy!.toFixed(1)}%, ` +
        `weight 25 (nice ${nice[1]}) ${light!.toFixed(1)}%, ratio ${(heavy! / light!).toFixed(2)} ` +
        "(the scheduler's nice 0 : nice 6 is 3.8)",
    );
    // Both really ran (a guest stuck elsewhere would fake any ratio), and the heavier clearly won.
    assert.ok(light! > 3, `the weight-25 VMM ran (${light!.toFixed(1)}%)`);
    assert.ok(heavy! >= 2 * light!, `weight 100 got ${heavy!.toFixed(1)}%, weight 25 ${light!.toFixed(1)}%`);
  } finally {
    for (const [i, pid] of pids.entries())
      execFileSync("taskset", ["-a", "-p", "-c", masks[i]!, String(pid)], { stdio: "ignore" });
    for (const vm of ["heavy", "light"]) await exec(vm, STOP_HOG);
  }
});

test("kill -9 of one VMM: that VM is repaired with a fresh boot, the others keep running untouched", {
  skip: noImage,
  timeout: 3 * BOOT_TIMEOUT_MS,
}, async (t) => {
  await vms();
  const others = ["hog", "light"];
  const before = new Map<string, { pid: number; uptime: number }>();
  for (const vm of others) before.set(vm, { pid: await vmmPid(vm), uptime: await guestUptime(vm) });
  const killed = await vmmPid("heavy");
  process.kill(killed, "SIGKILL");

  // Watched all along the repair (an assertion inside until's probe would only count as "not yet").
  const disturbed: string[] = [];
  const repaired = await until("heavy repaired", async () => {
    for (const vm of others) {
      const other = await client.getInstance(vm);
      if (other.status !== "RUNNING" || other.vmmPid !== before.get(vm)!.pid)
        disturbed.push(`${vm}: ${other.status}, VMM ${other.vmmPid}`);
    }
    const vm = await client.getInstance("heavy");
    return vm.status === "RUNNING" && vm.vmmPid !== null && vm.vmmPid !== killed ? vm : undefined;
  });
  assert.deepEqual(disturbed, [], "the other VMs while heavy was repaired");
  assert.deepEqual(
    repaired.history.slice(-3).map((h) => h.to),
    ["REPAIRING", "STAGING", "RUNNING"],
  );
  t.diagnostic(`heavy's VMM ${killed} killed; repaired: ${repaired.history.at(-3)!.reason}`);
  await booted("heavy");
  const boots = (await client.getSerialPortOutput("heavy")).contents.split(BOOT_MARK).length - 1;
  assert.equal(boots, 2, "heavy's console history shows a second, fresh boot");

  for (const vm of others) {
    const now = await client.getInstance(vm);
    assert.equal(now.status, "RUNNING");
    assert.equal(now.vmmPid, before.get(vm)!.pid, `${vm} keeps its VMM`);
    assert.equal(now.history.at(-1)!.to, "RUNNING");
    assert.ok(!now.history.some((h) => h.to === "REPAIRING"), `${vm} was never repaired`);
    const uptime = await guestUptime(vm);
    t.diagnostic(`${vm}: VMM ${now.vmmPid}, uptime ${before.get(vm)!.uptime} s → ${uptime} s`);
    assert.ok(uptime > before.get(vm)!.uptime, `${vm}'s guest did not reboot`);
  }
});
