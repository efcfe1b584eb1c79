// shellQuote: the words of `tsvm exec NAME -- CMD…` reach the guest's `sh -c` as the same argv (checked
// with the host's real sh), and the command line's usage errors.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { test } from "node:test";
import { execCommand, shellQuote } from "./exec.ts";

test("shellQuote: any words survive sh -c unchanged", () => {
  const words = ["plain", "a b", "it's", "'", "''", "$HOME", "`id`", "a\nb", "*", "", "--x=1", "é ü", "\\"];
  const script = `for w in ${words.map(shellQuote).join(" ")}; do printf '%s\\0' "$w"; done`;
  const out = execFileSync("sh", ["-c", script], { encoding: "utf8" });
  assert.deepEqual(out.split("\0").slice(0, -1), words);
  assert.equal(shellQuote("ls"), "ls", "a plain word stays readable");
});

test("usage errors exit 2 before any daemon is contacted", async () => {
  const write = process.stderr.write;
  let err = "";
  process.stderr.write = ((s: string) => {
    err += s;
    return true;
  }) as typeof process.stderr.write;
  try {
    assert.equal(await execCommand(["vm"]), 2);
    assert.match(err, /give the command after '--'/);
    assert.equal(await execCommand(["--", "true"]), 2);
    assert.match(err, /give exactly one VM name/);
    assert.equal(await execCommand(["vm", "--timeout", "0", "--", "true"]), 2);
    assert.match(err, /--timeout must be a whole number of seconds from 1/);
  } finally {
    process.stderr.write = write;
  }
});
