// `tsvm delete NAME` as a user runs it (bin/tsvm, a real daemon started on demand) on a VM whose vm.json is
// unusable: listed as unreachable, then deleted with its directory.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");
const home = await mkdtemp(join(tmpdir(), "tsvm-cli-corrupt-"));

function tsvm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      join(root, "bin/tsvm"),
      args,
      { env: { ...process.env, TSVM_HOME: home }, timeout: 120_000 },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === "number" ? error.code : 1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

after(async () => {
  await tsvm("daemon", "stop");
  await rm(home, { recursive: true, force: true });
});

test("tsvm delete removes a VM whose definition is corrupt", async () => {
  await mkdir(join(home, "vms/broken"), { recursive: true });
  await writeFile(join(home, "vms/broken/vm.json"), '{"formatVersion": 1, "name": ');
  await writeFile(join(home, "vms/broken/disk.img"), Buffer.alloc(4096));
  const listed = await tsvm("list");
  assert.equal(listed.code, 0, listed.stderr);
  assert.match(
    listed.stderr,
    /broken: the VM definition .* is unusable.*\('tsvm delete broken' removes it\)/,
  );
  const deleted = await tsvm("delete", "broken");
  assert.equal(deleted.code, 0, deleted.stderr);
  assert.match(deleted.stdout, /^Deleted broken\.$/m);
  assert.deepEqual(await readdir(join(home, "vms")), []);
  const again = await tsvm("delete", "broken");
  assert.equal(again.code, 1);
  assert.match(again.stderr, /the VM 'broken' was not found/);
  const after = await tsvm("list");
  assert.doesNotMatch(after.stderr, /broken/);
});
