// End to end with real Linux: a running guest's counting loop is suspended in one installation, moved with
// `tsvm export counter - | tsvm import -` into another (a second TSVM_HOME with its own daemon), and resumed
// there: the same process keeps counting from where it was, no reboot. The source stays SUSPENDED.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import {
  AGENT_WAIT_SECONDS,
  BOOT_TIMEOUT_MS,
  type LinuxVmFixture,
  linuxVmFixture,
  noImage,
  root,
  until,
} from "./linux-vm-fixture.ts";

const source = await linuxVmFixture("export-src");
const target = await linuxVmFixture("export-dst");

const COUNTER = "echo $$ > /tmp/pid; i=0; while :; do i=$((i+1)); echo $i > /tmp/n; done";

interface Probe {
  n: number;
  pid: number;
  /** Field 22 of the loop's /proc/PID/stat: when it started, in clock ticks since the guest booted. */
  startTime: string;
}

function probe(where: LinuxVmFixture): Promise<Probe> {
  return until(
    "the loop's figures",
    async () => {
      const out = await where.exec(
        "counter",
        'read n < /tmp/n; read p < /tmp/pid; read -r st < /proc/$p/stat; echo "$n|$p|$st"',
      );
      const [n, pid, stat] = out.trim().split("|");
      if (!/^\d+$/.test(n ?? "") || !stat) return undefined;
      return {
        n: Number(n),
        pid: Number(pid),
        startTime: stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19]!,
      };
    },
    120_000,
  );
}

test("a suspended Linux guest moved with export - | import - to another TSVM_HOME resumes: its loop counts on", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 900_000,
}, async (t) => {
  const t0 = Date.now();
  const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  const created = await source.tsvm("create", "counter", "--memory", "128M");
  assert.equal(created.code, 0, created.stderr);
  const started = await source.tsvm(
    "exec",
    "counter",
    "--agent-wait",
    AGENT_WAIT_SECONDS,
    "--",
    "sh",
    "-c",
    `setsid nice -n 19 sh -c '${COUNTER}' </dev/null >/dev/null 2>&1 &`,
  );
  assert.equal(started.code, 0, started.stderr);
  const first = await probe(source);
  const last = await probe(source);
  assert.ok(last.n > first.n, `the loop counts (${first.n} → ${last.n})`);
  mark(`booted, loop counting (${last.n})`);
  const suspended = await source.tsvm("suspend", "counter");
  assert.equal(suspended.code, 0, suspended.stderr);
  mark("suspended");

  const bin = join(root, "bin/tsvm");
  const moveStart = Date.now();
  const moved = await new Promise<{ code: number; stderr: string }>((resolve) =>
    execFile(
      "bash",
      [
        "-c",
        `set -o pipefail; TSVM_HOME=${source.home} ${bin} export counter - | tee >(wc -c > ${target.home}/bytes) | ` +
          `TSVM_HOME=${target.home} ${bin} import -`,
      ],
      { timeout: 600_000 },
      (e, _stdout, stderr) => resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stderr }),
    ),
  );
  assert.equal(moved.code, 0, moved.stderr);
  const bytes = Number(readFileSync(join(target.home, "bytes"), "utf8").trim());
  mark(`moved: ${bytes} bytes in ${((Date.now() - moveStart) / 1000).toFixed(1)} s (export | import)`);

  const src = await source.client.getInstance("counter");
  const dst = await target.client.getInstance("counter");
  assert.equal(src.status, "SUSPENDED", "the source is untouched");
  assert.equal(dst.status, "SUSPENDED");
  assert.equal(dst.id, src.id);

  const resumed = await target.tsvm("resume", "counter");
  assert.equal(resumed.code, 0, resumed.stderr);
  mark("resumed in the other installation");
  const after = await probe(target);
  assert.equal(after.pid, last.pid, "the same process");
  assert.equal(after.startTime, last.startTime, "started at the same moment of the same boot: no reboot");
  assert.ok(after.n >= last.n, `it went on from ${last.n} (now ${after.n}), not from 0`);
  const later = await probe(target);
  assert.ok(later.n > after.n, `and keeps counting (${after.n} → ${later.n})`);
  mark(`counting on: ${last.n} → ${later.n}`);
});
