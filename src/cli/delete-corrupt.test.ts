// `tsvm delete NAME` as a user runs it (bin/tsvm, a real daemon started on demand) on a VM whose vm.json is
// unusable: listed as unreachable, then deleted with its directory.
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, test } from "node:test";
import { cliInstallation } from "./fixtures/cli-installation.ts";

const installation = await cliInstallation("cli-corrupt");
const { home, tsvm } = installation;

after(() => installation.remove());

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
