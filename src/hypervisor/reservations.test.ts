// A start's or resume's reservation of CPU and memory and the VM's own status never count the VM twice:
// host usage read at the very moment the VM turns PROVISIONING (an event listener runs in that turn, as a
// request's continuation may) shows the VM once. The api storm saw 352 of 320 MiB "used" in that window.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "./fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "./hypervisor.ts";

let hv: Hypervisor | undefined;
let home: string | undefined;
after(async () => {
  if (hv) await closeAndKill(hv);
  if (home) await rm(home, { recursive: true, force: true });
});

async function ok(op: { id: string }): Promise<void> {
  const done = await hv!.waitOperation(op.id, 120_000);
  assert.equal(done.error, null, done.error?.message);
}

test("a VM turning PROVISIONING by start or resume is counted once in host usage", async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-reservations-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(8192, 7));
  hv = await openFixtureHypervisor(home, join(home, "template.img"), { diskAvailableMiB: 1000 });
  await ok(hv.insert({ name: "vm", machineType: "t1-micro" }));
  const { cpus, memoryMiB } = hv.get("vm");
  const seen: string[] = [];
  hv.events.subscribe((e) => {
    if (e.to === "PROVISIONING") {
      const { usage } = hv!.capacity();
      seen.push(`${e.message}: ${usage.vcpus} vCPUs, ${usage.memoryMiB} MiB`);
    }
  });
  await ok(hv.stop("vm"));
  await ok(hv.start("vm"));
  await ok(hv.suspend("vm"));
  await ok(hv.resume("vm"));
  assert.deepEqual(seen, [
    `start: resources reserved: ${cpus} vCPUs, ${memoryMiB} MiB`,
    `resume: resources reserved: ${cpus} vCPUs, ${memoryMiB} MiB`,
  ]);
});
