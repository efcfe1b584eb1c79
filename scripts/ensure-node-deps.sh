#!/usr/bin/env bash
# Installs the npm packages from package-lock.json when node_modules is missing or older than the lock file.
# Idempotent and quiet when there is nothing to do.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
stamp="$root/node_modules/.tsvm-installed"
if [[ ! -f "$stamp" || "$root/package-lock.json" -nt "$stamp" ]]; then
  echo "tsvm: installing npm packages (npm ci)…"
  (cd "$root" && npm ci --no-audit --no-fund --loglevel=error) || {
    echo "tsvm: npm ci failed; see the output above" >&2
    exit 1
  }
  touch "$stamp"
fi
