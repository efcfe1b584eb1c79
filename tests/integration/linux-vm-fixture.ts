// The shared set-up of the hypervisor's real-Linux integration tests: an installation of its own (TSVM_HOME
// in a temporary directory, so the user's VMs and daemon are never touched), bin/tsvm run as a user would,
// an API client on the same data directory, polling helpers, and a cleanup that deletes every VM and stops
// the daemon. Without the default image the tests skip, and say so loudly (tests/skip-unless.ts: under npm
// test and in CI they fail instead).
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after } from "node:test";
import { fileURLToPath } from "node:url";
import { ApiClient } from "../../src/api/client.ts";
import { MAX_AGENT_WAIT_SECONDS } from "../../src/api/types.ts";
import { findImage } from "../../src/images/image-store.ts";
import { skipUnless } from "../skip-unless.ts";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** A boot on the interpreter of a loaded 2-core machine can take minutes: wait generously. */
export const BOOT_TIMEOUT_MS = Number(process.env.TSVM_BOOT_TIMEOUT_MS ?? 10 * 60_000);
/** `tsvm exec --agent-wait` for a guest that may still be booting. */
export const AGENT_WAIT_SECONDS = String(Math.min(MAX_AGENT_WAIT_SECONDS, Math.ceil(BOOT_TIMEOUT_MS / 1000)));
/** The default image, or undefined when it has not been built (the tests then skip). */
export const image = findImage("default");
/** The `skip` option of every test that boots the default image. */
export const noImage = skipUnless(image, "no default image (run `tsvm image build`)");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface LinuxVmFixture {
  /** The installation's data directory (TSVM_HOME). */
  home: string;
  client: ApiClient;
  /** Runs bin/tsvm with these arguments against this installation. */
  tsvm(...args: string[]): Promise<CliResult>;
  /** `tsvm exec VM -- sh -c SCRIPT`, which must succeed; its stdout. */
  exec(vm: string, script: string): Promise<string>;
  /** Waits (up to BOOT_TIMEOUT_MS) until VM's guest agent runs a command: the guest has booted. */
  booted(vm: string): Promise<void>;
  /** Waits for the shell prompt of VM's n-th boot in its console history. */
  prompts(vm: string, n: number): Promise<true>;
  /** Types `command` into VM's serial console and returns once `expect` appears in what comes back. */
  typeLine(vm: string, command: string, expect: string): Promise<void>;
}

/**
 * A fresh installation for one test file; its cleanup (every VM deleted, the daemon stopped, the
 * directory removed) is registered with node:test's `after`. `name` names the SKIP line and the directory.
 */
export async function linuxVmFixture(name: string): Promise<LinuxVmFixture> {
  const home = await mkdtemp(join(tmpdir(), `tsvm-${name}-`));
  // A stop (and so the cleanup's delete) of a busy guest is forced after 5 s, not the default minute; a
  // test that needs another configuration writes its own before its first command starts the daemon.
  await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: 5000 }));
  const client = ApiClient.forDataDir(home);

  function tsvm(...args: string[]): Promise<CliResult> {
    return new Promise((done) => {
      execFile(
        join(root, "bin/tsvm"),
        args,
        { env: { ...process.env, TSVM_HOME: home }, timeout: 300_000, maxBuffer: 64 << 20 },
        (e, stdout, stderr) =>
          done({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout, stderr }),
      );
    });
  }

  after(async () => {
    if (image) {
      // Only a test that ran started the daemon; `list` would start one just to find nothing.
      const listed = await tsvm("list", "--format", "json");
      if (listed.code === 0)
        for (const vm of JSON.parse(listed.stdout) as { name: string }[]) await tsvm("delete", vm.name);
      await tsvm("daemon", "stop");
    }
    await rm(home, { recursive: true, force: true });
  });

  return {
    home,
    client,
    tsvm,
    async exec(vm, script) {
      const r = await tsvm("exec", vm, "--", "sh", "-c", script);
      assert.equal(r.code, 0, `exec '${script}' in ${vm}: ${r.stderr}`);
      return r.stdout;
    },
    async booted(vm) {
      const r = await tsvm("exec", vm, "--agent-wait", AGENT_WAIT_SECONDS, "--", "true");
      assert.equal(r.code, 0, `${vm}'s guest agent: ${r.stderr}`);
    },
    prompts(vm, n) {
      return until(`shell prompt of ${vm}'s boot #${n}`, async () => {
        const boots = (await client.getSerialPortOutput(vm)).contents.split(BOOT_MARK);
        return boots.length > n && boots[n]!.includes("# ") ? true : undefined;
      });
    },
    async typeLine(vm, command, expect) {
      const conn = await client.openSerialPort(vm);
      let seen = "";
      conn.onData((b) => {
        seen += b.toString("utf8");
      });
      conn.write(`${command}\n`);
      try {
        await until(
          `'${expect}' from '${command}'`,
          async () => (seen.includes(expect) ? true : undefined),
          120_000,
        );
      } finally {
        conn.close();
        await conn.closed;
      }
    },
  };
}

/** The kernel's line as it starts userspace: once per boot in a console history. */
export const BOOT_MARK = "Run /init as init process";

/** Polls `probe` every half second until it gives a value (a throw counts as not yet). */
export async function until<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  ms = BOOT_TIMEOUT_MS,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const v = await probe().catch(() => undefined);
    if (v !== undefined) return v;
    if (Date.now() - t0 > ms) throw new Error(`timed out after ${ms / 1000} s waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

let clockTicks: number | undefined;

/** CPU time (user + system, all threads) the host process `pid` has used so far, in ms. */
export function processCpuMs(pid: number): number {
  clockTicks ??= Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
  // Fields after the parenthesised command name, which may itself hold spaces: utime and stime are 14 and 15.
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return ((Number(f[11]) + Number(f[12])) * 1000) / clockTicks;
}

/** The CPU % of one core that each process used over `ms` of wall time from now. */
export async function measureCpuPercent(pids: number[], ms: number): Promise<number[]> {
  const t0 = performance.now();
  const before = pids.map(processCpuMs);
  await new Promise((r) => setTimeout(r, ms));
  const after = pids.map(processCpuMs);
  const wall = performance.now() - t0;
  return pids.map((_, i) => (100 * (after[i]! - before[i]!)) / wall);
}
