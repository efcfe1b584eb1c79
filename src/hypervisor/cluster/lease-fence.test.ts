// The fence's two halves: the watch fires once the lease went unrenewed for FENCE_AFTER_TTL_SHARE of its
// TTL and not while renewals come; killNow ends real processes and waits until they are gone.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { test } from "node:test";
import { FENCE_AFTER_TTL_SHARE, killNow, watchLease } from "./lease-fence.ts";

test("the watch fences once after three quarters of the TTL without renewal, never while renewed", async () => {
  const ttlSeconds = 1;
  let renewedAt = Date.now();
  const reasons: string[] = [];
  let firedAt = 0;
  const renewing = setInterval(() => (renewedAt = Date.now()), 100);
  const watch = watchLease({
    ttlSeconds,
    renewedAt: () => renewedAt,
    fence: (r) => {
      firedAt = Date.now();
      reasons.push(r);
    },
  });
  await new Promise((r) => setTimeout(r, 1500));
  assert.deepEqual(reasons, [], "renewed all along");
  clearInterval(renewing);
  const stoppedAt = renewedAt;
  await new Promise((r) => setTimeout(r, ttlSeconds * 1000 * FENCE_AFTER_TTL_SHARE + 600));
  assert.equal(reasons.length, 1);
  assert.match(reasons[0]!, /^the lease was not renewed for \d+\.\d s \(TTL 1 s\)/);
  assert.ok(firedAt - stoppedAt >= ttlSeconds * 1000 * FENCE_AFTER_TTL_SHARE, "not before the deadline");
  watch.stop();
});

test("killNow ends the processes before it returns", async () => {
  const children = [0, 1].map(() => spawn("sleep", ["60"], { stdio: "ignore" }));
  const pids = children.map((c) => c.pid!);
  assert.deepEqual(killNow(pids), []);
  for (const c of children)
    await new Promise((r) => (c.exitCode === null && c.signalCode === null ? c.once("exit", r) : r(0)));
  assert.deepEqual(
    children.map((c) => c.signalCode),
    ["SIGKILL", "SIGKILL"],
  );
});
