// tsvm export / import end to end through bin/tsvm and two daemons (two TSVM_HOMEs, counting stand-in
// guests): `export - | import -` moves a suspended VM, which resumes where it was; progress is shown when
// asked; a bad file, a taken name and a full disk during an export each give one line and change nothing.
import assert from "node:assert/strict";
import { execFile, execFileSync } from "node:child_process";
import { mkdir, readdir, readFile, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

const bin = join(dirname(fileURLToPath(import.meta.url)), "../../bin/tsvm");
let a: CliInstallation;
let b: CliInstallation;
before(async () => {
  a = await cliInstallation("export-a");
  b = await cliInstallation("export-b");
});
after(async () => {
  await a.remove();
  await b.remove();
});

function shell(script: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("bash", ["-c", `set -o pipefail; ${script}`], { timeout: 120_000 }, (error, stdout, stderr) =>
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

test("export - | import - moves a suspended VM between two homes, with progress; it resumes where it was", async () => {
  assert.equal((await a.tsvm("create", "web", "--machine-type", "t1-micro")).code, 0);
  await new Promise((r) => setTimeout(r, 300));
  assert.equal((await a.tsvm("suspend", "web")).code, 0);
  const saved = JSON.parse(await readFile(join(a.home, "vms/web/state/counter.json"), "utf8"))
    .count as number;

  const moved = await shell(
    `TSVM_HOME=${a.home} ${bin} export web - --progress | TSVM_HOME=${b.home} ${bin} import - --progress`,
  );
  assert.equal(moved.code, 0, moved.stderr);
  assert.equal(moved.stdout, "Imported web (SUSPENDED).\n");
  assert.match(moved.stderr, /exporting web: [\d.]+ MiB of [\d.]+ MiB \(100%\)/);
  assert.match(moved.stderr, /importing standard input: [\d.]+ MiB/);
  assert.equal((await a.tsvm("describe", "web", "--format", "json")).stdout.includes('"SUSPENDED"'), true);

  assert.equal((await b.tsvm("resume", "web")).code, 0);
  const logs = await b.tsvm("logs", "web");
  assert.match(logs.stdout, new RegExp(`^restore at count ${saved}\\n`));
  const ids = await Promise.all(
    [a, b].map(async (i) => JSON.parse((await i.tsvm("describe", "web", "--format", "json")).stdout).id),
  );
  assert.equal(ids[0], ids[1]);
});

test("export to a file, import under another name; a taken name, a damaged file and --help", async () => {
  const file = join(a.home, "web.tsvm");
  const exported = await a.tsvm("export", "web", file);
  assert.equal(exported.code, 0, exported.stderr);
  assert.equal(exported.stderr, "", "no progress when stderr is not a terminal");
  assert.deepEqual(
    (await readdir(a.home)).filter((n) => n.includes("partial")),
    [],
    "no temp file left beside it",
  );
  const taken = await b.tsvm("import", file);
  assert.equal(taken.code, 1);
  assert.equal(taken.stderr, "tsvm import: the VM 'web' already exists\n");
  const renamed = await b.tsvm("import", file, "--name", "web-copy", "--format", "json");
  assert.equal(renamed.code, 0, renamed.stderr);
  assert.equal(JSON.parse(renamed.stdout).status, "SUSPENDED");

  const bytes = await readFile(file);
  const damaged = join(a.home, "damaged.tsvm");
  await writeFile(damaged, bytes.subarray(0, bytes.length - 100));
  const vmsBefore = await readdir(join(b.home, "vms"));
  const bad = await b.tsvm("import", damaged, "--name", "never");
  assert.equal(bad.code, 1);
  assert.match(
    bad.stderr,
    /^tsvm import: the export file is unusable: it ends early, in .* the file is truncated\n$/,
  );
  const foreign = await b.tsvm("import", join(a.home, "config.json"), "--name", "never");
  assert.equal(foreign.code, 1);
  assert.match(foreign.stderr, /^tsvm import: the export file is unusable: it is not a tsvm export file/);
  assert.deepEqual(await readdir(join(b.home, "vms")), vmsBefore);

  const running = await a.tsvm("create", "live", "--machine-type", "t1-micro");
  assert.equal(running.code, 0);
  const refused = await a.tsvm("export", "live", join(a.home, "live.tsvm"));
  assert.equal(refused.code, 1);
  assert.equal(
    refused.stderr,
    "tsvm export: cannot export VM 'live' while it is RUNNING: suspend it (its memory goes along) or stop it first\n",
  );
  await assert.rejects(stat(join(a.home, "live.tsvm")), { code: "ENOENT" });

  assert.match((await a.tsvm("export", "--help")).stdout, /Usage: tsvm export NAME FILE\|-/);
  assert.match((await a.tsvm("import", "--help")).stdout, /Usage: tsvm import FILE\|-/);
  assert.equal((await a.tsvm("export", "web")).code, 2);
});

test("import of a VM with a card on a network this home lacks: one line, or --drop-missing-networks", async () => {
  assert.equal((await a.tsvm("network", "create", "lab")).code, 0);
  const created = await a.tsvm("create", "lan", "--machine-type", "t1-micro", "--network", "lab", "--no-nat");
  assert.equal(created.code, 0, created.stderr);
  assert.equal((await a.tsvm("stop", "lan")).code, 0);
  const file = join(a.home, "lan.tsvm");
  assert.equal((await a.tsvm("export", "lan", file)).code, 0);

  const refused = await b.tsvm("import", file);
  assert.equal(refused.code, 1);
  assert.match(
    refused.stderr,
    /^tsvm import: the exported VM 'lan' has a card on the network 'lab', which this host does not have: create it first \(tsvm network create lab\), or import with --drop-missing-networks to leave such cards out; nothing was created\n$/,
  );
  assert.equal((await b.tsvm("describe", "lan")).code, 1, "nothing was created");
  const dropped = await b.tsvm("import", file, "--drop-missing-networks", "--format", "json");
  assert.equal(dropped.code, 0, dropped.stderr);
  assert.deepEqual(JSON.parse(dropped.stdout).networkInterfaces, []);
  assert.match((await b.tsvm("import", "--help")).stdout, /--drop-missing-networks/);
});

test("the disk filling up during an export: one line, the partial file removed, the VM untouched (tmpfs; needs root)", async () => {
  // 6 MiB of random bytes in its saved state make an export bigger than the 4 MiB filesystem it goes to.
  const filler = join(a.home, "vms/web/state/filler.bin");
  execFileSync("dd", ["if=/dev/urandom", `of=${filler}`, "bs=1M", "count=6", "status=none"]);
  const disk = await readFile(join(a.home, "vms/web/disk.qcow2"));
  const mountPoint = join(a.home, "small-fs");
  await mkdir(mountPoint);
  execFileSync("mount", ["-t", "tmpfs", "-o", "size=4m", "tmpfs", mountPoint]);
  try {
    const full = await a.tsvm("export", "web", join(mountPoint, "web.tsvm"));
    assert.equal(full.code, 1);
    assert.equal(
      full.stderr,
      `tsvm export: could not write ${join(mountPoint, "web.tsvm")}: no space left on device (ENOSPC); ` +
        "the partial file was removed; the VM 'web' is unchanged\n",
    );
    assert.deepEqual(await readdir(mountPoint), []);
  } finally {
    execFileSync("umount", ["-l", mountPoint]);
  }
  assert.ok((await readFile(join(a.home, "vms/web/disk.qcow2"))).equals(disk));
  assert.equal((await stat(filler)).size, 6 << 20);
  assert.match((await a.tsvm("describe", "web", "--format", "json")).stdout, /"status": "SUSPENDED"/);
  // The daemon let go of the VM once the client went away: it resumes.
  assert.equal((await a.tsvm("resume", "web")).code, 0);
});
