// One daemon per data directory, through bin/tsvm (the start-up bundle) as a user runs it: daemons started
// at the same moment end with exactly one serving, and a leftover lock file naming a reused pid blocks nobody.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const installations = new Map<string, CliInstallation>();
const children: ChildProcess[] = [];

after(async () => {
  for (const i of installations.values()) await i.remove();
  for (const c of children) c.kill("SIGKILL");
});

async function freshHome(): Promise<string> {
  const installation = await cliInstallation("lock");
  installations.set(installation.home, installation);
  return installation.home;
}

function tsvm(home: string, ...args: string[]) {
  return installations.get(home)!.tsvm(...args);
}

/** `tsvm daemon` in the foreground; `exited` settles with its exit code and what it wrote on stderr. */
function foregroundDaemon(home: string): {
  child: ChildProcess;
  exited: Promise<{ code: number; stderr: string }>;
} {
  const child = spawn(join(root, "bin/tsvm"), ["daemon"], {
    env: { ...process.env, TSVM_HOME: home },
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.push(child);
  let stderr = "";
  child.stderr!.on("data", (c: Buffer) => (stderr += c.toString()));
  const exited = new Promise<{ code: number; stderr: string }>((resolve) =>
    child.on("close", (code) => resolve({ code: code ?? 1, stderr })),
  );
  return { child, exited };
}

async function statusPid(home: string): Promise<number | undefined> {
  for (let i = 0; i < 600; i++) {
    const status = await tsvm(home, "daemon", "status");
    const m = /^tsvm daemon pid (\d+) since /.exec(status.stdout);
    if (m) return Number(m[1]);
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}

test("two daemons started at the same moment: exactly one serves, the other says so in one line", async () => {
  const home = await freshHome();
  for (let round = 0; round < 4; round++) {
    // What a daemon killed between creating its lock file and writing its pid left behind.
    await writeFile(join(home, "daemon.lock"), "");
    const a = foregroundDaemon(home);
    const b = foregroundDaemon(home);
    // The loser exits at once (code 3); the winner serves until it is stopped.
    const loser = await Promise.race([a.exited, b.exited]);
    assert.equal(loser.code, 3, `round ${round}: ${loser.stderr}`);
    // (A worktree whose node_modules is a symbolic link gets a note about it from bin/tsvm first.)
    const lines = loser.stderr
      .split("\n")
      .filter((l) => l !== "" && !/^tsvm: node_modules is a link/.test(l));
    assert.equal(lines.length, 1, `round ${round}: one line, got: ${loser.stderr}`);
    const m = new RegExp(`^tsvm daemon: a tsvm daemon \\(pid (\\d+)\\) already runs for ${home}$`).exec(
      lines[0]!,
    );
    assert.ok(m, `round ${round}: ${lines[0]}`);
    const pid = await statusPid(home);
    assert.equal(pid, Number(m[1]), "the daemon that serves is the one holding the lock");
    assert.equal((await tsvm(home, "list")).code, 0, "the winner answers");
    const stop = await tsvm(home, "daemon", "stop");
    assert.match(stop.stdout, new RegExp(`Stopped the tsvm daemon \\(pid ${pid}\\)`));
    const [ea, eb] = await Promise.all([a.exited, b.exited]);
    assert.deepEqual([ea.code, eb.code].sort(), [0, 3], `round ${round}: one served and stopped, one lost`);
  }
});

test("commands started together in a home without a daemon start one daemon and all succeed", async () => {
  const home = await freshHome();
  const results = await Promise.all([tsvm(home, "list"), tsvm(home, "list"), tsvm(home, "list")]);
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  assert.ok((await statusPid(home)) !== undefined);
});

test("a leftover lock file and daemon.json naming a live unrelated pid do not block the daemon", async () => {
  const home = await freshHome();
  const bystander = spawn("sleep", ["60"], { stdio: "ignore" });
  children.push(bystander);
  const pid = bystander.pid!;
  await writeFile(join(home, "daemon.lock"), `${pid}\n`);
  await writeFile(
    join(home, "daemon.json"),
    JSON.stringify({ pid, socketPath: join(home, "api.sock"), tcpPort: null, startedAt: "x" }),
  );
  assert.match((await tsvm(home, "daemon", "status")).stdout, /^no tsvm daemon runs/);
  const stop = await tsvm(home, "daemon", "stop");
  assert.match(stop.stdout, /^no tsvm daemon runs/);
  const daemon = foregroundDaemon(home);
  const served = await Promise.race([
    statusPid(home),
    daemon.exited.then((e) => assert.fail(`the daemon did not start: ${e.stderr}`)),
  ]);
  assert.ok(served !== undefined && served !== pid, "a daemon serves");
  assert.equal((await tsvm(home, "daemon", "stop")).code, 0);
  assert.equal((await daemon.exited).code, 0);
  assert.equal(bystander.exitCode, null, "the process named in the stale files was left alone");
  assert.equal(bystander.signalCode, null);
  bystander.kill("SIGKILL");
});
