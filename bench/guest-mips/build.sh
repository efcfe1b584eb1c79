#!/usr/bin/env bash
# Builds the guest-mips benchmark ELF (cached by the hash of its sources) and prints its path.
# Usage: bench/guest-mips/build.sh [ITERATIONS]
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
iterations="${1:-150}"
hash="$( (cat "$here/start.S" "$here/guest-mips.c" "$here/link.ld"; echo "$iterations"; riscv64-linux-gnu-gcc --version) | sha256sum | cut -c1-20)"
out="${TSVM_CACHE:-$HOME/.cache/tsvm}/guest-mips/$hash"
elf="$out/guest-mips.elf"
if [[ ! -f "$elf" ]]; then
  mkdir -p "$out"
  riscv64-linux-gnu-gcc -march=rv64gc -mabi=lp64d -mcmodel=medany -O2 -nostdlib -nostartfiles -static \
    -fno-pie -no-pie -ffreestanding -Wl,--build-id=none,--no-warn-rwx-segments -DITERATIONS="$iterations" -T "$here/link.ld" \
    -o "$elf.tmp" "$here/start.S" "$here/guest-mips.c"
  mv "$elf.tmp" "$elf"
fi
echo "$elf"
