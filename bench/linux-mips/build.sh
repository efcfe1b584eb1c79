#!/usr/bin/env bash
# Builds the linux-mips user program (static, no libc) and a newc cpio holding it as /bench/linux-mips,
# cached by the hash of the source; prints the cpio's path. Linux unpacks concatenated cpio archives, so the
# runner puts this one in front of an image's initramfs.
# Usage: bench/linux-mips/build.sh
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
hash="$( (cat "$here/linux-mips.c" "$here/build.sh"; riscv64-linux-gnu-gcc --version) | sha256sum | cut -c1-20)"
out="${TSVM_CACHE:-$HOME/.cache/tsvm}/linux-mips/$hash"
if [[ ! -f "$out/linux-mips.cpio" ]]; then
  rm -rf "$out.tmp" && mkdir -p "$out.tmp/tree/bench"
  riscv64-linux-gnu-gcc -march=rv64gc -mabi=lp64d -O2 -static -nostdlib -nostartfiles -ffreestanding \
    -fno-pie -no-pie -Wl,--build-id=none,--no-warn-rwx-segments -o "$out.tmp/tree/bench/linux-mips" "$here/linux-mips.c"
  # Owned by root, one fixed mtime: the same source gives the same archive.
  (cd "$out.tmp/tree" && find bench | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible \
    >"$out.tmp/linux-mips.cpio")
  rm -rf "$out" && mv "$out.tmp" "$out"
fi
echo "$out/linux-mips.cpio"
