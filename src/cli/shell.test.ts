// `tsvm shell` on a real host terminal: bin/tsvm runs under util-linux's `script` (a pty of its own), and the
// stand-in guest's terminal sessions are host shells in a pty of the asked size (host-shell-session.ts).
// The window size arrives, Ctrl-C interrupts the foreground command and the shell answers the next one,
// `exit 7` is tsvm's status, and the terminal's settings (stty -g) are the same afterwards — after the
// shell's exit, after a SIGTERM, and after an error.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

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

/**
 * Runs `inner` (sh) in a pty made by `script`, typing each step's input once the output so far matches
 * its `after`; resolves with everything the pty showed.
 */
function onTerminal(inner: string, steps: { after: RegExp; type: string | (() => void) }[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qfec", inner, "/dev/null"], {
      env: { ...process.env, TSVM_HOME: a.home },
      stdio: ["pipe", "pipe", "inherit"],
    });
    let seen = "";
    let next = 0;
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`timed out at step ${next}; the terminal showed:\n${seen}`));
    }, 120_000);
    child.stdout.on("data", (b: Buffer) => {
      seen += b.toString("utf8");
      while (next < steps.length && steps[next]!.after.test(seen)) {
        const step = steps[next++]!.type;
        if (typeof step === "string") child.stdin.write(step);
        else step();
      }
    });
    child.on("close", () => {
      clearTimeout(timer);
      resolve(seen);
    });
  });
}

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
  const shown = await onTerminal(framed(`${bin} shell agent-sh`), [
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
  const killed = await onTerminal(framed(`sh -c 'echo $$ > ${pidFile}; exec ${bin} shell agent-sh'`), [
    { after: /# $|\$ $/m, type: "stty size\r" },
    {
      after: /30 100/,
      type: () => void readFile(pidFile, "utf8").then((pid) => process.kill(Number(pid), "SIGTERM")),
    },
  ]);
  assert.match(killed, /rc=143/, "128 + SIGTERM");
  await restored();
  const failed = await onTerminal(framed(`${bin} shell nosuch`), []);
  assert.match(failed, /tsvm shell: .*nosuch/);
  assert.match(failed, /rc=255/);
  await restored();
});
