// `tsvm shell` on a real host terminal: bin/tsvm runs under util-linux's `script` (a pty of its own), and the
// stand-in guest's terminal sessions are host shells in a pty of the asked size (host-shell-session.ts).
// The window size arrives, Ctrl-C interrupts the foreground command and the shell answers the next one,
// `exit 7` is tsvm's status, and the terminal's settings (stty -g) are the same afterwards — after the
// shell's exit, after a SIGTERM, and after an error.
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";
import { onTerminal } from "./fixtures/terminal-run.ts";

const bin = join(dirname(fileURLToPath(import.meta.url)), "../../bin/tsvm");
let a: CliInstallation;

before(async () => {
  a = await cliInstallation("shell");
  const created = await a.tsvm("create", "agent-sh", "--machine-type", "t1-micro");
  assert.equal(created.code, 0, created.stderr);
});
after(async () => {
  await a.remove();
});

/** The inner script: fixes a window size, records stty -g before and after running `command`. */
function framed(command: string): string {
  const dir = a.home;
  return `stty cols 100 rows 30; stty -g > ${dir}/before; ${command}; echo "rc=$?"; stty -g > ${dir}/after`;
}

async function restored(): Promise<void> {
  const [b, c] = await Promise.all([
    readFile(join(a.home, "before"), "utf8"),
    readFile(join(a.home, "after"), "utf8"),
  ]);
  assert.equal(c, b, "the terminal's settings are as they were");
}

test("a shell in a pty: window size, Ctrl-C interrupts sleep and the shell answers, exit 7 is tsvm's", async () => {
  const shown = await onTerminal(a.home, framed(`${bin} shell agent-sh`), [
    { after: /# $|\$ $/m, type: "stty size\r" },
    { after: /30 100/, type: "sleep 100\r" },
    { after: /sleep 100\r*\n/, type: "\x03" },
    { after: /\^C/, type: "echo alive-$((6*7))\r" },
    { after: /alive-42/, type: "exit 7\r" },
  ]);
  assert.match(shown, /30 100/);
  assert.match(shown, /alive-42/);
  assert.match(shown, /rc=7/);
  await restored();
});

test("the terminal is restored after a SIGTERM and after an error", async () => {
  const pidFile = join(a.home, "tsvm.pid");
  // bin/tsvm execs node: the pid written is tsvm's.
  const killed = await onTerminal(
    a.home,
    framed(`sh -c 'echo $$ > ${pidFile}; exec ${bin} shell agent-sh'`),
    [
      { after: /# $|\$ $/m, type: "stty size\r" },
      {
        after: /30 100/,
        type: () => void readFile(pidFile, "utf8").then((pid) => process.kill(Number(pid), "SIGTERM")),
      },
    ],
  );
  assert.match(killed, /rc=143/, "128 + SIGTERM");
  await restored();
  const failed = await onTerminal(a.home, framed(`${bin} shell nosuch`), []);
  assert.match(failed, /tsvm shell: .*nosuch/);
  assert.match(failed, /rc=255/);
  await restored();
});
