// The no-skip rule, on a test file made to skip (tests/fixtures/skipping/skipping-tests.ts): run as
// `npm test` runs the suite (scripts/run-tests.sh) it fails, naming every skipped and todo test; in CI it
// fails too; run by hand, it passes with a loud SKIP line.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const fixture = join(root, "tests/fixtures/skipping/skipping-tests.ts");

/**
 * This process's environment without the variables that forbid skipping (npm test sets them for us), and
 * without the one that makes a node --test started inside a test file refuse to run files.
 */
function handEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  delete env.TSVM_NO_SKIP;
  delete env.CI;
  delete env.NODE_TEST_CONTEXT;
  return env;
}

function runByHand(env: NodeJS.ProcessEnv) {
  const r = spawnSync(
    process.execPath,
    [
      "--import",
      `file://${root}/node_modules/tsx/dist/loader.mjs`,
      "--test",
      "--test-reporter=spec",
      fixture,
    ],
    { encoding: "utf8", env, timeout: 120_000 },
  );
  return { status: r.status, output: r.stdout + r.stderr };
}

test("under npm test (scripts/run-tests.sh) a skipped or todo test fails the run, and each is named", () => {
  const r = spawnSync(join(root, "scripts/run-tests.sh"), [fixture], {
    encoding: "utf8",
    env: handEnv(),
    timeout: 120_000,
  });
  assert.notEqual(r.status, 0, r.stdout + r.stderr);
  // skipUnless threw instead of skipping…
  assert.match(r.stdout, /✖ needs the frobnicator/);
  assert.match(r.stdout, /the frobnicator is not installed; a test would skip, which TSVM_NO_SKIP=1/);
  // …and the reporter named the tests that skipped on their own or are todo.
  assert.match(r.stderr, /2 tests were skipped or todo/);
  assert.match(r.stderr, /skipping-tests\.ts: skips by itself \(SKIP: a raw skip\)/);
  assert.match(r.stderr, /skipping-tests\.ts: is not written yet \(TODO: write this later\)/);
});

test("with CI=true a test that would skip fails, even run by hand", () => {
  const r = runByHand({ ...handEnv(), CI: "true" });
  assert.notEqual(r.status, 0, r.output);
  assert.match(r.output, /the frobnicator is not installed; a test would skip/);
});

test("run by hand, a skip passes with a loud SKIP line", () => {
  const r = runByHand(handEnv());
  assert.equal(r.status, 0, r.output);
  assert.match(r.output, /^\*\*\* SKIP skipping-tests\.ts: the frobnicator is not installed \*\*\*$/m);
  assert.match(r.output, /﹣ needs the frobnicator .*# the frobnicator is not installed/);
});
