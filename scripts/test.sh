#!/usr/bin/env bash
# The whole test suite: installs what it needs (npm packages, Debian packages, the default guest image),
# type-checks every layer, lints, then runs every *.test.ts under src/ and tests/ with node's test runner.
# No test may skip (scripts/run-tests.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/ensure-node-deps.sh
if [[ -x scripts/setup-host.sh ]]; then scripts/setup-host.sh; fi
echo "== type-check (machine layer without Node types, then the rest)"
npx tsc -p src/machine/tsconfig.json
npx tsc -p tsconfig.json
npx tsc -p src/web/tsconfig.json
echo "== lint"
npx biome lint --diagnostic-level=error .
if [[ -f src/images/build.ts ]]; then
  echo "== default guest image (built once, cached)"
  bin/tsvm image build
fi
echo "== tests"
mapfile -t files < <(find src tests -name '*.test.ts' -not -path '*/node_modules/*' | sort)
exec scripts/run-tests.sh "${files[@]}"
