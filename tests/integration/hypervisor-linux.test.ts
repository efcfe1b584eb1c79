// End to end with real Linux: the daemon (started on demand by bin/tsvm), a VM of the default image on the
// riscv engine in its own VMM process, its serial console over the API, kill -9 of its VMM (REPAIRING →
// a fresh boot) and kill -9 of the daemon (the VM keeps running and is re-attached).
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
const image = findImage("default");
if (!image)
  process.stderr.write("\n*** SKIPPING hypervisor-linux: no default image (run `tsvm image build`)\n\n");

const home = await mkdtemp(join(tmpdir(), "tsvm-hv-linux-"));
const client = ApiClient.forDataDir(home);

after(async () => {
  await tsvm("delete", "web");
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

/** Waits for the shell prompt of the n-th boot (kernel messages may follow the prompt). */
function prompts(n: number): Promise<true> {
  return until(`shell prompt of boot #${n}`, async () => {
    const boots = (await client.getSerialPortOutput("web")).contents.split("Run /init as init process");
    return boots.length > n && boots[n]!.includes("# ") ? true : undefined;
  });
}

/** Types `command` into the console and returns once `expect` appears in what comes back. */
async function run(command: string, expect: string): Promise<void> {
  const conn = await client.openSerialPort("web");
  let seen = "";
  conn.onData((b) => {
    seen += b.toString("utf8");
  });
  conn.write(`${command}\n`);
  await until(
    `'${expect}' from '${command}'`,
    async () => (seen.includes(expect) ? true : undefined),
    120_000,
  );
  conn.close();
  await conn.closed;
}

test("a Linux VM: create, console, VMM killed and repaired, daemon killed and re-attached", {
  skip: !image,
}, async () => {
  await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: 5000 }));
  const created = await tsvm("create", "web", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  await prompts(1);
  await run("echo $((6*7))", "42");
  await run("uname -m", "riscv64");

  const first = await client.getInstance("web");
  process.kill(first.vmmPid!, "SIGKILL");
  const repaired = await until("the repaired VM", async () => {
    const vm = await client.getInstance("web");
    return vm.status === "RUNNING" && vm.vmmPid !== null && vm.vmmPid !== first.vmmPid ? vm : undefined;
  });
  assert.deepEqual(
    repaired.history.slice(-3).map((h) => h.to),
    ["REPAIRING", "STAGING", "RUNNING"],
  );
  await prompts(2);
  await run("echo repaired-$((1+1))", "repaired-2");

  const daemon = JSON.parse(await readFile(join(home, "daemon.json"), "utf8")) as { pid: number };
  process.kill(daemon.pid, "SIGKILL");
  const again = await tsvm("describe", "web", "--format", "json");
  assert.equal(again.code, 0, again.stderr);
  const vm = JSON.parse(again.stdout);
  assert.equal(vm.status, "RUNNING");
  assert.equal(vm.vmmPid, repaired.vmmPid, "the same VMM, re-attached");
  await run("echo here-$((2+1))", "here-3");
});
