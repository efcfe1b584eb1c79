// scripts/debian-mirrors.sh on apt configurations written to a temporary directory: the deb-src entry that
// scripts/setup-host.sh adds names the mirrors the host already uses for bookworm main, in both source
// formats, and deb.debian.org only when none is configured.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const script = resolve(dirname(fileURLToPath(import.meta.url)), "../../scripts/debian-mirrors.sh");

/** The script's answer for an /etc/apt made of `files` (paths relative to it). */
function mirrors(files: Record<string, string>): string[] {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-apt-"));
  try {
    mkdirSync(join(dir, "sources.list.d"));
    for (const [path, text] of Object.entries(files)) writeFileSync(join(dir, path), text);
    return execFileSync(script, [dir], { encoding: "utf8" }).trimEnd().split("\n");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("deb822 .sources: the URIs of deb stanzas for bookworm main, not security, other suites or disabled ones", () => {
  const found = mirrors({
    "sources.list.d/debian.sources": `Types: deb
# a comment
URIs: http://mirror.example.org/debian http://second.example.org/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb
URIs: http://disabled.example.org/debian
Suites: bookworm
Components: main
Enabled: no
`,
    "sources.list.d/nodesource.sources":
      "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\nComponents: main\n",
    "sources.list.d/old.sources.disabled":
      "Types: deb\nURIs: http://ignored.example.org/\nSuites: bookworm\nComponents: main\n",
  });
  assert.deepEqual(found, ["http://mirror.example.org/debian", "http://second.example.org/debian"]);
});

test("one-line sources.list and *.list entries, with options and comments; each mirror once", () => {
  const found = mirrors({
    "sources.list": `# deb http://commented.example.org/debian bookworm main
deb [arch=amd64 signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://proxy.local:3142/debian bookworm main non-free-firmware
deb http://proxy.local:3142/debian-security bookworm-security main
deb-src http://src-only.example.org/debian bookworm main
deb cdrom:[Debian GNU/Linux 12]/ bookworm main
deb http://contrib-only.example.org/debian bookworm contrib
`,
    "sources.list.d/extra.list":
      "deb http://proxy.local:3142/debian bookworm main\ndeb http://extra.example.org/debian bookworm main # note\n",
  });
  assert.deepEqual(found, ["http://proxy.local:3142/debian", "http://extra.example.org/debian"]);
});

test("no entry for bookworm main (or no apt configuration at all): deb.debian.org", () => {
  assert.deepEqual(mirrors({}), ["http://deb.debian.org/debian"]);
  assert.deepEqual(mirrors({ "sources.list": "deb http://archive.ubuntu.com/ubuntu jammy main\n" }), [
    "http://deb.debian.org/debian",
  ]);
});
