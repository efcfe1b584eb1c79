// Linux on a 2-vCPU machine whose second hart runs on a worker thread of its own (RiscvEngine's hartThreads):
// the guest sees both CPUs, CPU-bound processes run on both at once with exact results, processes on both
// CPUs contending for the same kernel locks lose nothing, and a pause (both harts parked, state saved) in the
// middle of parallel work changes nothing the guest can see.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { after, before, test } from "node:test";
import { type AgentMachine, bootAgentMachine } from "./agent-machine.ts";
import { BOOT_TIMEOUT_MS, img, skip } from "./tsvm-run-fixture.ts";

const COMMAND_TIMEOUT_MS = 5 * 60_000;
let machine: AgentMachine | null = null;

before(
  async () => {
    if (!img) return;
    machine = await bootAgentMachine(img, { harts: 2, hartThreads: true, bootTimeoutMs: BOOT_TIMEOUT_MS });
  },
  { timeout: BOOT_TIMEOUT_MS + 60_000 },
);

after(async () => {
  await machine?.close();
});

async function sh(command: string): Promise<string> {
  const r = await machine!.run(command, COMMAND_TIMEOUT_MS);
  assert.equal(r.exitCode, 0, `${command} exited with ${r.exitCode}: ${r.stdout}`);
  return r.stdout;
}

/** User-mode ticks of each CPU from /proc/stat. */
async function userTicks(): Promise<number[]> {
  const lines = (await sh("grep '^cpu[0-9]' /proc/stat")).trim().split("\n");
  return lines.map((l) => Number(l.split(/\s+/)[1]));
}

test("the guest sees two CPUs, both online", { skip }, async () => {
  assert.equal((await sh("nproc")).trim(), "2");
  assert.equal((await sh("cat /sys/devices/system/cpu/online")).trim(), "0-1");
});

test("two CPU-bound processes run on both CPUs at once, with exact results", { skip }, async () => {
  const bytes = 3 * 1024 * 1024;
  const expected = createHash("sha256").update(Buffer.alloc(bytes)).digest("hex");
  const before = await userTicks();
  const out = await sh(
    `for i in 1 2; do (head -c ${bytes} /dev/zero | sha256sum > /tmp/sum$i) & done; wait; cat /tmp/sum1 /tmp/sum2`,
  );
  const after = await userTicks();
  assert.deepEqual(
    out
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/)[0]),
    [expected, expected],
  );
  // Each CPU spent user time on the hashing: the second really ran guest code in parallel.
  for (let cpu = 0; cpu < 2; cpu++)
    assert.ok(after[cpu]! - before[cpu]! > 0, `cpu${cpu} ran no user code: ${before} → ${after}`);
});

test("processes on both CPUs appending to one file lose no line (kernel locks across threads)", {
  skip,
}, async () => {
  const out = await sh(
    "rm -f /tmp/log; for p in a b c d; do (i=0; while [ $i -lt 150 ]; do echo $p$i >> /tmp/log; i=$((i+1)); done) & done; wait; wc -l < /tmp/log; sort /tmp/log | uniq | wc -l",
  );
  assert.deepEqual(out.trim().split(/\s+/), ["600", "600"]);
});

test("a pause with the state saved, in the middle of parallel work, changes no result", {
  skip,
}, async () => {
  const m = machine!;
  const bytes = 2 * 1024 * 1024;
  const expected = createHash("sha256").update(Buffer.alloc(bytes)).digest("hex");
  const work = m.run(
    `for i in 1 2; do (head -c ${bytes} /dev/zero | sha256sum > /tmp/p$i) & done; wait; cat /tmp/p1 /tmp/p2`,
    COMMAND_TIMEOUT_MS,
  );
  // Let both processes get going, then park both harts and save the whole machine.
  const start = m.engine.stats().instret;
  const deadline = Date.now() + 60_000;
  while (m.engine.stats().instret[1]! - start[1]! < 20_000_000 && Date.now() < deadline)
    await new Promise((r) => setTimeout(r, 100));
  await m.engine.pause();
  const snapshot = await m.engine.saveState();
  const state = snapshot.data as { harts: number; components: Record<string, { instret: number }> };
  assert.equal(state.harts, 2);
  // The parked second hart handed over its state: its count is what the engine reported.
  assert.equal(state.components.hart1!.instret, m.engine.stats().instret[1]);
  await new Promise((r) => setTimeout(r, 500));
  await m.engine.resume();
  const r = await work;
  assert.equal(r.exitCode, 0);
  assert.deepEqual(
    r.stdout
      .trim()
      .split("\n")
      .map((l) => l.split(/\s+/)[0]),
    [expected, expected],
  );
});
