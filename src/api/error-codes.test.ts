// The error-code table against the sources that raise codes and the docs that show it: no code the daemon
// can answer with falls through to a 500, and docs/hypervisor.md shows the table as it is.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ERROR_CODES, errorCodesMarkdown, statusOfCode } from "./error-codes.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

function* sources(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sources(p);
    else if (p.endsWith(".ts") && !p.endsWith(".test.ts")) yield p;
  }
}

/** Where codes are made: HypervisorError and its subclasses, VMM replies, agent code maps, operations. */
const CODE_PATTERNS = [
  /new HypervisorError\(\s*"([a-z][a-z-]*)"/g,
  /\bsuper\(\s*"([a-z][a-z-]*)"/g,
  /\bcode: "([a-z][a-z-]*)"/g,
  /\["AGENT_[A-Z_]+", "([a-z][a-z-]*)"\]/g,
  /new ApiFailure\(\s*\d+,\s*"([a-z][a-z-]*)"/g,
];

test("every error code raised in the daemon, the VMMs or the API server has its HTTP status in the table", () => {
  const found = new Map<string, string>();
  for (const top of ["src/hypervisor", "src/api"])
    for (const file of sources(join(root, top))) {
      const text = readFileSync(file, "utf8");
      for (const pattern of CODE_PATTERNS)
        for (const m of text.matchAll(pattern)) found.set(m[1]!, relative(root, file));
    }
  // The scan must see the codes issue 8 named, or it is looking in the wrong places.
  for (const code of [
    "vmm-gone",
    "vmm-error",
    "exec-cancelled",
    "suspend-failed",
    "bad-state",
    "vmm-start-failed",
  ])
    assert.ok(found.has(code), `the scan did not find ${code}`);
  const missing = [...found].filter(([code]) => !ERROR_CODES.has(code)).map(([c, f]) => `${c} (${f})`);
  assert.deepEqual(missing, []);
});

test("the API server's own failures use the table's status for their reason", () => {
  const wrong: string[] = [];
  for (const file of sources(join(root, "src/api")))
    for (const m of readFileSync(file, "utf8").matchAll(/new ApiFailure\(\s*(\d+),\s*"([a-z][a-z-]*)"/g))
      if (Number(m[1]) !== statusOfCode(m[2]!)) wrong.push(`${relative(root, file)}: ${m[2]} as ${m[1]}`);
  assert.deepEqual(wrong, []);
});

test("no code in the table answers 500 by accident; the named ones have their status", () => {
  assert.equal(statusOfCode("constructor"), 500);
  assert.equal(statusOfCode("no-such-code"), 500);
  for (const [code, status] of [
    ["vmm-gone", 503],
    ["daemon-restarted", 503],
    ["vmm-error", 502],
    ["vmm-start-failed", 502],
    ["exec-cancelled", 409],
    ["bad-state", 409],
    ["suspend-failed", 500],
  ] as const)
    assert.equal(statusOfCode(code), status, code);
});

test("docs/hypervisor.md shows the table as it is", () => {
  const doc = readFileSync(join(root, "docs/hypervisor.md"), "utf8");
  const m = /<!-- error-codes:begin[^>]*-->\n([\s\S]*?)\n<!-- error-codes:end -->/.exec(doc);
  assert.ok(m, "docs/hypervisor.md has no error-codes block");
  assert.equal(m[1], errorCodesMarkdown(), `replace the block with:\n${errorCodesMarkdown()}`);
});
