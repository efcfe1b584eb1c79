// Bounded logs: the writer's caps and rate limit on real files, and a hostile guest (the counting guest's
// "spammy-" mode: a real GuestAgentClient fed malformed lines without end, and a console printing ~30 MB/s)
// in a real VMM process, which must leave vmm.log and the console files under their caps.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { BoundedLog, LOG_MAX_BYTES, LOG_RATE_LINES } from "./bounded-log.ts";
import { CONSOLE_LOG_MAX_BYTES } from "./console-log.ts";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "./fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "./hypervisor.ts";

const roots: string[] = [];
const hypervisors: Hypervisor[] = [];
after(async () => {
  for (const hv of hypervisors) await closeAndKill(hv);
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function tempDir(): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-log-"));
  roots.push(dir);
  return dir;
}

const sizeOf = (path: string) =>
  stat(path).then(
    (s) => s.size,
    () => 0,
  );

test("200,000 rate-limited lines: a few are written, the rest counted and summarised; the file rotates at its cap", async () => {
  const dir = await tempDir();
  const path = join(dir, "x.log");
  let now = 0;
  const log = new BoundedLog(path, {
    maxBytes: 64 * 1024,
    rateLines: 10,
    rateWindowMs: 1000,
    now: () => now,
  });
  log.write("own line");
  for (let i = 0; i < 200_000; i++) {
    log.writeLimited(`guest line ${i}`);
    if (i % 20_000 === 19_999) now += 1000; // ten windows
  }
  log.writeLimited(`${"x".repeat(100_000)}`);
  log.close();
  const text = await readFile(path, "utf8");
  assert.equal((text.match(/^guest line/gm) ?? []).length, 100, "10 lines in each of 10 windows");
  const summaries = [...text.matchAll(/ (\d+) lines dropped \(more than 10 in 1 s; (\d+) dropped in all\)/g)];
  assert.equal(summaries.length, 10);
  assert.equal(Number(summaries.at(-1)![2]), 200_000 - 100, "every dropped line is counted");
  assert.ok(text.startsWith("own line\n"));

  // Rotation: never more than the cap in the file, one previous file kept.
  const small = join(dir, "y.log");
  const rotating = new BoundedLog(small, { maxBytes: 4096 });
  for (let i = 0; i < 10_000; i++) rotating.write(`line ${i} ${"y".repeat(3000)}`);
  rotating.close();
  assert.ok((await sizeOf(small)) <= 4096, `${await sizeOf(small)}`);
  assert.ok((await sizeOf(`${small}.1`)) <= 4096);
  assert.match(await readFile(small, "utf8"), /\[line cut\]\n$/, "a long line is cut");
  assert.match(await readFile(small, "utf8"), /^line 9999 /m, "the newest line is kept");
});

test("a hostile guest spamming its agent port and console leaves vmm.log and console.log under their caps, saying how much was dropped", async () => {
  const home = await tempDir();
  await writeFile(join(home, "template.img"), Buffer.alloc(4096));
  const hv = await openFixtureHypervisor(home, join(home, "template.img"));
  hypervisors.push(hv);
  const name = "spammy-guest";
  const inserted = await hv.waitOperation(hv.insert({ name, memoryMiB: 32 }).id, 120_000);
  assert.equal(inserted.error, null, inserted.error?.message);
  const dir = join(home, "vms", name);
  const t0 = Date.now();
  let errors = 0;
  while (errors < 1_000_000) {
    assert.ok(Date.now() - t0 < 120_000, `only ${errors} malformed lines in 2 minutes`);
    await new Promise((r) => setTimeout(r, 500));
    errors = (await hv.stats(name)).agentProtocolErrors ?? 0;
  }
  const stopped = await hv.waitOperation(hv.stop(name).id, 60_000);
  assert.equal(stopped.error, null, stopped.error?.message);

  const vmmLog = join(dir, "vmm.log");
  const vmmBytes = (await sizeOf(vmmLog)) + (await sizeOf(`${vmmLog}.1`));
  assert.ok(vmmBytes <= 2 * LOG_MAX_BYTES, `vmm.log and vmm.log.1 hold ${vmmBytes} bytes`);
  const text = await readFile(vmmLog, "utf8");
  const totals = [...text.matchAll(/ lines dropped \(more than \d+ in \d+ s; (\d+) dropped in all\)/g)];
  assert.ok(totals.length > 0, `vmm.log says nothing was dropped:\n${text.slice(-2000)}`);
  const dropped = Number(totals.at(-1)![1]);
  const windows = Math.ceil((Date.now() - t0) / 10_000) + 2;
  assert.ok(
    dropped >= errors - LOG_RATE_LINES * windows,
    `${dropped} dropped lines counted, ${errors} malformed lines sent`,
  );
  assert.match(text, /exiting: /, "the VMM's own lines are still written");
  const consoleBytes = (await sizeOf(join(dir, "console.log"))) + (await sizeOf(join(dir, "console.log.1")));
  assert.ok(consoleBytes <= 2 * CONSOLE_LOG_MAX_BYTES, `console.log and .1 hold ${consoleBytes} bytes`);
  const printed = (await readFile(join(dir, "console.log.start"), "utf8")).length > 0;
  assert.ok(printed, "the console rotated");
});
