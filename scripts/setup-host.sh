#!/usr/bin/env bash
# Makes sure this (Debian bookworm) host has the Debian packages tsvm's tests and guest images need:
# the riscv64 cross tool chain, Linux 6.1 source, OpenSBI, QEMU, and the kernel/busybox build tools; and
# that passt may use ping sockets (guests' ICMP).
# Idempotent and quick when everything is there (one dpkg-query); uses sudo only when not root.
set -euo pipefail

packages=(
  gcc-riscv64-linux-gnu libc6-dev-riscv64-cross binutils-riscv64-linux-gnu linux-source-6.1 opensbi qemu-system-misc qemu-utils
  flex bison bc cpio e2fsprogs xz-utils dpkg-dev libelf-dev make
  # The host compiler for the kernel's and busybox's build tools (kconfig, fixdep…).
  gcc libc6-dev
  # dtc checks the device trees the board builds; GNU time measures peak RSS in bench/.
  device-tree-compiler time
  # passt: the VMs' user-mode network (NAT and port forwards, issue 10); curl reaches guests in tests.
  passt curl
  # etcd: the cluster's store (issue 12); chromium: the web console's tests drive it headless (issue 13).
  etcd-server etcd-client chromium
)
src_list=/etc/apt/sources.list.d/tsvm-src.sources

if [[ $(id -u) -eq 0 ]]; then
  as_root=()
elif command -v sudo >/dev/null; then
  as_root=(sudo)
else
  as_root=(false)
fi

fail() {
  echo "tsvm setup-host: $*" >&2
  exit 1
}

# `apt-get source busybox` (the guest image's busybox) needs a deb-src entry; add ours unless one for
# bookworm main exists already. It names the mirrors the host's own bookworm entries use (a host behind a
# local mirror or proxy may reach no other), deb.debian.org only when there are none.
needs_update=0
if ! grep -rqsE '^(Types:.*deb-src|deb-src[[:space:]].*bookworm[[:space:]].*main)' \
  /etc/apt/sources.list /etc/apt/sources.list.d/; then
  mirrors="$("$(dirname "${BASH_SOURCE[0]}")/debian-mirrors.sh" | tr '\n' ' ')"
  echo "tsvm setup-host: adding the Debian source-package entry $src_list (${mirrors% })" >&2
  printf '%s\n' 'Types: deb-src' "URIs: ${mirrors% }" 'Suites: bookworm' \
    'Components: main' 'Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg' |
    "${as_root[@]}" tee "$src_list" >/dev/null || fail "cannot write $src_list (need root or sudo)"
  needs_update=1
fi

# passt (as nobody, group 65534) answers the guests' ICMP echo through ping sockets, which the kernel allows
# only to the groups in net.ipv4.ping_group_range; systemd opens it to all groups on most distributions, a
# bare container leaves it at "1 0" (none) and a guest's ping gets no reply. Applied now and kept in
# sysctl.d for the next boot.
read -r ping_lo ping_hi < <(sysctl -n net.ipv4.ping_group_range 2>/dev/null || echo "0 0")
if ((ping_lo > 65534 || ping_hi < 65534)); then
  echo "tsvm setup-host: letting all groups use ping sockets (net.ipv4.ping_group_range was $ping_lo $ping_hi)" >&2
  echo 'net.ipv4.ping_group_range = 0 2147483647' |
    "${as_root[@]}" tee /etc/sysctl.d/60-tsvm-ping-group-range.conf >/dev/null &&
    "${as_root[@]}" sysctl -q -w net.ipv4.ping_group_range="0 2147483647" ||
    fail "cannot set net.ipv4.ping_group_range (need root or sudo); guests' ping will get no reply"
fi

# One dpkg-query for all of them keeps the already-set-up case fast.
installed=" $(dpkg-query -W -f='${db:Status-Status}:${Package} ' "${packages[@]}" 2>/dev/null || true) "
missing=()
for p in "${packages[@]}"; do
  [[ $installed == *" installed:$p "* ]] || missing+=("$p")
done

if ((${#missing[@]} == 0 && needs_update == 0)); then
  exit 0
fi

if ((${#missing[@]} > 0)); then
  echo "tsvm setup-host: installing Debian packages: ${missing[*]}" >&2
fi
"${as_root[@]}" apt-get update -q >&2 ||
  fail "apt-get update failed (see above); check the network and /etc/apt/sources.list.d"
if ((${#missing[@]} > 0)); then
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >&2 || fail "apt-get install ${missing[*]} failed (see above)"
fi
