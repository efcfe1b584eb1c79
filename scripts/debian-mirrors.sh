#!/usr/bin/env bash
# Prints the mirror URIs this host's apt already uses for Debian bookworm main (one a line, first found
# first), read from the deb entries of sources.list, sources.list.d/*.list (one-line format) and
# sources.list.d/*.sources (deb822); prints http://deb.debian.org/debian when there is none.
# scripts/setup-host.sh points its deb-src entry at them, so source packages come from where the binary
# ones do. Usage: debian-mirrors.sh [APT_DIR] (default /etc/apt).
set -euo pipefail
apt_dir="${1:-/etc/apt}"
suite=bookworm

files=()
[[ -f "$apt_dir/sources.list" ]] && files+=("$apt_dir/sources.list")
for f in "$apt_dir"/sources.list.d/*.list "$apt_dir"/sources.list.d/*.sources; do
  [[ -f "$f" ]] && files+=("$f")
done

mirrors=""
if ((${#files[@]} > 0)); then
  mirrors="$(awk -v suite="$suite" '
    function has(list, word,   n, i, w) {
      n = split(list, w, /[[:space:]]+/)
      for (i = 1; i <= n; i++) if (w[i] == word) return 1
      return 0
    }
    function stanza(   n, i, u) {
      if (has(types, "deb") && has(suites, suite) && has(comps, "main") && tolower(enabled) != "no") {
        n = split(uris, u, /[[:space:]]+/)
        for (i = 1; i <= n; i++) if (u[i] != "") print u[i]
      }
      types = ""; uris = ""; suites = ""; comps = ""; enabled = ""
    }
    FNR == 1 { stanza(); deb822 = (FILENAME ~ /\.sources$/) }
    # A deb822 comment line is not a blank line: it must not end the stanza.
    deb822 && /^#/ { next }
    { sub(/#.*/, "") }
    deb822 {
      if ($0 ~ /^[[:space:]]*$/) { stanza(); next }
      key = tolower($0); sub(/:.*/, "", key)
      value = $0; sub(/^[^:]*:[[:space:]]*/, "", value)
      if (key == "types") types = value
      else if (key == "uris") uris = value
      else if (key == "suites") suites = value
      else if (key == "components") comps = value
      else if (key == "enabled") enabled = value
      next
    }
    $1 == "deb" {
      line = $0
      sub(/^[[:space:]]*deb[[:space:]]+/, "", line)
      sub(/^\[[^]]*\][[:space:]]*/, "", line)  # [arch=amd64 signed-by=…]
      n = split(line, f, /[[:space:]]+/)
      if (f[2] == suite) for (i = 3; i <= n; i++) if (f[i] == "main") { print f[1]; break }
    }
    END { stanza() }
  ' "${files[@]}" | grep -v '^cdrom:' | awk '!seen[$0]++')" || true
fi
if [[ -z "$mirrors" ]]; then mirrors=http://deb.debian.org/debian; fi
printf '%s\n' "$mirrors"
