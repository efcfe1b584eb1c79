import assert from "node:assert/strict";
import { mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { parseSubnet } from "./ipv4-subnet.ts";
import { type CardHolder, type NetworkCard, Networks } from "./networks.ts";
import { hostsCommand, hostsLinesFor } from "./private-networks.ts";

const homes: string[] = [];
after(async () => {
  for (const h of homes) await rm(h, { recursive: true, force: true });
});

async function open(): Promise<{ networks: Networks; home: string }> {
  const home = await mkdtemp(join(tmpdir(), "tsvm-networks-"));
  homes.push(home);
  return { networks: await Networks.open(home), home };
}

const NOW = new Date("2026-12-07T00:00:00Z");

function vm(name: string, ...cards: Array<[string, string, string?]>): CardHolder {
  return {
    id: `id-${name}`,
    name,
    networkInterfaces: cards.map(([network, mac, ipv4]) => ({ network, mac, ...(ipv4 ? { ipv4 } : {}) })),
  };
}

test("subnets: private ranges only, /16 to /29, the network address itself", () => {
  assert.deepEqual(parseSubnet("10.77.0.0/24"), { base: 0x0a4d0000, prefix: 24 });
  assert.deepEqual(parseSubnet("192.168.50.8/29"), { base: 0xc0a83208, prefix: 29 });
  for (const [bad, words] of [
    ["8.8.8.0/24", "10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16"],
    ["172.32.0.0/16", "10.0.0.0/8, 172.16.0.0/12"],
    ["10.0.0.0/8", "from /16 to /29"],
    ["10.0.0.0/30", "from /16 to /29"],
    ["10.77.0.5/24", "not the first address of a /24 (that is 10.77.0.0)"],
    ["10.77.0.0", "IPv4 CIDR"],
    ["10.077.0.0/24", "IPv4 CIDR"],
    ["10.256.0.0/24", "IPv4 CIDR"],
    ["lab/24", "IPv4 CIDR"],
  ] as const)
    assert.throws(
      () => parseSubnet(bad),
      (e: Error & { code?: string }) => e.code === "invalid-subnet" && e.message.includes(words),
      bad,
    );
});

test("create: default subnets are the free /24s from 10.77.0.0; names, overlaps and duplicates are refused", async () => {
  const { networks, home } = await open();
  const lab = await networks.create("lab", undefined, NOW);
  assert.equal(lab.subnet, "10.77.0.0/24");
  await networks.create("big", "10.78.0.0/23", NOW);
  assert.equal((await networks.create("next", undefined, NOW)).subnet, "10.77.1.0/24");
  const refuse = (name: string, subnet: string | undefined, code: string, words: string) =>
    assert.throws(
      () => networks.create(name, subnet, NOW),
      (e: Error & { code?: string }) => e.code === code && e.message.includes(words),
      `${name} ${subnet}`,
    );
  refuse("lab", undefined, "already-exists", "the network 'lab' already exists");
  refuse("nat", undefined, "invalid-name", "'nat' is reserved");
  refuse("Lab", undefined, "invalid-name", "not a valid network name");
  refuse("../x", undefined, "invalid-name", "not a valid network name");
  refuse("other", "10.77.0.128/25", "subnet-overlap", "overlaps the network 'lab' (10.77.0.0/24)");
  refuse("other", "10.78.1.0/24", "subnet-overlap", "the network 'big' (10.78.0.0/23)");
  refuse("other", "10.77.0.0/16", "subnet-overlap", "'lab'");
  refuse("other", "100.64.0.0/24", "invalid-subnet", "it must lie in 10.0.0.0/8");
  // Two creates in flight cannot take the same default subnet or name.
  const [a, b] = await Promise.all([
    networks.create("a", undefined, NOW),
    networks.create("b", undefined, NOW),
  ]);
  assert.notEqual(a.subnet, b.subnet);
  // Nothing half-made was left, and a reopened store has the same networks.
  assert.deepEqual((await readdir(join(home, "networks"))).sort(), ["a", "b", "big", "lab", "next"]);
  assert.equal((await stat(join(home, "networks", "lab", "network.json"))).mode & 0o777, 0o600);
  const again = await Networks.open(home);
  assert.deepEqual(
    again.list().map((n) => `${n.name} ${n.subnet}`),
    ["a 10.77.2.0/24", "b 10.77.3.0/24", "big 10.78.0.0/23", "lab 10.77.0.0/24", "next 10.77.1.0/24"],
  );
  assert.equal(
    JSON.parse(await readFile(join(home, "networks", "lab", "network.json"), "utf8")).formatVersion,
    1,
  );
});

test("an unreadable network directory is reported and left alone; the others load", async () => {
  const { networks, home } = await open();
  await networks.create("lab", undefined, NOW);
  await networks.create("web", undefined, NOW);
  await writeFile(join(home, "networks", "web", "network.json"), "{not json");
  const warnings: string[] = [];
  const again = await Networks.open(home, (w) => warnings.push(w));
  assert.deepEqual(
    again.list().map((n) => n.name),
    ["lab"],
  );
  assert.match(warnings.join("\n"), /networks\/web: .*not valid JSON/);
});

test("addresses: .2 upward, unique per network, computed from the VMs' cards; NAT cards get none", async () => {
  const { networks } = await open();
  await networks.create("lab", "192.168.7.0/29", NOW);
  await networks.create("web", undefined, NOW);
  const existing = [
    vm("a", ["lab", "02:00:00:00:00:01", "192.168.7.2"], ["web", "02:00:00:00:00:02", "10.77.0.2"]),
  ];
  const cards = networks.assignAddresses<NetworkCard>(
    [
      { network: "nat", mac: "02:00:00:00:00:03" },
      { network: "lab", mac: "02:00:00:00:00:04" },
      { network: "lab", mac: "02:00:00:00:00:05" },
      { network: "web", mac: "02:00:00:00:00:06" },
    ],
    existing,
  );
  assert.deepEqual(
    cards.map((c) => c.ipv4),
    [undefined, "192.168.7.3", "192.168.7.4", "10.77.0.3"],
  );
  // A clone's cards arrive with the source's addresses: they are replaced by free ones.
  const clone = networks.assignAddresses(
    [{ network: "lab", mac: "02:00:00:00:00:07", ipv4: "192.168.7.2" }],
    existing,
  );
  assert.equal(clone[0]!.ipv4, "192.168.7.3");
  // A /29 has .2 to .6 for cards.
  const full = [
    ...existing,
    vm("b", ["lab", "02:00:00:00:01:01", "192.168.7.3"], ["lab", "02:00:00:00:01:02", "192.168.7.4"]),
    vm("c", ["lab", "02:00:00:00:01:03", "192.168.7.5"], ["lab", "02:00:00:00:01:04", "192.168.7.6"]),
  ];
  assert.throws(
    () => networks.assignAddresses([{ network: "lab", mac: "02:00:00:00:00:08" }], full),
    /the network 'lab' \(192\.168\.7\.0\/29\) has no free address left/,
  );
  assert.throws(
    () => networks.assignAddresses([{ network: "nope", mac: "02:00:00:00:00:08" }], full),
    (e: Error & { code?: string }) =>
      e.code === "not-found" && e.message.includes("the network 'nope' was not found; create it first"),
  );
});

test("delete is refused while any VM has a card on it, naming the VMs; then it removes the directory", async () => {
  const { networks, home } = await open();
  await networks.create("lab", undefined, NOW);
  const vms = [
    vm("web", ["nat", "02:00:00:00:00:01"], ["lab", "02:00:00:00:00:02", "10.77.0.2"]),
    vm("db", ["lab", "02:00:00:00:00:03", "10.77.0.3"]),
    vm("other", ["nat", "02:00:00:00:00:04"]),
  ];
  assert.throws(
    () => networks.delete("lab", vms, async () => {}),
    (e: Error & { code?: string }) =>
      e.code === "network-in-use" &&
      e.message === "the network 'lab' has cards of the VMs 'db', 'web'; delete those VMs first",
  );
  assert.throws(() => networks.delete("nope", vms, async () => {}), /the network 'nope' was not found/);
  let stopped = false;
  await networks.delete("lab", [vms[2]!], async () => {
    stopped = true;
  });
  assert.ok(stopped, "its switch is stopped before the directory goes");
  assert.deepEqual(await readdir(join(home, "networks")), []);
  assert.equal(networks.has("lab"), false);
  // The name and subnet are free again.
  assert.equal((await networks.create("lab", undefined, NOW)).subnet, "10.77.0.0/24");
});

test("members files list each network's cards and are rewritten only when they change", async () => {
  const { networks, home } = await open();
  await networks.create("lab", undefined, NOW);
  const path = join(home, "networks", "lab", "members.json");
  const vms = [
    vm("b", ["lab", "02:00:00:00:00:0b", "10.77.0.3"]),
    vm("a", ["lab", "02:00:00:00:00:0a", "10.77.0.2"]),
  ];
  await networks.syncMembers(vms);
  const file = JSON.parse(await readFile(path, "utf8"));
  assert.equal(file.magic, "tsvm-network-members");
  assert.deepEqual(
    file.members.map((m: { vmName: string; ipv4: string }) => `${m.vmName} ${m.ipv4}`),
    ["a 10.77.0.2", "b 10.77.0.3"],
  );
  const before = (await stat(path)).mtimeMs;
  await new Promise((r) => setTimeout(r, 20));
  await networks.syncMembers(vms);
  assert.equal((await stat(path)).mtimeMs, before);
  await networks.syncMembers([vms[0]!]);
  assert.equal(JSON.parse(await readFile(path, "utf8")).members.length, 1);
});

test("hosts lines: the other VMs sharing a network, by name; nothing from networks the VM is not on", () => {
  const vms = [
    vm("a", ["lab", "02:00:00:00:00:01", "10.77.0.2"]),
    vm("b", ["lab", "02:00:00:00:00:02", "10.77.0.3"], ["web", "02:00:00:00:00:03", "10.78.0.2"]),
    vm("c", ["web", "02:00:00:00:00:04", "10.78.0.3"]),
    vm("d", ["nat", "02:00:00:00:00:05"]),
  ];
  assert.deepEqual(hostsLinesFor(vms[0]!, vms), ["10.77.0.3 b"]);
  assert.deepEqual(hostsLinesFor(vms[1]!, vms), ["10.77.0.2 a", "10.78.0.3 c"]);
  assert.deepEqual(hostsLinesFor(vms[3]!, vms), []);
  const command = hostsCommand(["10.77.0.3 b"]);
  assert.match(command, /'# tsvm network begin' '10\.77\.0\.3 b' '# tsvm network end'/);
});
