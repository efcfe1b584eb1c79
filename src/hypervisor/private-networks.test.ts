// Private networks through the hypervisor, with real VMM processes (the counting stand-in guest) and a
// real switch process: addresses at insert and clone, the members file, the switch started before a
// member's VMM and stopped with its network, and the refusals (unknown network, delete while used).
import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
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

/** The export file of VM `name`, whole. */
function exportBytes(hv: Hypervisor, name: string): Promise<Buffer> {
  return hv.exportVm(name, {}, async ({ stream }) => {
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c);
    return Buffer.concat(chunks);
  });
}

async function* streamOf(bytes: Buffer): AsyncGenerator<Buffer> {
  for (let at = 0; at < bytes.length; at += 65536) yield bytes.subarray(at, at + 65536);
}

const invalidNetwork = (text: RegExp) => (e: Error & { code?: string }) => {
  assert.equal(e.code, "invalid-network", e.message);
  assert.match(e.message, text);
  assert.ok(!e.message.includes("\n"));
  return true;
};

test("an imported VM's private cards: refused or left out where the network is missing, else an address of this host's subnet", async () => {
  const source = await openHypervisor();
  await ok(source.hv, await source.hv.insertNetwork({ name: "lab", subnet: "192.168.9.0/29" }));
  await ok(source.hv, await source.hv.insertNetwork({ name: "far" }));
  const cards = [{ network: "nat" }, { network: "lab" }];
  await ok(source.hv, source.hv.insert({ name: "a", cpus: 1, memoryMiB: 64, networkInterfaces: cards }));
  await ok(source.hv, source.hv.stop("a"));
  const exported = source.hv.get("a");
  assert.equal(exported.networkInterfaces[1]!.ipv4, "192.168.9.2");
  const fileA = await exportBytes(source.hv, "a");
  await ok(
    source.hv,
    source.hv.insert({ name: "s", cpus: 1, memoryMiB: 64, networkInterfaces: [{ network: "far" }] }),
  );
  await ok(source.hv, source.hv.suspend("s"));
  const fileS = await exportBytes(source.hv, "s");

  const { hv, home } = await openHypervisor();
  // A network this host lacks: refused naming it and both ways on, nothing created, the name still free.
  await assert.rejects(
    hv.importVm(streamOf(fileA)),
    invalidNetwork(
      /^the exported VM 'a' has a card on the network 'lab', which this host does not have: create it first \(tsvm network create lab\), or import with --drop-missing-networks .*; nothing was created$/,
    ),
  );
  // A suspended machine had the card: it cannot be left out.
  await assert.rejects(
    hv.importVm(streamOf(fileS), { dropMissingNetworks: true }),
    invalidNetwork(/'far'.*saved memory .*cannot be left out/),
  );
  assert.deepEqual(hv.list().vms, []);
  assert.deepEqual(
    (await readdir(home)).filter((n) => n.startsWith(".tmp-import")),
    [],
    "no import left half-made",
  );

  // Left out: the same VM (its id) with its NAT card and that card's MAC.
  await ok(hv, await hv.importVm(streamOf(fileA), { dropMissingNetworks: true }));
  assert.deepEqual(hv.get("a").networkInterfaces, [exported.networkInterfaces[0]]);
  assert.equal(hv.get("a").id, exported.id);

  // The network here, its .2 taken: a second copy (a new id) gets new MACs and the next free address.
  await ok(hv, await hv.insertNetwork({ name: "lab", subnet: "192.168.9.0/29" }));
  await ok(hv, hv.insert({ name: "x", cpus: 1, memoryMiB: 64, networkInterfaces: [{ network: "lab" }] }));
  assert.equal(hv.get("x").networkInterfaces[0]!.ipv4, "192.168.9.2");
  await ok(hv, await hv.importVm(streamOf(fileA), { name: "a2" }));
  const copy = hv.get("a2");
  assert.notEqual(copy.id, exported.id);
  assert.deepEqual(
    copy.networkInterfaces.map((c) => [c.network, c.ipv4]),
    [
      ["nat", undefined],
      ["lab", "192.168.9.3"],
    ],
  );
  for (const [i, c] of copy.networkInterfaces.entries())
    assert.notEqual(c.mac, exported.networkInterfaces[i]!.mac);

  // The same VM again with its address free: it keeps its MACs and its address.
  await ok(hv, hv.delete("a"));
  await ok(hv, hv.delete("x"));
  await ok(hv, await hv.importVm(streamOf(fileA)));
  assert.deepEqual(hv.get("a").networkInterfaces, exported.networkInterfaces);
  // Its card is a member of the network here, and the network cannot go while the VM has it.
  await ok(hv, hv.start("a"));
  const lab = await hv.getNetwork("lab");
  assert.deepEqual(
    lab.members.map((m) => `${m.instance} ${m.ipv4}`),
    ["a 192.168.9.2", "a2 192.168.9.3"],
  );
  await assert.rejects(async () => hv.deleteNetwork("lab"), /network 'lab' has cards of the VMs 'a', 'a2'/);
});

test("a guest that reboots by itself gets its hosts block again when its agent says HELLO", async () => {
  const { hv, home } = await openHypervisor();
  await ok(hv, await hv.insertNetwork({ name: "lab", subnet: "192.168.9.0/29" }));
  const onLab = [{ network: "lab" }];
  await ok(hv, hv.insert({ name: "agent-a", cpus: 1, memoryMiB: 64, networkInterfaces: onLab }));
  await ok(hv, hv.insert({ name: "agent-b", cpus: 1, memoryMiB: 64, networkInterfaces: onLab }));
  // The stand-in agent records each hosts update it runs.
  const updates = async () =>
    (await readFile(join(home, "vms/agent-a/hosts-updates.log"), "utf8").catch(() => ""))
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as string);
  const until = async (what: string, cond: (u: string[]) => boolean) => {
    for (let i = 0; i < 600; i++) {
      if (cond(await updates())) return;
      await new Promise((r) => setTimeout(r, 100));
    }
    assert.fail(`timed out waiting for ${what}: ${JSON.stringify(await updates())}`);
  };
  await until("agent-a's block naming agent-b", (u) => u.some((c) => c.includes("'192.168.9.3 agent-b'")));
  const before = (await updates()).length;
  // Nothing changed on the network, so nothing would be written again but for the reboot.
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal((await updates()).length, before, "no update without a change");
  const exit = await hv.exec("agent-a", "reboot", { onOutput: () => {}, agentWaitMs: 10_000 });
  assert.equal(exit.exitCode, 0);
  await until("the block written again after the reboot", (u) => u.length > before);
  assert.match((await updates()).at(-1)!, /'192\.168\.9\.3 agent-b'/);
  assert.equal(hv.get("agent-a").status, "RUNNING", "a reboot inside the guest changes no status");
});
