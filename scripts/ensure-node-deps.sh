#!/usr/bin/env bash
# Installs the npm packages from package-lock.json when node_modules is missing or older than the lock file.
# Idempotent and quiet when there is nothing to do. bin/tsvm sources it, so the check starts no process:
# on a loaded host each one costs tens of milliseconds, paid by every command.
set -euo pipefail
deps_scripts="${BASH_SOURCE[0]%/*}"
[[ "$deps_scripts" != "${BASH_SOURCE[0]}" ]] || deps_scripts=.
deps_stamp="$deps_scripts/../node_modules/.tsvm-installed"
if [[ ! -f "$deps_stamp" || "$deps_scripts/../package-lock.json" -nt "$deps_stamp" ]]; then
  if [[ -L "$deps_scripts/../node_modules" ]]; then
    # A copy of the repository sharing another's packages: npm ci here would empty and refill the shared
    # directory under every process using it. Installing is the owning repository's business.
    echo "tsvm: node_modules is a link to packages installed elsewhere; not running npm ci through it" >&2
  else
    echo "tsvm: installing npm packages (npm ci)…"
    (cd "$deps_scripts/.." && npm ci --no-audit --no-fund --loglevel=error) || {
      echo "tsvm: npm ci failed; see the output above" >&2
      exit 1
    }
    touch "$deps_stamp"
  fi
fi
