// tsvm exec with stdin and tsvm cp end to end through bin/tsvm, the daemon, a real VMM and the stand-in
// guest's sessions (host `sh -c`: the "guest" paths are host paths in a temporary directory; real Linux
// guests run the same through busybox in tests/integration/shell-linux.test.ts). A 20 MiB file and a tree
// round-trip with their bytes, modes and times; bad inputs give one line and leave nothing behind, also
// when a file changes size mid-copy.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmod, mkdir, readdir, readFile, rm, stat, truncate, utimes, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";
import { cpWhile } from "./fixtures/terminal-run.ts";

const bin = join(dirname(fileURLToPath(import.meta.url)), "../../bin/tsvm");
let a: CliInstallation;
let dir: string;

before(async () => {
  a = await cliInstallation("cp");
  dir = join(a.home, "files");
  await mkdir(join(dir, "host"), { recursive: true });
  await mkdir(join(dir, "vm"), { recursive: true });
  const created = await a.tsvm("create", "agent-cp", "--machine-type", "t1-micro");
  assert.equal(created.code, 0, created.stderr);
});
after(async () => {
  await a.remove();
});

function bash(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      "bash",
      ["-c", script],
      { env: { ...process.env, TSVM_HOME: a.home }, timeout: 120_000 },
      (error, stdout, stderr) =>
        resolve({
          code: error ? (typeof error.code === "number" ? error.code : 1) : 0,
          stdout,
          stderr: stderr
            .split("\n")
            .filter((l) => !l.startsWith("tsvm: node_modules is a link"))
            .join("\n"),
        }),
    );
  });
}

const sha = async (path: string) =>
  createHash("sha256")
    .update(await readFile(path))
    .digest("hex");

/** Leftovers of a copy: temporary names anywhere under `root`. */
async function leftovers(root: string): Promise<string[]> {
  const names = await readdir(root, { recursive: true });
  return names.filter((n) => n.includes(".tsvm-cp"));
}

test("exec forwards piped stdin (3 MB of it too) and gives the command's status", async () => {
  const piped = await bash(`echo hi | ${bin} exec agent-cp -- cat`);
  assert.equal(piped.code, 0, piped.stderr);
  assert.equal(piped.stdout, "hi\n");
  const status = await bash(`${bin} exec agent-cp -- sh -c 'cat >/dev/null; exit 7' </dev/null`);
  assert.equal(status.code, 7, status.stderr);
  const big = await bash(`head -c 3000000 /dev/zero | ${bin} exec agent-cp -- wc -c`);
  assert.equal(big.stdout.trim(), "3000000");
});

test("cp round-trips a 20 MiB file and a tree: bytes, modes and times", async () => {
  const src = join(dir, "host", "tree");
  await mkdir(join(src, "sub", "deeper"), { recursive: true });
  await writeFile(join(src, "big.bin"), randomBytes(20 * 1048576));
  await writeFile(join(src, "sub", "script.sh"), "#!/bin/sh\necho ok\n");
  await chmod(join(src, "sub", "script.sh"), 0o751);
  await writeFile(join(src, "sub", "deeper", "secret"), "s");
  await chmod(join(src, "sub", "deeper", "secret"), 0o600);
  const old = new Date("2020-01-02T03:04:05Z");
  await utimes(join(src, "sub", "script.sh"), old, old);
  await utimes(join(src, "sub", "deeper"), old, old);

  const into = await a.tsvm("cp", "--progress", src, `agent-cp:${join(dir, "vm")}`);
  assert.equal(into.code, 0, into.stderr);
  assert.match(into.stderr, /copying .* \(100%\)/);
  const back = join(dir, "host", "back");
  const out = await a.tsvm("cp", `agent-cp:${join(dir, "vm", "tree")}`, back);
  assert.equal(out.code, 0, out.stderr);

  for (const copy of [join(dir, "vm", "tree"), back]) {
    assert.equal(await sha(join(copy, "big.bin")), await sha(join(src, "big.bin")), copy);
    const script = await stat(join(copy, "sub", "script.sh"));
    assert.equal(script.mode & 0o7777, 0o751);
    assert.equal(script.mtime.getTime(), old.getTime());
    assert.equal((await stat(join(copy, "sub", "deeper", "secret"))).mode & 0o7777, 0o600);
    assert.equal(
      (await stat(join(copy, "sub", "deeper"))).mtime.getTime(),
      old.getTime(),
      `${copy}: a directory's time`,
    );
  }
  // A single file, to a new name, both ways.
  assert.equal(
    (await a.tsvm("cp", join(src, "sub", "script.sh"), `agent-cp:${join(dir, "vm", "renamed")}`)).code,
    0,
  );
  assert.equal(await readFile(join(dir, "vm", "renamed"), "utf8"), "#!/bin/sh\necho ok\n");
  assert.equal((await a.tsvm("cp", `agent-cp:${join(dir, "vm", "renamed")}`, join(dir, "host"))).code, 0);
  assert.equal((await stat(join(dir, "host", "renamed"))).mode & 0o7777, 0o751);
  assert.deepEqual(await leftovers(dir), []);
});

