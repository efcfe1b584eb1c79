import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ImageBuildError } from "./image-build-error.ts";
import { captureOutput, runLogged } from "./logged-command.ts";

test("runLogged appends the command and its whole output to the log, and feeds its input", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-log-"));
  try {
    const logPath = join(dir, "step.log");
    await runLogged("sh", ["-c", "echo out; echo err >&2"], { step: "first", logPath, cwd: dir });
    await runLogged("cat", [], { step: "second", logPath, cwd: dir, input: "fed\n" });
    const log = readFileSync(logPath, "utf8");
    assert.match(log, /\$ \(cd .* && sh -c echo out; echo err >&2\)\nout\nerr\n/);
    assert.match(log, /\$ \(cd .* && cat\)\nfed\n/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a failing or missing command rejects with one message naming the step and the log", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-log-"));
  try {
    const logPath = join(dir, "busybox.log");
    const opts = { step: "busybox 1.35.0: building", logPath, cwd: dir };
    await assert.rejects(runLogged("sh", ["-c", "echo boom; exit 3"], opts), (err) => {
      assert.ok(err instanceof ImageBuildError);
      assert.equal(err.code, "IMAGE_BUILD_FAILED");
      assert.equal(err.step, "busybox 1.35.0: building");
      assert.equal(err.logPath, logPath);
      assert.equal(
        err.message,
        `image build step 'busybox 1.35.0: building' failed: sh exited with status 3; full log: ${logPath}`,
      );
      return true;
    });
    assert.match(readFileSync(logPath, "utf8"), /boom/);
    await assert.rejects(runLogged("tsvm-no-such-command", [], opts), /cannot run tsvm-no-such-command/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("captureOutput returns stdout, and stderr's last lines on failure", async () => {
  assert.equal(await captureOutput("sh", ["-c", "echo a; echo b"]), "a\nb\n");
  await assert.rejects(captureOutput("sh", ["-c", "echo why >&2; exit 1"]), /exited with status 1: why/);
});
