// The one way a test may skip for a missing tool or guest image: with a loud SKIP line when a developer runs
// it by hand, and never where the suite must be complete (TSVM_NO_SKIP=1, set by scripts/test.sh, or CI=true):
// there it throws, so the missing piece fails the run instead of turning it green.

import { basename } from "node:path";

/** True where a skipped test must fail the run instead: under `npm test` (scripts/test.sh) and in CI. */
export function skippingForbidden(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.TSVM_NO_SKIP === "1" || env.CI === "true";
}

const said = new Set<string>();

/**
 * The `skip` option of a test that needs something: false when `available` is truthy. Otherwise, where
 * skipping is forbidden it throws an Error naming `reason`; elsewhere it prints a SKIP line on stderr (once
 * per reason) and returns `reason`, for node:test to report the test as skipped.
 */
export function skipUnless(available: unknown, reason: string): false | string {
  if (available) return false;
  const file = process.argv[1] ? `${basename(process.argv[1])}: ` : "";
  if (skippingForbidden())
    throw new Error(
      `${file}${reason}; a test would skip, which TSVM_NO_SKIP=1 (npm test) or CI=true makes a failure`,
    );
  if (!said.has(reason)) {
    said.add(reason);
    process.stderr.write(`\n*** SKIP ${file}${reason} ***\n\n`);
  }
  return reason;
}
