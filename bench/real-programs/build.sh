#!/usr/bin/env bash
# Builds everything the real-programs bench runs in the guest and prints the directory holding it:
#   <dir>/bin/<name>            the bench's own C programs and timeit (static riscv64, glibc, -O2)
#   <dir>/real-programs.cpio    a newc archive with /bench/real/* (those programs, sqlite's speedtest1 and
#                               esbuild), /bench/data/* (text to compress and hash) and /bench/project (a
#                               TypeScript tree for esbuild to bundle); the runner puts it in front
#                               of an image's initramfs (Linux unpacks concatenated archives)
# Every part is cached under ${TSVM_CACHE:-~/.cache/tsvm} by the hash of what it is made from; sources
# fetched from elsewhere (Debian's sqlite3 source, `apt-get source`) go to <cache>/bench-src, never into
# the repository. The text is the C source of Linux's kernel/ and mm/ from Debian's linux-source-6.1.
# Usage: bench/real-programs/build.sh [--c-only]   (--c-only: the C programs alone, no cpio; quick)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${TSVM_CACHE:-$HOME/.cache/tsvm}"
programs=(crc32 mul-div recursion quicksort memops pointer-chase nbody matmul timeit)
cc=riscv64-linux-gnu-gcc
cflags=(-march=rv64gc -mabi=lp64d -O2 -static -Wl,--build-id=none)
linux_tar=/usr/src/linux-source-6.1.tar.xz
# esbuild's riscv64 binary from npm (`npm pack`, not a dependency of tsvm), and the project it bundles:
# tsvm's own src/machine at a fixed commit, so the work stays the same whatever the checkout holds.
esbuild_version=0.28.2
project_commit=f5ac12b32d2ad1ff7c91a17fec2064e6015337e5
# How much text gzip and sha256sum get: a few MiB, so QEMU takes about a second.
text_bytes=$((3 * 1024 * 1024))

fail() {
  echo "real-programs build: $*" >&2
  exit 2
}
command -v "$cc" >/dev/null || fail "$cc is missing; run scripts/setup-host.sh"
hash_of() { sha256sum | cut -c1-20; }

# The bench's own programs.
c_hash="$( (cat "$here"/*.c "$here"/*.h; sed -n '/^programs=/p;/^cflags=/p' "$here/build.sh"; "$cc" --version) | hash_of)"
c_out="$cache/real-programs/c-$c_hash"
if [[ ! -d "$c_out" ]]; then
  rm -rf "$c_out.tmp" && mkdir -p "$c_out.tmp/bin"
  for p in "${programs[@]}"; do
    "$cc" "${cflags[@]}" -Wall -Werror -o "$c_out.tmp/bin/$p" "$here/$p.c" -lm
  done
  riscv64-linux-gnu-strip "$c_out.tmp"/bin/*
  rm -rf "$c_out" && mv "$c_out.tmp" "$c_out"
fi
if [[ "${1:-}" == "--c-only" ]]; then
  echo "$c_out"
  exit 0
fi

# sqlite's speedtest1 from Debian's sqlite3 source: the amalgamation is generated on the host (tclsh),
# then speedtest1.c and sqlite3.c are compiled for riscv64.
src="$cache/bench-src"
sqlite_dir="$(ls -d "$src"/sqlite3-*/ 2>/dev/null | head -1 || true)"
if [[ -z "$sqlite_dir" ]]; then
  mkdir -p "$src"
  (cd "$src" && apt-get source -q sqlite3 >&2) || fail "apt-get source sqlite3 failed (is a deb-src entry set? see scripts/setup-host.sh)"
  sqlite_dir="$(ls -d "$src"/sqlite3-*/ | head -1)"
fi
sqlite_dir="${sqlite_dir%/}"
command -v tclsh >/dev/null || fail "tclsh is missing (sqlite's amalgamation needs it); run scripts/setup-host.sh"
sq_out="$cache/real-programs/speedtest1-$(basename "$sqlite_dir")-$( ("$cc" --version; echo "${cflags[*]}") | hash_of)"
if [[ ! -f "$sq_out/speedtest1" ]]; then
  rm -rf "$sq_out.tmp" && mkdir -p "$sq_out.tmp/amalgamation"
  echo "real-programs build: making sqlite's amalgamation and speedtest1 (a few minutes)" >&2
  (cd "$sq_out.tmp/amalgamation" && "$sqlite_dir/configure" --disable-tcl >build.log 2>&1 &&
    make sqlite3.c >>build.log 2>&1) || fail "sqlite's amalgamation failed: see $sq_out.tmp/amalgamation/build.log"
  "$cc" "${cflags[@]}" -DSQLITE_THREADSAFE=0 -DSQLITE_OMIT_LOAD_EXTENSION -I"$sq_out.tmp/amalgamation" \
    -o "$sq_out.tmp/speedtest1" "$sqlite_dir/test/speedtest1.c" "$sq_out.tmp/amalgamation/sqlite3.c" -lm
  riscv64-linux-gnu-strip "$sq_out.tmp/speedtest1"
  rm -rf "$sq_out.tmp/amalgamation"
  rm -rf "$sq_out" && mv "$sq_out.tmp" "$sq_out"
