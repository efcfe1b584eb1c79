// End to end with real Linux through bin/tsvm: clones get a new identity. Two clones of one memory snapshot
// resume where their source was and differ in hostname, /etc/machine-id and /dev/urandom; a clone of a
// stopped VM boots from the source's disk and takes its own identity at that boot. The clones' cost on disk
// is measured with du.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { join } from "node:path";
import { test } from "node:test";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage } from "./linux-vm-fixture.ts";

const { home, tsvm, exec, booted } = await linuxVmFixture("clone-linux");

const WHO =
  "hostname; cat /etc/hostname /etc/machine-id; head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'";

/** `tsvm clone` with JSON output, which must succeed: the new VM as describe shows it. */
async function clone(...args: string[]) {
  const r = await tsvm("clone", ...args, "--format", "json");
  assert.equal(r.code, 0, `tsvm clone ${args.join(" ")}: ${r.stderr}`);
  return JSON.parse(r.stdout) as {
    name: string;
    status: string;
    identity: { hostname: string; machineId: string };
  };
}

/** Kilobytes allocated under `path` (du -sk: blocks, not apparent sizes). */
function du(path: string): number {
  return Number(execFileSync("du", ["-sk", path], { encoding: "utf8" }).split("\t")[0]);
}

test("clones of a memory snapshot resume with new identities and different randomness; a clone of a stopped VM boots as itself", {
  skip: noImage,
  timeout: 4 * BOOT_TIMEOUT_MS,
}, async () => {
  assert.equal((await tsvm("create", "src", "--machine-type", "t1-micro")).code, 0);
  await booted("src");
  // A process started before the snapshot: it runs on in each clone.
  await exec("src", "sleep 100000 >/dev/null 2>&1 & echo $! > /root/sleeper");
  const snap = await tsvm("snapshot", "create", "src", "mem", "--format", "json");
  assert.equal(snap.code, 0, snap.stderr);
  assert.equal((await tsvm("stop", "src")).code, 0);

  const seen: Record<string, string[]> = {};
  for (const name of ["c1", "c2"]) {
    const vm = await clone("src", name, "--snapshot", "mem");
    assert.equal(vm.status, "RUNNING");
    assert.equal(vm.identity.hostname, name);
    seen[name] = (await exec(name, `${WHO}; echo; kill -0 "$(cat /root/sleeper)" && echo sleeper-alive`))
      .trim()
      .split("\n");
    assert.deepEqual(seen[name]!.slice(0, 3), [name, name, vm.identity.machineId]);
    assert.equal(seen[name]![4], "sleeper-alive", "the process started before the snapshot runs on");
    // Only one clone runs at a time: the host is shared.
    assert.equal((await tsvm("stop", name)).code, 0);
  }
  assert.notEqual(seen.c1![2], seen.c2![2]);
  assert.match(seen.c1![3]!, /^[0-9a-f]{64}$/);
  assert.notEqual(seen.c1![3], seen.c2![3], "two clones of one memory image read different /dev/urandom");
  const vmmLog = execFileSync("cat", [join(home, "vms/c1/vmm.log")], { encoding: "utf8" });
  assert.match(
    vmmLog,
    /after the restore: hostname c1, machine id [0-9a-f]{32}, MACs 02(?::[0-9a-f]{2}){5} with DHCP restarted, kernel random number generator reseeded/,
  );

  // A clone of the stopped VM boots from its disk, where /etc/hostname says "src": rcS gives it its own.
  const cold = await clone("src", "c3");
  await booted("c3");
  const [hostname, etcHostname, machineId] = (await exec("c3", WHO)).trim().split("\n");
  assert.deepEqual([hostname, etcHostname, machineId], ["c3", "c3", cold.identity.machineId]);
  const src = JSON.parse((await tsvm("describe", "src", "--format", "json")).stdout);
  assert.notEqual(machineId, src.identity.machineId);

  const sizes = Object.fromEntries(["src", "c1", "c2", "c3"].map((vm) => [vm, du(join(home, "vms", vm))]));
  process.stderr.write(
    `clone-linux: KiB on disk per VM directory (du -sk): ${JSON.stringify(sizes)}; disks/ ${du(join(home, "disks"))} KiB\n`,
  );
});
