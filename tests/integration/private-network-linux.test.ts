// End to end with real Linux through bin/tsvm: private networks. Two VMs on `lab` (no NAT card: nothing
// reaches the host's network stack) get their addresses from the switch's DHCP and fetch a page from each
// other by VM name (busybox httpd and wget); a VM on another network reaches neither, by name or by
// address; a guest flooding the network with broadcasts leaves its neighbours' traffic intact, its excess
// dropped by the switch's rate limit and counted; a guest's own reboot gets its hosts block back.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, until } from "./linux-vm-fixture.ts";

const { home, tsvm, exec, booted } = await linuxVmFixture("private-network-linux");
// An interpreted guest sends a few dozen frames a second, far below the switch's default flood limit
// (200/s): the limit is lowered so that a guest's flood meets it.
await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: 5000, switchFloodRate: 10 }));

interface NetworkView {
  members: Array<{ instance: string; ipv4: string }>;
  switchRunning: boolean;
  ports: Array<{ vmName: string; rxFrames: number; floodDropped: number; forgedDropped: number }>;
}

async function network(name: string): Promise<NetworkView> {
  const r = await tsvm("network", "describe", name, "--format", "json");
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as NetworkView;
}

/** Serves a page naming `vm` on port 80 of its guest (busybox httpd, in the background). */
async function serve(vm: string): Promise<void> {
  await exec(
    vm,
    `mkdir -p /srv/www && echo "page of ${vm}" > /srv/www/index.html && httpd -p 80 -h /srv/www`,
  );
}

/** The address eth0 has in `vm`'s guest (its card on the private network: the only one). */
async function addressOf(vm: string): Promise<string | undefined> {
  const out = await exec(vm, "ip -4 -o addr show dev eth0 || true");
  return /inet (\d+\.\d+\.\d+\.\d+)\//.exec(out)?.[1];
}

test("VMs on one private network reach each other by name; another network's VM reaches neither", {
  skip: noImage,
  timeout: 4 * BOOT_TIMEOUT_MS,
}, async () => {
  assert.equal((await tsvm("network", "create", "lab")).code, 0);
  assert.equal((await tsvm("network", "create", "other")).code, 0);
  const refused = await tsvm("create", "x", "--network", "nowhere", "--no-nat");
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /the network 'nowhere' was not found/);

  for (const [vm, net] of [
    ["a", "lab"],
    ["b", "lab"],
    ["c", "other"],
  ] as const) {
    const r = await tsvm("create", vm, "--machine-type", "t1-micro", "--network", net, "--no-nat");
    assert.equal(r.code, 0, r.stderr);
  }
  for (const vm of ["a", "b", "c"]) await booted(vm);

  const lab = await network("lab");
  assert.ok(lab.switchRunning);
  assert.deepEqual(
    lab.members.map((m) => `${m.instance} ${m.ipv4}`),
    ["a 10.77.0.2", "b 10.77.0.3"],
  );
  // Each guest's DHCP lease is the address its record holds.
  for (const [vm, ip] of [
    ["a", "10.77.0.2"],
    ["b", "10.77.0.3"],
    ["c", "10.77.1.2"],
  ] as const)
    assert.equal(await until(`${vm}'s DHCP lease`, () => addressOf(vm)), ip);

  await serve("a");
  await serve("b");
  // The hosts blocks are written through the agents once each member runs.
  await until("a's name in b's /etc/hosts", async () =>
    (await exec("b", "cat /etc/hosts")).includes("10.77.0.2 a") ? true : undefined,
  );
  assert.equal((await exec("b", "wget -q -T 20 -O - http://a/")).trim(), "page of a");
  await until("b's name in a's /etc/hosts", async () =>
    (await exec("a", "cat /etc/hosts")).includes("10.77.0.3 b") ? true : undefined,
  );
  assert.equal((await exec("a", "wget -q -T 20 -O - http://b/")).trim(), "page of b");
  const hostsOfA = await exec("a", "cat /etc/hosts");
  assert.match(hostsOfA, /^# tsvm network begin\n10\.77\.0\.3 b\n# tsvm network end$/m);
  assert.doesNotMatch(hostsOfA, / c$/m, "c is on another network");

  // c has no route to lab (no router on either network), and lab's names mean nothing to it. Even with a
  // route forced onto its card, the switch of `other` has no port for lab's addresses.
  for (const url of ["http://a/", "http://10.77.0.2/"]) {
    const r = await tsvm("exec", "c", "--", "sh", "-c", `wget -q -T 5 -O - ${url}`);
    assert.notEqual(r.code, 0, `c fetched ${url}: ${r.stdout}`);
  }
  await exec("c", "ip route add 10.77.0.0/24 dev eth0 || true");
  const forced = await tsvm("exec", "c", "--", "sh", "-c", "wget -q -T 5 -O - http://10.77.0.2/");
  assert.notEqual(forced.code, 0, `c fetched a's page over a forced route: ${forced.stdout}`);

  // b floods lab with broadcast pings for a minute (8 at once, each every millisecond it can; a guest
  // answers no broadcast echo, so the flood is b's alone); a and b still talk, and the switch dropped b's
  // excess.
  await exec(
    "b",
    "for i in 1 2 3 4 5 6 7 8; do (timeout 60 ping -q -i 0.001 10.77.0.255 >/dev/null 2>&1 &); done; echo started",
  );
  await until(
    "the switch to drop b's flood",
    async () => {
      const port = (await network("lab")).ports.find((p) => p.vmName === "b");
      return port && port.floodDropped > 0 ? port : undefined;
    },
    120_000,
  );
  for (let i = 0; i < 3; i++)
    assert.equal((await exec("a", "wget -q -T 20 -O - http://b/")).trim(), "page of b");
  const flooded = (await network("lab")).ports.find((p) => p.vmName === "b")!;
  assert.ok(flooded.floodDropped > 0 && flooded.forgedDropped === 0, JSON.stringify(flooded));

  // The switch outlives the daemon: stopped and started again, the same switch carries a and b's traffic.
  const switchPid = JSON.parse(await readFile(join(home, "networks/lab/switch.json"), "utf8")).pid as number;
  assert.equal((await tsvm("daemon", "stop")).code, 0);
  assert.equal((await exec("b", "wget -q -T 20 -O - http://a/")).trim(), "page of a");
  assert.equal(JSON.parse(await readFile(join(home, "networks/lab/switch.json"), "utf8")).pid, switchPid);
  process.kill(switchPid, 0);

  // A network with cards cannot be deleted; the VMs named.
  const inUse = await tsvm("network", "delete", "lab");
  assert.equal(inUse.code, 1);
  assert.match(inUse.stderr, /the network 'lab' has cards of the VMs 'a', 'b'; delete those VMs first/);

  // A guest that reboots by itself (no status changes) gets its block again once its agent is back. Its
  // disk keeps the last block, so the block is taken out first: only the daemon can put it back.
  await exec(
    "a",
    "sed -i '/^# tsvm network begin$/,/^# tsvm network end$/d' /etc/hosts; (sleep 1; reboot) </dev/null >/dev/null 2>&1 &",
  );
  await until("a's block written again after its reboot", async () =>
    /^# tsvm network begin\n10\.77\.0\.3 b\n# tsvm network end$/m.test(await exec("a", "cat /etc/hosts"))
      ? true
      : undefined,
  );
  const log = await tsvm("logs", "a");
  assert.equal(log.stdout.match(/Linux version/g)?.length, 2, "a booted twice: its own reboot");
});
