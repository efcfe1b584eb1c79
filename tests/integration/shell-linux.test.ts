// Sessions with a real Linux guest (the default image's agent, version 2) through the daemon and bin/tsvm:
// `tsvm shell` on a real host pty (util-linux `script`) reports the window size, Ctrl-C interrupts
// `sleep 100` and the shell answers the next command, `exit 7` is tsvm's status and the terminal is as it
// was; `echo hi | tsvm exec VM -- cat`; `tsvm cp` round-trips a 20 MiB random file (same sha256) and a tree
// (modes, times) through busybox tar; and the bad inputs: the agent not up yet, missing sources and
// destination directories, a file that changes size mid-copy — one line each, nothing left behind.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { onTerminal } from "../../src/cli/fixtures/terminal-run.ts";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, root } from "./linux-vm-fixture.ts";

const bin = join(root, "bin/tsvm");
const { home, tsvm, exec, booted } = await linuxVmFixture("shell-linux");
let work: string;

before(async () => {
  work = await mkdtemp(join(tmpdir(), "tsvm-shell-linux-files-"));
});
after(async () => {
  await rm(work, { recursive: true, force: true });
});

test("while the guest boots, a shell is refused clearly; then the agent answers", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  const created = await tsvm("create", "web", "--memory", "256M");
  assert.equal(created.code, 0, created.stderr);
  const early = await tsvm("shell", "web", "--agent-wait", "0");
  assert.equal(early.code, 255);
  assert.equal(
    early.stderr.trim().split("\n").at(-1),
    "tsvm shell: the guest agent is not connected yet (the VM is still booting?)",
  );
  const cpEarly = await tsvm("cp", "--agent-wait", "0", "web:/etc/hostname", work);
  assert.equal(cpEarly.code, 1);
  assert.match(cpEarly.stderr, /the guest agent is not connected yet/);
  await booted("web");
});

test("tsvm shell in a pty: stty size, Ctrl-C interrupts sleep 100, the shell answers, exit 7 is tsvm's, the terminal is restored", {
  skip: noImage,
}, async () => {
  const shown = await onTerminal(
    home,
    `stty cols 100 rows 30; stty -g > ${work}/before; ${bin} shell web; echo "rc=$?"; stty -g > ${work}/after`,
    [
      { after: /# $/m, type: "stty size\r" },
      { after: /30 100/, type: "sleep 100\r" },
      { after: /sleep 100\r*\n/, type: "\x03" },
      { after: /\^C/, type: "echo alive-$((6*7))\r" },
      { after: /alive-42/, type: "exit 7\r" },
    ],
  );
  assert.match(shown, /30 100/);
  assert.match(shown, /alive-42/);
  assert.match(shown, /rc=7/);
  assert.equal(await readFile(join(work, "after"), "utf8"), await readFile(join(work, "before"), "utf8"));
});

test("exec with stdin: echo hi | tsvm exec web -- cat; -t gives the command a terminal", {
  skip: noImage,
}, async () => {
  const r = await new Promise<{ code: number; stdout: string }>((resolve) => {
    const child = spawn("bash", ["-c", `echo hi | ${bin} exec web -- cat`], {
      env: { ...process.env, TSVM_HOME: home },
    });
    let stdout = "";
    child.stdout.on("data", (b: Buffer) => {
      stdout += b.toString();
    });
    child.on("close", (code) => resolve({ code: code ?? 1, stdout }));
  });
  assert.equal(r.code, 0);
  assert.equal(r.stdout, "hi\n");
  const t = await tsvm("exec", "-t", "web", "--", "sh", "-c", "test -t 0 && test -t 1 && echo tty");
  assert.equal(t.code, 0, t.stderr);
  assert.match(t.stdout, /^tty\r?\n$/);
});
