// `tsvm machine-types` and `tsvm set-machine-type` as a user runs them (bin/tsvm, a real daemon), on VMs
// hosting the counting stand-in guest (engine "fixture" in the temp data directory's config.json).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

let installation: CliInstallation;
const tsvm = (...args: string[]) => installation.tsvm(...args);

before(async () => {
  installation = await cliInstallation("cli-machine-type");
});

after(async () => {
  await tsvm("delete", "mt");
  await installation.remove();
});

test("tsvm machine-types lists the predefined types as a table and as JSON", async () => {
  const json = await tsvm("machine-types", "--format", "json");
  assert.equal(json.code, 0, json.stderr);
  const types = JSON.parse(json.stdout) as Array<{ name: string; cpus: number; memoryMiB: number }>;
  assert.deepEqual(
    types.find((t) => t.name === "t1-micro"),
    { name: "t1-micro", cpus: 1, memoryMiB: 128, description: "1 vCPU, 128 MiB" },
  );
  const table = await tsvm("machine-types");
  assert.equal(table.code, 0, table.stderr);
  const lines = table.stdout.trimEnd().split("\n");
  assert.match(lines[0]!, /^NAME +CPUS +MEMORY +DESCRIPTION$/);
  assert.equal(lines.length, types.length + 1);
  assert.match(table.stdout, /^t1-micro +1 +128 MiB +1 vCPU, 128 MiB$/m);
});

test("tsvm set-machine-type changes a TERMINATED VM's type and refuses a RUNNING one in one line", async () => {
  const created = await tsvm("create", "mt", "--machine-type", "t1-small");
  assert.equal(created.code, 0, created.stderr);

  const refused = await tsvm("set-machine-type", "mt", "--machine-type", "t1-micro");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /^tsvm set-machine-type: .*RUNNING.*$/m);

  assert.equal((await tsvm("stop", "mt")).code, 0);
  const changed = await tsvm("set-machine-type", "mt", "--machine-type", "t1-micro");
  assert.equal(changed.code, 0, changed.stderr);
  assert.equal(changed.stdout, "mt is now t1-micro (1 vCPU, 128 MiB).\n");

  const custom = await tsvm("set-machine-type", "mt", "custom-2-512", "--format", "json");
  assert.equal(custom.code, 0, custom.stderr);
  const vm = JSON.parse(custom.stdout) as { machineType: string; cpus: number; memoryMiB: number };
  assert.deepEqual([vm.machineType, vm.cpus, vm.memoryMiB], ["custom-2-512", 2, 512]);

  const bad = await tsvm("set-machine-type", "mt", "t1-enormous");
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /^tsvm set-machine-type: .*t1-enormous.*$/m);
});
