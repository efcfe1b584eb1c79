// The VMM-side fence: the countdown on a fake clock, then real VMM processes that live on while heartbeats
// tell of fresh renewals and kill themselves within the deadline once the daemon goes silent (detached, as
// a killed daemon) or tells of a lease no longer renewed.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { processRunning } from "./cluster/lease-fence.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { fixtureVmRecord } from "./fixtures/fixture-vm-record.ts";
import { VmStore } from "./store.ts";
import { ProcessVmmLauncher } from "./vmm-process.ts";
import { VmmWatchdog } from "./vmm-watchdog.ts";

const roots: string[] = [];
const pids: number[] = [];
after(async () => {
  for (const pid of pids) if (processRunning(pid)) process.kill(pid, "SIGKILL");
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

const tick = () => new Promise((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test("the watchdog fences once, only after the deadline without news of a renewal, and ignores bad news", async () => {
  let now = 1000;
  const fences: string[] = [];
  const dog = new VmmWatchdog(
    3000,
    (reason) => fences.push(reason),
    () => now,
  );
  now += 2500;
  dog.check();
  await tick();
  assert.deepEqual(fences, [], "2.5 s of a 3 s deadline");
  dog.heard(100); // renewed 100 ms ago: 2.4 s after the start
  for (const bad of [-5, Number.NaN, Number.POSITIVE_INFINITY, "0", null]) dog.heard(bad);
  now += 2800;
  dog.check();
  await tick();
  assert.deepEqual(fences, [], "2.9 s since the renewal heard of");
  dog.heard(5000); // an old renewal never moves the deadline back
  now += 200;
  assert.equal(dog.silentMs(), 3100);
  dog.check();
  dog.check();
  await tick();
  assert.equal(fences.length, 1);
  assert.match(
    fences[0]!,
    /no heartbeat from the daemon told of a lease renewal for 3\.1 s \(fence deadline 3\.0 s\)/,
  );
  now += 5000;
  dog.check();
  await tick();
  assert.equal(fences.length, 1, "once");
});

test("a heartbeat read after a busy stretch of the event loop still counts", async () => {
  let now = 0;
  const fences: string[] = [];
  const dog = new VmmWatchdog(
    1000,
    (reason) => fences.push(reason),
    () => now,
  );
  now = 1500; // the loop was busy; a heartbeat is queued behind the timer
  dog.check();
  dog.heard(10);
  await tick();
  assert.deepEqual(fences, []);
});

const FENCE_MS = 2000;

async function launchWith(name: string, leaseAgeMs: () => number) {
  const home = await mkdtemp(join(tmpdir(), "tsvm-watchdog-"));
  roots.push(home);
  const store = await VmStore.open(home);
  // Only a VM on shared storage gets a fence (another host may restart it).
  const vm = fixtureVmRecord(name, { sharedStorage: true });
  await store.create(vm);
  const launcher = new ProcessVmmLauncher({
    ...fixtureLauncherConfig,
    lease: { fenceAfterMs: FENCE_MS, leaseAgeMs },
  });
  const handle = await launcher.launch(vm, store.paths(name), "boot");
  pids.push(handle.pid);
  return { handle, paths: store.paths(name) };
}

/** Waits until `pid` is gone; answers how long that took. */
async function goneWithin(pid: number, ms: number): Promise<number> {
  const t0 = Date.now();
  while (processRunning(pid)) {
    assert.ok(Date.now() - t0 < ms, `pid ${pid} still runs after ${ms} ms`);
    await sleep(50);
  }
  return Date.now() - t0;
}

test("a VMM lives on heartbeats, and kills itself within the deadline once they stop or tell of no renewal", async () => {
  let renewedAt = Date.now();
  const renew = setInterval(() => {
    renewedAt = Date.now();
  }, 200);
  try {
    const leaseAge = () => Date.now() - renewedAt;
    const [silenced, stale] = await Promise.all([
      launchWith("silenced", leaseAge),
      launchWith("stale", leaseAge),
    ]);
    assert.equal(
      JSON.parse(await readFile(join(silenced.paths.dir, "vmm-spec.json"), "utf8")).fenceAfterMs,
      FENCE_MS,
    );
    // Twice the deadline with heartbeats: both run on, their guests counting.
    await sleep(2 * FENCE_MS);
    for (const { handle } of [silenced, stale]) {
      assert.ok(processRunning(handle.pid));
      assert.ok((await handle.stats()).count! > 0);
    }
    // A daemon killed alone: its connection (and heartbeats) end. The other daemon's lease stops renewing.
    silenced.handle.detach();
    clearInterval(renew);
    const stopped = Date.now();
    const [a, b] = await Promise.all([
      goneWithin(silenced.handle.pid, FENCE_MS + 3000),
      goneWithin(stale.handle.pid, FENCE_MS + 3000),
    ]);
    console.log(
      `VMMs gone ${a} and ${b} ms after the heartbeats stopped or went stale (deadline ${FENCE_MS} ms)`,
    );
    assert.ok(Date.now() - stopped >= FENCE_MS - 500, "not before the deadline");
    assert.equal((await stale.handle.exited).reason, "crashed", "killed itself: no exit record");
    for (const { paths } of [silenced, stale])
      assert.match(
        await readFile(join(paths.dir, "vmm.log"), "utf8"),
        /fenced: no heartbeat from the daemon told of a lease renewal/,
      );
  } finally {
    clearInterval(renew);
  }
});
