// A real Linux guest on a cluster's shared storage (docs/cluster.md "Failover"): one real etcd, two daemons
// sharing one directory, the default image. Its whole host killed with SIGKILL, the guest boots again on
// the other host from the same disk: what it wrote there before is there, in a new boot, and one VMM alone
// holds the disk.
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { lockHolders } from "../../src/engines/backends/file-lock.ts";
import { processRunning } from "../../src/hypervisor/cluster/lease-fence.ts";
import { TestCluster, waitFor } from "../../src/hypervisor/fixtures/test-cluster.ts";
import { AGENT_WAIT_SECONDS, BOOT_TIMEOUT_MS, noImage } from "./linux-vm-fixture.ts";

/** Short leases, as in src/cli/failover.test.ts: DOWN and the restart elsewhere come within seconds. */
const LEASE_TTL_SECONDS = 10;
let cluster: TestCluster;
const vmmPids: number[] = [];

before(async () => {
  if (noImage) return;
  cluster = await TestCluster.start({
    leaseTtlSeconds: LEASE_TTL_SECONDS,
    sharedStorage: true,
    config: () => ({ stopTimeoutMs: 5000 }),
    hosts: ["h1", "h2"],
  });
});

after(async () => {
  if (!cluster) return;
  await cluster.on("h2", "delete", "phoenix");
  for (const pid of vmmPids) if (processRunning(pid)) process.kill(pid, "SIGKILL");
  await cluster.stop();
});

/** `sh -c SCRIPT` in the guest through host `via`'s API, waiting for its agent; its stdout's lines. */
async function guest(via: string, script: string): Promise<string[]> {
  return (await cluster.guestShell(via, "phoenix", script, AGENT_WAIT_SECONDS)).trim().split("\n");
}

test("a Linux guest on shared storage boots on another host from its disk when its host is killed", {
  skip: noImage,
  timeout: 2 * BOOT_TIMEOUT_MS + 5 * 60_000,
}, async () => {
  const created = await cluster.on(
    "h2",
    "create",
    "phoenix",
    "--host",
    "h1",
    "--shared-storage",
    "--machine-type",
    "t1-micro",
  );
  assert.equal(created.code, 0, created.stderr);
  const first = await cluster.json("h2", "describe", "phoenix");
  vmmPids.push(first.vmmPid);
  const [bootBefore] = await guest(
    "h2",
    "echo written-on-h1 > /root/mark; sync; cat /proc/sys/kernel/random/boot_id",
  );

  const h1 = cluster.hosts.get("h1")!;
  const daemonPid = JSON.parse(readFileSync(join(h1.home, "daemon.json"), "utf8")).pid as number;
  for (const pid of [daemonPid, first.vmmPid]) process.kill(pid, "SIGKILL");
  h1.process.kill("SIGKILL");
  await h1.exited;
  const moved = await waitFor(
    "phoenix to run on h2",
    async () => {
      // Until h1 shows DOWN, h2 forwards a describe to it (host-unreachable): tried again.
      const d = await cluster.on("h2", "describe", "phoenix", "--format", "json");
      const v = d.code === 0 ? JSON.parse(d.stdout) : undefined;
      return v && v.status === "RUNNING" && v.host === "h2" && v.vmmPid !== null ? v : undefined;
    },
    120_000,
  );
  vmmPids.push(moved.vmmPid);
  assert.match(
    moved.statusMessage + JSON.stringify(moved.history),
    /restarted on host 'h2' \(its disk is on the cluster's shared storage\)/,
  );
  const [mark, bootAfter] = await guest("h2", "cat /root/mark; cat /proc/sys/kernel/random/boot_id");
  assert.equal(mark, "written-on-h1", "what the guest wrote on h1 is on its disk on h2");
  assert.notEqual(bootAfter, bootBefore, "a fresh boot");
  assert.deepEqual(lockHolders(join(cluster.sharedDir!, "vms", "phoenix", "disk.qcow2")), [moved.vmmPid]);
});