test("cp's bad inputs: one line each, exit 1 (usage: 2), nothing created", async () => {
  const cases: [string[], RegExp, number][] = [
    [[join(dir, "nope"), `agent-cp:${dir}`], /nope: no such file or directory$/, 1],
    [[`agent-cp:${join(dir, "nope")}`, dir], /nope: no such file or directory in the VM$/, 1],
    [
      [`agent-cp:${join(dir, "vm")}`, join(dir, "missing", "x")],
      /the directory .*missing does not exist$/,
      1,
    ],
    [
      [join(dir, "host"), `agent-cp:${join(dir, "missing", "x")}`],
      /the directory .*missing does not exist in the VM$/,
      1,
    ],
    [[`agent-cp:${dir}`, `agent-cp:${dir}`], /not between two VMs/, 2],
    [[dir, dir], /one of the two paths must be VM:PATH/, 2],
    [[dir, "nosuch:/tmp"], /nosuch/, 1],
  ];
  for (const [args, message, code] of cases) {
    const r = await a.tsvm("cp", ...args);
    assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
    assert.match(r.stderr.trim(), message);
  }
  await assert.rejects(stat(join(dir, "missing")));
  assert.deepEqual(await leftovers(dir), []);
  const help = await a.tsvm("cp", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /Usage: tsvm cp/);
});

test("a file that changes size mid-copy fails the copy either way, and nothing is left", async () => {
  const src = join(dir, "host", "shrinking");
  await mkdir(src);
  await writeFile(join(src, "a.bin"), randomBytes(96 * 1048576));
  const into = await cpWhile(a.home, [src, `agent-cp:${join(dir, "vm", "in")}`], () =>
    truncate(join(src, "a.bin"), 1000),
  );
  assert.equal(into.code, 1, into.stderr);
  assert.match(into.stderr, /shrinking: .*(EOF|changed|size)/i);
  await assert.rejects(stat(join(dir, "vm", "in")), "nothing at the destination in the VM");

  const vmSide = join(dir, "vm", "shrinking");
  await mkdir(vmSide);
  await writeFile(join(vmSide, "a.bin"), randomBytes(96 * 1048576));
  const out = await cpWhile(a.home, [`agent-cp:${vmSide}`, join(dir, "host", "out")], () =>
    truncate(join(vmSide, "a.bin"), 1000),
  );
  assert.equal(out.code, 1, out.stderr);
  await assert.rejects(stat(join(dir, "host", "out")), "nothing at the destination on the host");
  assert.deepEqual(await leftovers(dir), []);
});

test("a file that vanishes mid-copy (deleted before its turn) fails the copy either way, naming it; nothing is left", async () => {
  // Files between the large one and the one deleted: the host's tar reads a few entries ahead, and a file
  // it has read already is copied as it was (deleting it afterwards is no loss).
  const tree = async (root: string) => {
    await mkdir(root);
    await writeFile(join(root, "a.bin"), randomBytes(96 * 1048576));
    for (let i = 1; i <= 8; i++) await writeFile(join(root, `m${i}`), `${i}\n`);
    await writeFile(join(root, "z.bin"), "gone soon\n");
  };
  const src = join(dir, "host", "vanishing");
  await tree(src);
  const into = await cpWhile(a.home, [src, `agent-cp:${join(dir, "vm", "in-vanishing")}`], () =>
    rm(join(src, "z.bin")),
  );
  assert.equal(into.code, 1, into.stderr);
  assert.match(into.stderr, /z\.bin/);
  await assert.rejects(stat(join(dir, "vm", "in-vanishing")), "nothing at the destination in the VM");

  const vmSide = join(dir, "vm", "vanishing");
  await tree(vmSide);
  const out = await cpWhile(a.home, [`agent-cp:${vmSide}`, join(dir, "host", "out-vanishing")], () =>
    rm(join(vmSide, "z.bin")),
  );
  assert.equal(out.code, 1, out.stderr);
  assert.match(out.stderr, /z\.bin/);
  await assert.rejects(stat(join(dir, "host", "out-vanishing")), "nothing at the destination on the host");
  assert.deepEqual(await leftovers(dir), []);
});

test("cp ended by SIGINT or SIGTERM mid-copy, either way: it dies of the signal and leaves nothing", async () => {
  // Large enough that the copy is still under way when the signal comes (progress needs its true size:
  // the guest's side measures a file with du, which counts a sparse file's blocks, not its length).
  const src = join(dir, "host", "huge.bin");
  await writeFile(src, randomBytes(96 * 1048576));
  const vmSide = join(dir, "vm", "huge.bin");
  await writeFile(vmSide, await readFile(src));
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    const out = await cpWhile(a.home, [`agent-cp:${vmSide}`, join(dir, "host", "out.bin")], async (cp) =>
      cp.kill(signal),
    );
    assert.equal(out.signal, signal, `out: ${out.stderr}`);
    await assert.rejects(stat(join(dir, "host", "out.bin")), "nothing at the destination on the host");
    const into = await cpWhile(a.home, [src, `agent-cp:${join(dir, "vm", "in.bin")}`], async (cp) =>
      cp.kill(signal),
    );
    assert.equal(into.signal, signal, `in: ${into.stderr}`);
    await assert.rejects(stat(join(dir, "vm", "in.bin")), "nothing at the destination in the VM");
    assert.deepEqual(await leftovers(dir), [], `after ${signal}`);
  }
});
