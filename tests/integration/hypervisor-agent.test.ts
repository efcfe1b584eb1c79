// End to end with real Linux and the guest agent: a VM of the default image through the daemon (started on
// demand by bin/tsvm), stopped gracefully — the agent runs `poweroff` in the guest, which powers itself off
// before the stop timeout would force it.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiClient } from "../../src/api/client.ts";
import { findImage } from "../../src/images/image-store.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BOOT_TIMEOUT_MS = Number(process.env.TSVM_BOOT_TIMEOUT_MS ?? 10 * 60_000);
/** Far longer than a poweroff takes: a stop that ends sooner was not forced by the timeout. */
const STOP_TIMEOUT_MS = 120_000;
const image = findImage("default");
if (!image)
  process.stderr.write("\n*** SKIPPING hypervisor-agent: no default image (run `tsvm image build`)\n\n");

const home = await mkdtemp(join(tmpdir(), "tsvm-hv-agent-"));
const client = ApiClient.forDataDir(home);

after(async () => {
  await tsvm("delete", "vm");
  await tsvm("daemon", "stop");
  await rm(home, { recursive: true, force: true });
});

function tsvm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(
      join(root, "bin/tsvm"),
      args,
      { env: { ...process.env, TSVM_HOME: home }, timeout: 300_000 },
      (e, stdout, stderr) =>
        done({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout, stderr }),
    );
  });
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, ms = BOOT_TIMEOUT_MS): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

/** The VMM logs the agent's first words: from then on a stop can ask the guest. */
function agentConnected(): Promise<true> {
  return until("the guest agent", async () => {
    const log = await readFile(join(home, "vms/vm/vmm.log"), "utf8");
    return log.includes("guest agent connected") ? true : undefined;
  });
}

test("stop asks the guest to power off through its agent; it is not forced", {
  skip: !image,
  timeout: BOOT_TIMEOUT_MS + STOP_TIMEOUT_MS + 120_000,
}, async () => {
  await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: STOP_TIMEOUT_MS }));
  const created = await tsvm("create", "vm", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  await agentConnected();

  const started = Date.now();
  const stopped = await tsvm("stop", "vm");
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.ok(Date.now() - started < STOP_TIMEOUT_MS, "the stop ended before its timeout");
  const vm = await client.getInstance("vm");
  assert.equal(vm.status, "TERMINATED");
  const last = vm.history.at(-1)!;
  assert.equal(last.to, "TERMINATED");
  assert.match(last.reason, /^the guest powered off/);
  assert.doesNotMatch(last.reason, /forced/);
  // The VMM saw the guest's own power-off (SBI system reset), not a stop of its engine.
  const exit = JSON.parse(await readFile(join(home, "vms/vm/exit.json"), "utf8")) as { reason: string };
  assert.equal(exit.reason, "poweroff");
});
