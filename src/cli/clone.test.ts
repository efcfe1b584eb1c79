// `tsvm clone` as a user runs it (bin/tsvm, a real daemon, the API's insert with sourceInstance), on VMs
// hosting the counting stand-in guest: JSON and table output, identity in describe, and each refusal in one
// line with its exit status.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

let installation: CliInstallation;
const tsvm = (...args: string[]) => installation.tsvm(...args);

before(async () => {
  installation = await cliInstallation("cli-clone");
});

after(async () => {
  for (const vm of ["src", "c1", "c2"]) await tsvm("delete", vm);
  await installation.remove();
});

test("tsvm clone: a new VM with a new identity, as JSON and as a line; refusals in one line", async () => {
  assert.equal((await tsvm("create", "src", "--machine-type", "t1-micro")).code, 0);
  const running = await tsvm("clone", "src", "c1");
  assert.equal(running.code, 1);
  assert.match(
    running.stderr,
    /^tsvm clone: cannot clone VM 'src' while it is RUNNING; clone is allowed only when the VM is TERMINATED or SUSPENDED$/m,
  );
  assert.equal((await tsvm("stop", "src")).code, 0);

  const json = await tsvm("clone", "src", "c1", "--cpu-weight", "50", "--format", "json");
  assert.equal(json.code, 0, json.stderr);
  const c1 = JSON.parse(json.stdout) as {
    name: string;
    status: string;
    machineType: string;
    cpuWeight: number;
    identity: { hostname: string; machineId: string };
  };
  assert.deepEqual([c1.name, c1.status, c1.machineType, c1.cpuWeight], ["c1", "RUNNING", "t1-micro", 50]);
  assert.equal(c1.identity.hostname, "c1");
  assert.match(c1.identity.machineId, /^[0-9a-f]{32}$/);

  const line = await tsvm("clone", "src", "c2");
  assert.equal(line.code, 0, line.stderr);
  assert.match(line.stdout, /^Cloned src as c2 \(hostname c2, machine id [0-9a-f]{32}\): RUNNING\n$/);
  const described = await tsvm("describe", "c2");
  assert.match(described.stdout, /^hostname: +c2$/m);
  assert.match(described.stdout, /^machine id: +[0-9a-f]{32}$/m);
  assert.ok(!described.stdout.includes(c1.identity.machineId));

  const taken = await tsvm("clone", "src", "c1");
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, /^tsvm clone: .*'c1'.*exists/m);
  const missing = await tsvm("clone", "nope", "c3");
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /^tsvm clone: .*'nope'/m);
  const noSnapshot = await tsvm("clone", "src", "c3", "--snapshot", "nope");
  assert.equal(noSnapshot.code, 1);
  assert.match(
    noSnapshot.stderr,
    /^tsvm clone: insert of 'c3' failed: the VM 'src' has no snapshot 'nope'$/m,
  );
  assert.equal((await tsvm("list", "--format", "json")).stdout.includes('"c3"'), false);

  const usage = await tsvm("clone", "src");
  assert.equal(usage.code, 2);
  assert.match(
    usage.stderr,
    /^tsvm clone: give the source VM's name and the new VM's name; see 'tsvm clone --help'$/m,
  );
  const help = await tsvm("clone", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: tsvm clone SRC NEW \[options\]/);
});
