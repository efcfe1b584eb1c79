// A real Linux guest moved live across a cluster of three hosts (docs/cluster.md, "Moving a running VM"):
// one real etcd, three daemons, the default image. A counter process started in the guest goes on counting
// through the moves h1 → h2 → h3 — the same process (its pid), the same boot (uptime only grows), its count
// never starting again — and each move reports its figures: RAM sent in rounds while the guest ran, and a
// pause well below the stop-and-copy move's 2.7–3.2 s. Then the target's VMM, and then the target's daemon,
// is killed in the middle of a move's stream: the VM runs on where it was, counting, and nothing of it is
// left on the target (after the daemon's restart, for the daemon).
import assert from "node:assert/strict";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CliResult, TestCluster, waitFor } from "../../src/hypervisor/fixtures/test-cluster.ts";
import { AGENT_WAIT_SECONDS, BOOT_TIMEOUT_MS, noImage } from "./linux-vm-fixture.ts";

let cluster: TestCluster;

before(async () => {
  if (noImage) return;
  cluster = await TestCluster.start({ hosts: ["h1", "h2", "h3"], config: () => ({ stopTimeoutMs: 5000 }) });
});

after(() => cluster?.stop());

/** `sh -c SCRIPT` in the guest through host `via`'s API; its stdout. */
async function guest(via: string, script: string): Promise<string> {
  return cluster.guestShell(via, "counter", script, AGENT_WAIT_SECONDS);
}

/** The counter's pid, its count and the guest's uptime, read in the guest. */
async function reading(via: string): Promise<{ pid: string; count: number; uptime: number }> {
  const [pid, count, uptime] = (
    await guest(via, "cat /tmp/counter.pid; cat /tmp/count; cut -d' ' -f1 /proc/uptime")
  )
    .trim()
    .split("\n");
  return { pid: pid!, count: Number(count), uptime: Number(uptime) };
}

test("a counting Linux guest moves h1 → h2 → h3 while RUNNING and keeps counting", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 15 * 60_000,
}, async () => {
  const created = await cluster.on("h2", "create", "counter", "--host", "h1", "--machine-type", "t1-small");
  assert.equal(created.code, 0, created.stderr);
  // A shell loop in its own session, so that it outlives the exec that starts it.
  await guest(
    "h1",
    "setsid sh -c 'echo $$ > /tmp/counter.pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done' " +
      "</dev/null >/dev/null 2>&1 & sleep 1; cat /tmp/count",
  );
  let last = await reading("h1");
  assert.ok(last.count > 0, `count ${last.count}`);
  for (const [from, to] of [
    ["h1", "h2"],
    ["h2", "h3"],
  ] as const) {
    const moved = await cluster.on("h3", "move", "counter", "--host", to, "--format", "json");
    assert.equal(moved.code, 0, moved.stderr);
    const op = JSON.parse(moved.stdout);
    assert.equal(`${op.migration.from}→${op.migration.to}`, `${from}→${to}`);
    assert.ok(op.migration.bytes > 1 << 20, `${op.migration.bytes} bytes`);
    assert.ok(op.migration.downtimeMs > 0 && op.migration.downtimeMs <= op.migration.totalMs);
    // Its RAM went in rounds while the guest ran (dirty-page tracking), so it stopped for less than the move.
    assert.ok(op.migration.rounds >= 1, `${op.migration.rounds} rounds`);
    assert.ok(op.migration.downtimeMs < op.migration.totalMs, JSON.stringify(op.migration));
    process.stderr.write(
      `move ${from}→${to}: ${op.statusMessage} (load ${loadavg()[0]!.toFixed(1)}): ${JSON.stringify(op.migration)}\n`,
    );
    // Live, not suspended and resumed: the guest paused for the stream's last part only, well below the
    // stop-and-copy move's 2.7–3.2 s even on a loaded 2-core host.
    assert.match(op.statusMessage, /^moved live to host/);
    assert.ok(op.migration.downtimeMs < 1500, `paused ${op.migration.downtimeMs} ms`);
    const vm = await cluster.json("h1", "describe", "counter");
    assert.equal(`${vm.host} ${vm.status}`, `${to} RUNNING`);
    const now = await reading(to);
    assert.equal(now.pid, last.pid, "the same counter process");
    assert.ok(now.uptime >= last.uptime, `uptime ${now.uptime} after ${last.uptime}: the same boot`);
    assert.ok(now.count >= last.count, `count ${now.count} after ${last.count}`);
    // And it goes on counting there.
    last = await waitFor(
      `the counter to advance on ${to}`,
      async () => {
        const r = await reading(to);
        return r.count > now.count ? r : undefined;
      },
      120_000,
    );
  }
});

/** The pid of the VMM of `vm` on `host` once it has recorded itself there. */
function vmmPid(host: string, vm: string): number | undefined {
  try {
    return JSON.parse(readFileSync(join(cluster.hosts.get(host)!.home, "vms", vm, "vmm.json"), "utf8")).pid;
  } catch {
    return undefined;
  }
}

