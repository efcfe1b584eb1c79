// A real Linux guest moved across a cluster of three hosts (docs/cluster.md, "Moving VMs"): one real etcd,
// three daemons, the default image. A counter process started in the guest goes on counting through the
// moves h1 → h2 → h3 — the same process (its pid), the same boot (uptime only grows), its count never
// starting again — and each move reports its figures: its RAM written in rounds while the guest ran.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { TestCluster, waitFor } from "../../src/hypervisor/fixtures/test-cluster.ts";
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
  const created = await cluster.on("h2", "create", "counter", "--host", "h1", "--machine-type", "t1-micro");
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
    process.stderr.write(`move ${from}→${to}: ${op.statusMessage}\n`);
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
