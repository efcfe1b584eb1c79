#!/usr/bin/env bash
# Runs the given test files with node's test runner as `npm test` does (scripts/test.sh): no test may skip.
# TSVM_NO_SKIP=1 turns tests/skip-unless.ts's skips into failures, and scripts/no-skip-reporter.mjs fails
# the run for any test that still skipped or was todo, naming each (on stderr, after spec's report).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export TSVM_NO_SKIP=1
exec node --enable-source-maps --import "file://$root/node_modules/tsx/dist/loader.mjs" \
  --test --test-reporter=spec --test-reporter-destination=stdout \
  --test-reporter="file://$root/scripts/no-skip-reporter.mjs" --test-reporter-destination=stderr "$@"
