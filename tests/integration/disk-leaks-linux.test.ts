// A VMM killed (kill -9) while its Linux guest writes its disk, under the daemon: the daemon sees the VMM
// die and gives back the clusters the VMM's qcow2 writer had reserved, so `qemu-img check` finds the disk
// exact (exit 0, no leaks) before anyone restarts it; the VM then boots again with its data.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { statSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { linuxVmFixture, noImage, until } from "./linux-vm-fixture.ts";

const { home, client, tsvm, prompts, typeLine } = await linuxVmFixture("disk-leaks");

test("a VMM killed mid-write: the daemon reclaims its disk's leaked clusters, qemu-img check exits 0", {
  skip: noImage,
}, async () => {
  const created = await tsvm("create", "writer", "--memory", "256M", "--no-automatic-restart");
  assert.equal(created.code, 0, created.stderr);
  await prompts("writer", 1);
  const disk = join(home, "vms", "writer", "disk.qcow2");
  const start = statSync(disk).size;
  await typeLine(
    "writer",
    "echo kept >/kept && sync && (while true; do dd if=/dev/urandom of=/big bs=64k count=200 2>/dev/null; sync; done) & echo writing",
    "writing",
  );
  await until("the disk to grow", async () => (statSync(disk).size > start + (8 << 20) ? true : undefined));
  const vm = await client.getInstance("writer");
  process.kill(vm.vmmPid!, "SIGKILL");
  await until("the VM to be TERMINATED", async () =>
    (await client.getInstance("writer")).status === "TERMINATED" ? true : undefined,
  );
  const check = spawnSync("qemu-img", ["check", disk], { encoding: "utf8" });
  assert.equal(check.status, 0, `qemu-img check after the daemon handled the crash:\n${check.stdout}`);
  const events = (await client.listEvents(0, "writer")).items.map((e) => e.message);
  assert.ok(
    events.some((m) => /gave back \d+ clusters its VMM had reserved/.test(m)),
    `no reclaim event in:\n${events.join("\n")}`,
  );
  // It boots again, and what the guest synced before the kill is there.
  assert.equal((await tsvm("start", "writer")).code, 0);
  await prompts("writer", 2);
  await typeLine("writer", "cat /kept", "kept");
});
