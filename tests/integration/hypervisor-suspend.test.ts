// End to end with real Linux: suspend and resume of a running guest through the CLI. A counting loop started
// in the guest keeps counting from where it was after the resume — the same process, the same boot — while
// the VM was SUSPENDED its VMM process was gone (CPU and memory released) and its state was in files.
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  AGENT_WAIT_SECONDS,
  BOOT_MARK,
  BOOT_TIMEOUT_MS,
  linuxVmFixture,
  noImage,
  until,
} from "./linux-vm-fixture.ts";

const { home, client, tsvm, exec } = await linuxVmFixture("hv-suspend");

/**
 * Counts as fast as the guest's shell can, writing each count to /tmp/n; its PID is in /tmp/pid. At nice 19
 * in the guest, so that the guest agent's commands are not slowed down by it.
 */
const COUNTER = "echo $$ > /tmp/pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/n; done";

interface Probe {
  /** The loop's latest count. */
  n: number;
  pid: number;
  /** Field 22 of the loop's /proc/PID/stat: when it started, in clock ticks since the guest booted. */
  startTime: string;
  /** The guest's /proc/uptime, seconds. */
  uptime: number;
}

/** One exec (shell builtins only: a guest on an interpreter forks slowly) reading all the loop's figures. */
function probe(): Promise<Probe> {
  return until(
    "the loop's figures",
    async () => {
      const out = await exec(
        "counter",
        'read n < /tmp/n; read p < /tmp/pid; read up idle < /proc/uptime; read -r st < /proc/$p/stat; echo "$n|$p|$up|$st"',
      );
      const [n, pid, up, stat] = out.trim().split("|");
      // The file may be caught between its truncation and the write: ask again.
      if (!/^\d+$/.test(n ?? "") || !stat) return undefined;
      return {
        n: Number(n),
        pid: Number(pid),
        startTime: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!,
        uptime: Number(up),
      };
    },
    120_000,
  );
}

/** Gone, or a zombie (dead, its memory freed, only its exit status left for the daemon to reap). */
function processGone(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    return stat.slice(stat.lastIndexOf(")") + 2).startsWith("Z");
  } catch {
    return true;
  }
}

test("suspend and resume a running Linux guest: its counting loop continues where it was, no reboot", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 600_000,
}, async (t) => {
  const t0 = Date.now();
  const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const created = await tsvm("create", "counter", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  // Detached (its own session, no pipes of the exec's) so that the exec returns while the loop runs on.
  await tsvm(
    "exec",
    "counter",
    "--agent-wait",
    AGENT_WAIT_SECONDS,
    "--",
    "sh",
    "-c",
    `setsid nice -n 19 sh -c '${COUNTER}' </dev/null >/dev/null 2>&1 &`,
  ).then((r) => assert.equal(r.code, 0, r.stderr));
  mark("booted, loop started");
  const first = await probe();
  const before = await client.getInstance("counter");
  const last = await probe();
  mark("read before suspend");
  assert.equal(last.pid, first.pid);
  assert.ok(last.n > first.n, `the loop counts (${first.n} → ${last.n})`);

  const suspended = await tsvm("suspend", "counter");
  assert.equal(suspended.code, 0, suspended.stderr);
  mark("suspended");
  const vm = await client.getInstance("counter");
  assert.equal(vm.status, "SUSPENDED");
  assert.equal(vm.vmmPid, null);
  await until("the VMM process to end", async () => (processGone(before.vmmPid!) ? true : undefined), 30_000);
  const stateDir = join(home, "vms/counter/state");
  assert.ok(existsSync(stateDir) && readdirSync(stateDir).length > 0, "the guest's state is in files");
  const suspendedList = await tsvm("list", "--format", "json");
  assert.equal(
    (JSON.parse(suspendedList.stdout) as { name: string; status: string }[]).find((v) => v.name === "counter")
      ?.status,
    "SUSPENDED",
  );

  mark("checked suspended");
  const resumed = await tsvm("resume", "counter");
  assert.equal(resumed.code, 0, resumed.stderr);
  mark("resumed");
  const after = await client.getInstance("counter");
  assert.equal(after.status, "RUNNING");
  assert.notEqual(after.vmmPid, before.vmmPid, "a new VMM process");
  assert.deepEqual(
    after.history.slice(-5).map((h) => h.to),
    ["SUSPENDING", "SUSPENDED", "PROVISIONING", "STAGING", "RUNNING"],
  );
  const resumed1 = await probe();
  const resumed2 = await probe();
  t.diagnostic(
    `count ${first.n} → ${last.n} before suspend, ${resumed1.n} → ${resumed2.n} after resume; ` +
      `uptime ${last.uptime} s → ${resumed1.uptime} s; loop PID ${last.pid} → ${resumed1.pid}, ` +
      `started at tick ${last.startTime} → ${resumed1.startTime}`,
  );
  assert.ok(resumed1.n >= last.n, `the loop continued (${last.n} before, ${resumed1.n} after)`);
  assert.ok(resumed2.n > resumed1.n, `and it keeps counting (${resumed1.n} → ${resumed2.n})`);
  assert.equal(resumed1.pid, last.pid, "the same loop process");
  assert.equal(resumed1.startTime, last.startTime, "started at the same moment of the same boot");
  assert.ok(resumed1.uptime >= last.uptime, `uptime continues (${last.uptime} s, then ${resumed1.uptime} s)`);
  mark("checked resumed");
  const boots = (await client.getSerialPortOutput("counter")).contents.split(BOOT_MARK).length - 1;
  assert.equal(boots, 1, "the console history shows one boot");
});
