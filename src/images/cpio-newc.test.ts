import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import {
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readlinkSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { CpioNewcWriter } from "./cpio-newc.ts";

function withTempDir(body: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-cpio-"));
  try {
    body(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test("an archive of a tree lists and extracts with GNU cpio, modes and links intact", () => {
  withTempDir((dir) => {
    const src = join(dir, "src");
    mkdirSync(join(src, "bin"), { recursive: true });
    mkdirSync(join(src, "etc"));
    writeFileSync(join(src, "bin", "busybox"), "#!/bin/sh\necho hi\n", { mode: 0o755 });
    writeFileSync(join(src, "etc", "hostname"), "tsvm\n", { mode: 0o644 });
    symlinkSync("busybox", join(src, "bin", "sh"));

    const writer = new CpioNewcWriter(1_700_000_000);
    writer.addTree(src);
    writer.addFile("init", Buffer.from("#!/bin/sh\n"), 0o755);
    writer.addCharDevice("console", 0o600, 5, 1);
    const archive = writer.finish();
    assert.equal(archive.length % 4, 0);

    const listing = execFileSync("cpio", ["-t", "--quiet"], { input: archive }).toString().trim().split("\n");
    assert.deepEqual(listing, ["bin", "bin/busybox", "bin/sh", "etc", "etc/hostname", "init", "console"]);
    const verbose = execFileSync("cpio", ["-tv", "--quiet"], { input: archive }).toString();
    assert.match(verbose, /^crw------- +1 root +root +5, +1 .* console$/m);
    assert.match(verbose, /^-rwxr-xr-x +1 root +root +18 .* bin\/busybox$/m);

    const out = join(dir, "out");
    mkdirSync(out);
    // No device nodes when extracting as a possibly unprivileged user.
    const noDevice = new CpioNewcWriter();
    noDevice.addTree(src);
    execFileSync("cpio", ["-id", "--quiet", "--no-preserve-owner"], { cwd: out, input: noDevice.finish() });
    assert.equal(readFileSync(join(out, "bin", "busybox"), "utf8"), "#!/bin/sh\necho hi\n");
    assert.equal(statSync(join(out, "bin", "busybox")).mode & 0o777, 0o755);
    assert.equal(readlinkSync(join(out, "bin", "sh")), "busybox");
    assert.equal(readFileSync(join(out, "etc", "hostname"), "utf8"), "tsvm\n");
  });
});

test("the same tree gives the same bytes, and a changed file changes them", () => {
  withTempDir((dir) => {
    writeFileSync(join(dir, "a"), "one");
    const first = new CpioNewcWriter();
    first.addTree(dir);
    const second = new CpioNewcWriter();
    second.addTree(dir);
    const a = first.finish();
    assert.deepEqual(a, second.finish());
    writeFileSync(join(dir, "a"), "two");
    const third = new CpioNewcWriter();
    third.addTree(dir);
    assert.notDeepEqual(a, third.finish());
  });
});

test("adding after finish fails instead of writing past the trailer", () => {
  const writer = new CpioNewcWriter();
  writer.finish();
  assert.throws(() => writer.addDirectory("late"), /already finished/);
});