fi

# Real text: Linux's own C source, in a fixed order, cut at text_bytes.
[[ -f "$linux_tar" ]] || fail "$linux_tar is missing; run scripts/setup-host.sh (Debian's linux-source-6.1)"
text_out="$cache/real-programs/text-$( (stat -c %s "$linux_tar"; echo "$text_bytes") | hash_of)"
if [[ ! -f "$text_out/linux.txt" ]]; then
  rm -rf "$text_out.tmp" && mkdir -p "$text_out.tmp/src"
  tar -xJf "$linux_tar" -C "$text_out.tmp/src" --wildcards 'linux-source-6.1/kernel/*.c' 'linux-source-6.1/mm/*.c'
  (cd "$text_out.tmp/src" && find . -name '*.c' | LC_ALL=C sort | xargs cat) >"$text_out.tmp/all.txt"
  head -c "$text_bytes" "$text_out.tmp/all.txt" >"$text_out.tmp/linux.txt"
  rm "$text_out.tmp/all.txt"
  rm -rf "$text_out.tmp/src"
  rm -rf "$text_out" && mv "$text_out.tmp" "$text_out"
fi

# esbuild: the package's binary is a static Go program.
es_out="$cache/real-programs/esbuild-$esbuild_version"
if [[ ! -f "$es_out/esbuild" ]]; then
  tgz="$src/esbuild/esbuild-linux-riscv64-$esbuild_version.tgz"
  if [[ ! -f "$tgz" ]]; then
    mkdir -p "$src/esbuild"
    (cd "$src/esbuild" && npm pack --silent "@esbuild/linux-riscv64@$esbuild_version" >/dev/null) ||
      fail "npm pack @esbuild/linux-riscv64@$esbuild_version failed"
  fi
  rm -rf "$es_out.tmp" && mkdir -p "$es_out.tmp"
  tar -xzf "$tgz" -C "$es_out.tmp" package/bin/esbuild && mv "$es_out.tmp/package/bin/esbuild" "$es_out.tmp/esbuild"
  rm -rf "$es_out.tmp/package" "$es_out" && mv "$es_out.tmp" "$es_out"
fi
project_tar="$cache/real-programs/project-$project_commit.tar"
if [[ ! -f "$project_tar" ]]; then
  git -C "$here/../.." archive --format=tar -o "$project_tar.tmp" "$project_commit" src/machine ||
    fail "git archive $project_commit failed (esbuild's project is tsvm's src/machine at that commit)"
  mv "$project_tar.tmp" "$project_tar"
fi

# The archive: one fixed mtime and owner, so the same inputs give the same bytes.
cpio_out="$cache/real-programs/cpio-$( (echo "$c_out $sq_out $text_out $es_out"; cat "$here/build.sh") | hash_of)"
if [[ ! -f "$cpio_out/real-programs.cpio" ]]; then
  rm -rf "$cpio_out.tmp" && mkdir -p "$cpio_out.tmp/tree/bench/real" "$cpio_out.tmp/tree/bench/data"
  cp "$c_out"/bin/* "$sq_out/speedtest1" "$es_out/esbuild" "$cpio_out.tmp/tree/bench/real/"
  mkdir "$cpio_out.tmp/tree/bench/project"
  tar -xf "$project_tar" -C "$cpio_out.tmp/tree/bench/project" --exclude='*.test.ts'
  cp "$text_out/linux.txt" "$cpio_out.tmp/tree/bench/data/"
  gzip -n -6 -c "$text_out/linux.txt" >"$cpio_out.tmp/tree/bench/data/linux.txt.gz"
  cp -r "$c_out/bin" "$cpio_out.tmp/bin"
  find "$cpio_out.tmp/tree" -exec touch -h -d @0 {} +
  (cd "$cpio_out.tmp/tree" && find bench | LC_ALL=C sort | cpio --quiet -o -H newc -R 0:0 --reproducible \
    >"$cpio_out.tmp/real-programs.cpio")
  rm -rf "$cpio_out.tmp/tree"
  rm -rf "$cpio_out" && mv "$cpio_out.tmp" "$cpio_out"
fi
echo "$cpio_out"
