import assert from "node:assert/strict";
import { test } from "node:test";
import { CPU_CAP_PERIOD_MS, CpuThrottle } from "./cpu-throttle.ts";

test("the guest is paused once the period's quota is used, and resumed when the next period starts", async () => {
  let now = 0;
  let cpu = 0;
  const calls: string[] = [];
  const guest = {
    pause: async () => void calls.push(`pause@${now}`),
    resume: async () => void calls.push(`resume@${now}`),
  };
  const throttle = new CpuThrottle(
    guest,
    30,
    () => cpu,
    () => now,
  );
  throttle.start();
  throttle.stop(); // driven by hand below
  // A CPU hog: one ms of CPU per ms of time while running.
  for (let t = 1; t <= 3 * CPU_CAP_PERIOD_MS; t++) {
    now = t;
    if (!calls.at(-1)?.startsWith("pause")) cpu += 1;
    await throttle.check();
  }
  assert.deepEqual(calls, ["pause@30", "resume@100", "pause@130", "resume@200", "pause@230", "resume@300"]);
});

test("a guest under its cap is never paused", async () => {
  let now = 0;
  let cpu = 0;
  let paused = 0;
  const throttle = new CpuThrottle(
    { pause: async () => void paused++, resume: async () => {} },
    50,
    () => cpu,
    () => now,
  );
  throttle.start();
  throttle.stop();
  for (let t = 1; t <= 1000; t++) {
    now = t;
    if (t % 3 === 0) cpu += 1; // a third of a core
    await throttle.check();
  }
  assert.equal(paused, 0);
});

test("time used past the quota is paid back in the next period", async () => {
  let now = 0;
  let cpu = 0;
  let paused = false;
  const throttle = new CpuThrottle(
    {
      pause: async () => void (paused = true),
      resume: async () => void (paused = false),
    },
    50,
    () => cpu,
    () => now,
  );
  throttle.start();
  throttle.stop();
  // Checks come every 8 ms, after 8 ms of CPU: each period overshoots its 50 ms quota by up to 6 ms.
  for (let t = 8; t <= 2000; t += 8) {
    now = t;
    if (!paused) cpu += 8;
    await throttle.check();
  }
  const share = (100 * cpu) / now;
  assert.ok(share >= 45 && share <= 51, `long-run share ${share.toFixed(1)}% for a 50% cap`);
});
