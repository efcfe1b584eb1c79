// Private networks through the hypervisor, with real VMM processes (the counting stand-in guest) and a
// real switch process: addresses at insert and clone, the members file, the switch started before a
// member's VMM and stopped with its network, and the refusals (unknown network, delete while used).
import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { ok, TestHypervisors } from "./fixtures/test-hypervisors.ts";
import type { Hypervisor } from "./hypervisor.ts";
import { askSwitchStats } from "./network-switch-process.ts";

const hypervisors = new TestHypervisors("tsvm-lan-");

async function openHypervisor(): Promise<{ hv: Hypervisor; home: string }> {
  return hypervisors.open({
    config: {
      switchEntry: {
        entry: join(import.meta.dirname, "network-switch-main.ts"),
        nodeArgs: fixtureLauncherConfig.nodeArgs,
      },
    },
  });
}

test("cards on a private network: addresses, members, the switch, and the refusals", async () => {
  const { hv, home } = await openHypervisor();
  await ok(hv, await hv.insertNetwork({ name: "lab", subnet: "192.168.9.0/29" }));
  assert.throws(
    () => hv.insert({ name: "x", cpus: 1, memoryMiB: 64, networkInterfaces: [{ network: "nowhere" }] }),
    (e: Error & { code?: string }) =>
      e.code === "invalid-network" && e.message.includes("the network 'nowhere' was not found"),
  );
  await ok(
    hv,
    hv.insert({
      name: "a",
      cpus: 1,
      memoryMiB: 64,
      networkInterfaces: [{ network: "nat" }, { network: "lab" }],
    }),
  );
  await ok(hv, hv.insert({ name: "b", cpus: 1, memoryMiB: 64, networkInterfaces: [{ network: "lab" }] }));
  const a = hv.get("a");
  assert.equal(a.networkInterfaces[0]!.ipv4, undefined, "the NAT card has no private address");
  assert.equal(a.networkInterfaces[1]!.ipv4, "192.168.9.2");
  assert.equal(hv.get("b").networkInterfaces[0]!.ipv4, "192.168.9.3");

  // The switch runs (started before a's VMM) and its members file lists both cards.
  const lab = await hv.getNetwork("lab");
  assert.equal(lab.switchRunning, true);
  assert.equal(lab.gatewayAddress, "192.168.9.1");
  assert.deepEqual(
    lab.members.map((m) => `${m.instance} ${m.ipv4}`),
    ["a 192.168.9.2", "b 192.168.9.3"],
  );
  const members = JSON.parse(await readFile(join(home, "networks/lab/members.json"), "utf8"));
  assert.deepEqual(
    members.members.map((m: { vmName: string; mac: string }) => `${m.vmName} ${m.mac}`),
    [`a ${a.networkInterfaces[1]!.mac}`, `b ${hv.get("b").networkInterfaces[0]!.mac}`],
  );

  // A switch that dies while members run is started again (checked every 10 s).
  const switchPid = JSON.parse(await readFile(join(home, "networks/lab/switch.json"), "utf8")).pid as number;
  process.kill(switchPid, "SIGKILL");
  for (let i = 0; i < 300 && !(await hv.getNetwork("lab")).switchRunning; i++)
    await new Promise((r) => setTimeout(r, 100));
  assert.equal((await hv.getNetwork("lab")).switchRunning, true, "the switch was started again");
  assert.notEqual(JSON.parse(await readFile(join(home, "networks/lab/switch.json"), "utf8")).pid, switchPid);

  // A clone gets a new MAC and a new address on the same network.
  await ok(hv, hv.stop("b"));
  await ok(hv, hv.insert({ name: "b2", sourceInstance: "b" }));
  const clone = hv.get("b2").networkInterfaces[0]!;
  assert.equal(clone.network, "lab");
  assert.equal(clone.ipv4, "192.168.9.4");
  assert.notEqual(clone.mac, hv.get("b").networkInterfaces[0]!.mac);

  // Deleting is refused while any VM, running or not, has a card on it.
  await assert.rejects(
    async () => hv.deleteNetwork("lab"),
    (e: Error & { code?: string }) =>
      e.code === "network-in-use" &&
      e.message === "the network 'lab' has cards of the VMs 'a', 'b', 'b2'; delete those VMs first",
  );
  // A deleted VM's address is free again.
  await ok(hv, hv.delete("b"));
  await ok(hv, hv.insert({ name: "c", cpus: 1, memoryMiB: 64, networkInterfaces: [{ network: "lab" }] }));
  assert.equal(hv.get("c").networkInterfaces[0]!.ipv4, "192.168.9.3");

  for (const vm of ["a", "b2", "c"]) await ok(hv, hv.delete(vm));
  await ok(hv, await hv.deleteNetwork("lab"));
  assert.equal(await askSwitchStats(join(home, "networks/lab/switch.sock")), undefined, "its switch stopped");
  assert.deepEqual(await hv.listNetworks(), []);
});