/** The resident memory of process `pid` in bytes (0 once it is gone). */
function rssBytes(pid: number): number {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return m ? Number(m[1]) * 1024 : 0;
  } catch {
    return 0;
  }
}

/**
 * Starts a move of the counter from h3 to h1 and, once h1's incoming VMM has taken in 32 MiB of the stream
 * (its resident memory grows as pages arrive), runs `kill` with that VMM's pid; resolves with the move's
 * CLI result and the pid.
 */
async function moveAndKillMidStream(
  kill: (vmmPid: number) => void,
): Promise<{ moved: CliResult; pid: number }> {
  const moving = cluster.on("h2", "move", "counter", "--host", "h1", "--format", "json");
  // Polled often: the stream's first round may last well under a second.
  let baseline: number | undefined;
  for (const deadline = Date.now() + 120_000; ; ) {
    assert.ok(Date.now() < deadline, "the target VMM never took in pages");
    await new Promise((r) => setTimeout(r, 10));
    const pid = vmmPid("h1", "counter");
    if (pid === undefined) continue;
    baseline ??= rssBytes(pid);
    if (rssBytes(pid) < baseline + (32 << 20)) continue;
    kill(pid);
    return { moved: await moving, pid };
  }
}

test("the target's VMM killed in the middle of the stream: the VM runs on where it was, nothing is left there", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 10 * 60_000,
}, async () => {
  const before = await reading("h3");
  // 64 MB of guest RAM in use (tmpfs, copies of a binary: not zero pages, which round 0 skips), so that the
  // stream's first round takes a while.
  await guest(
    "h3",
    "mkdir -p /mnt/fill && mount -t tmpfs tmpfs /mnt/fill && b=$(readlink -f /bin/sh) && " +
      "while [ $(stat -c %s /mnt/fill/f 2>/dev/null || echo 0) -lt 64000000 ]; do cat $b $b $b $b >> /mnt/fill/f; done; echo ok",
  );
  const { moved, pid: killed } = await moveAndKillMidStream((pid) => process.kill(pid, "SIGKILL"));
  assert.notEqual(moved.code, 0, moved.stdout);
  assert.match(moved.stderr, /failed: .*; it runs on here/);
  process.stderr.write(
    `killed the target VMM (pid ${killed}) mid-stream: ${moved.stderr.trim().split("\n").at(-1)?.slice(0, 400)}\n`,
  );
  const vm = await cluster.json("h1", "describe", "counter");
  assert.equal(`${vm.host} ${vm.status}`, "h3 RUNNING");
  // The target cleans up after itself: the VM's directory and any staging go.
  const h1 = cluster.hosts.get("h1")!.home;
  await waitFor("h1 to remove what it prepared", async () =>
    !existsSync(join(h1, "vms", "counter")) && !readdirSync(h1).some((e) => e.startsWith(".tmp-"))
      ? true
      : undefined,
  );
  assert.equal(rssBytes(killed), 0, "the killed VMM is gone");
  await countsOnInH3(before.pid);
});

test("the target's daemon killed in the middle of the stream: the VM runs on where it was; restarted, the target removes what it prepared", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 10 * 60_000,
}, async () => {
  const before = await reading("h3");
  const h1 = cluster.hosts.get("h1")!;
  // `tsvm daemon` runs the daemon proper as its child: both go, as in a crash.
  const daemonPid = JSON.parse(readFileSync(join(h1.home, "daemon.json"), "utf8")).pid as number;
  const { moved, pid } = await moveAndKillMidStream(() => {
    process.kill(daemonPid, "SIGKILL");
    h1.process.kill("SIGKILL");
  });
  assert.notEqual(moved.code, 0, moved.stdout);
  assert.match(moved.stderr, /failed: .*it runs on here/);
  process.stderr.write(
    `killed the target daemon mid-stream: ${moved.stderr.trim().split("\n").at(-1)?.slice(0, 400)}\n`,
  );
  const vm = await cluster.json("h2", "describe", "counter");
  assert.equal(`${vm.host} ${vm.status}`, "h3 RUNNING");
  // Its VMM, left without its daemon, never runs the guest: it ends once it finds its daemon gone.
  await waitFor(
    "the orphaned target VMM to end",
    async () => (rssBytes(pid) === 0 ? true : undefined),
    120_000,
  );
  // Restarted (once its old lease is gone), h1 removes the VM's directory no record of its names.
  await waitFor(
    "h1 to start again",
    async () => {
      try {
        await cluster.startHost("h1");
        return true;
      } catch {
        return undefined;
      }
    },
    180_000,
  );
  assert.ok(!existsSync(join(h1.home, "vms", "counter")), "h1 keeps nothing of the VM");
  await countsOnInH3(before.pid);
});

/** The same counter process (`pid`) counts on, on h3. */
async function countsOnInH3(pid: string): Promise<void> {
  const now = await reading("h3");
  assert.equal(now.pid, pid);
  await waitFor(
    "the counter to advance on h3",
    async () => ((await reading("h3")).count > now.count ? true : undefined),
    120_000,
  );
}
