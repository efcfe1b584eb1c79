#!/usr/bin/env bash
# Builds the real-programs bench's own C programs (static riscv64, glibc, -O2) into a cache directory keyed
# by the hash of their sources, and prints that directory. Each program is <dir>/bin/<name>.
# Usage: bench/real-programs/build.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
programs=(crc32 mul-div recursion quicksort memops pointer-chase nbody matmul)
cc=riscv64-linux-gnu-gcc
command -v "$cc" >/dev/null || { echo "build.sh: $cc is missing; run scripts/setup-host.sh" >&2; exit 2; }
hash="$( (cat "$here"/*.c "$here"/*.h "$here/build.sh"; "$cc" --version) | sha256sum | cut -c1-20)"
out="${TSVM_CACHE:-$HOME/.cache/tsvm}/real-programs/c-$hash"
if [[ ! -d "$out" ]]; then
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/bin"
  for p in "${programs[@]}"; do
    "$cc" -march=rv64gc -mabi=lp64d -O2 -static -Wall -Werror -Wl,--build-id=none \
      -o "$out.tmp/bin/$p" "$here/$p.c" -lm
  done
  riscv64-linux-gnu-strip "$out.tmp"/bin/*
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out"
