import assert from "node:assert/strict";
import { test } from "node:test";
import { HypervisorError } from "./hypervisor-error.ts";
import {
  interfacesForCopy,
  interfacesForInsert,
  interfacesOf,
  macBytes,
  newMac,
  nicsSpecOf,
} from "./network-interfaces.ts";
import { parseVmRecord } from "./vm-record.ts";

const noCheck = { takenMacs: new Set<string>(), checkNetwork: () => {} };

test("newMac: locally administered unicast (02:…), lowercase, random, never one taken", () => {
  const seen = new Set<string>();
  for (let i = 0; i < 200; i++) {
    const mac = newMac();
    assert.match(mac, /^02(:[0-9a-f]{2}){5}$/);
    const first = macBytes(mac)[0]!;
    assert.equal(first & 1, 0, "unicast");
    assert.equal(first & 2, 2, "locally administered");
    seen.add(mac);
  }
  assert.ok(seen.size >= 199);
  assert.deepEqual([...macBytes("02:0a:ff:00:10:7b")], [2, 10, 255, 0, 16, 123]);
  assert.throws(() => macBytes("02:0A:ff:00:10:7b"), /malformed/);
});

test("interfacesForInsert: one NAT card by default, [] for none, the order given, new MACs", () => {
  const [nat, ...rest] = interfacesForInsert(undefined, noCheck);
  assert.equal(nat!.network, "nat");
  assert.match(nat!.mac, /^02:/);
  assert.equal(rest.length, 0);
  assert.deepEqual(interfacesForInsert([], noCheck), []);
  const checked: string[] = [];
  const cards = interfacesForInsert([{ network: "lab" }, { network: "nat" }, { network: "dmz" }], {
    takenMacs: new Set(),
    checkNetwork: (n) => checked.push(n),
  });
  assert.deepEqual(
    cards.map((c) => c.network),
    ["lab", "nat", "dmz"],
  );
  assert.equal(new Set(cards.map((c) => c.mac)).size, 3);
  assert.deepEqual(checked, ["lab", "dmz"], "the networks module checks the private networks only");
});

test("interfacesForInsert: too many cards, a network twice, a bad name or an unknown network are refused", () => {
  const refused = (text: RegExp) => (e: unknown) =>
    e instanceof HypervisorError && e.code === "invalid-network" && text.test(e.message);
  assert.throws(
    () =>
      interfacesForInsert(
        ["nat", "a", "b", "c", "d"].map((network) => ({ network })),
        noCheck,
      ),
    refused(/at most 4 network cards \(5 were asked for\)/),
  );
  assert.throws(
    () => interfacesForInsert([{ network: "nat" }, { network: "nat" }], noCheck),
    refused(/'nat' is named twice/),
  );
  assert.throws(
    () => interfacesForInsert([{ network: "Lab!" }], noCheck),
    refused(/'Lab!' is not a network name/),
  );
  assert.throws(
    () =>
      interfacesForInsert([{ network: "nope" }], {
        takenMacs: new Set(),
        checkNetwork: (n) => {
          throw new HypervisorError("invalid-network", `no network '${n}'`);
        },
      }),
    refused(/no network 'nope'/),
  );
});

test("interfacesForCopy: the same networks in order, every MAC new, no private address kept", () => {
  const source = [
    { network: "nat", mac: "02:00:00:00:00:01" },
    { network: "lab", mac: "02:00:00:00:00:02", ipv4: "10.77.0.2" },
  ];
  const copy = interfacesForCopy(source, new Set(source.map((s) => s.mac)))!;
  assert.deepEqual(
    copy.map((c) => c.network),
    ["nat", "lab"],
  );
  for (const [i, c] of copy.entries()) {
    assert.notEqual(c.mac, source[i]!.mac);
    assert.equal(c.ipv4, undefined);
  }
  assert.equal(interfacesForCopy(undefined, new Set()), undefined);
});

/** vm.json as tsvm wrote it before network cards (issue 10): no networkInterfaces, no forwards. */
const OLD_RECORD = {
  formatVersion: 1,
  id: "3f0c6a1e-94d2-4c51-8b8e-0d1f2a3b4c5d",
  name: "web",
  machineType: "t1-small",
  cpus: 1,
  memoryMiB: 256,
  diskMiB: 64,
  image: "default",
  engine: "riscv",
  automaticRestart: true,
  cpuCapPercent: null,
  cpuWeight: 100,
  status: "TERMINATED",
  statusMessage: "",
  creationTimestamp: "2026-11-25T18:00:00.000Z",
  lastStartTimestamp: null,
  lastStopTimestamp: null,
  lastSuspendedTimestamp: null,
  history: [{ at: "2026-11-25T18:00:00.000Z", from: null, to: "TERMINATED", reason: "insert" }],
};

test("vm.json from before network cards loads unchanged and means no card; the VMM gets none", () => {
  const old = parseVmRecord(JSON.stringify(OLD_RECORD), "vm.json");
  assert.equal(old.networkInterfaces, undefined);
  assert.deepEqual(interfacesOf(old), []);
  assert.deepEqual(nicsSpecOf(old, "/home/x/vms/web"), []);
});

test("vm.json: cards and forwards checked field by field; the spec attaches passt and switches", () => {
  const record = parseVmRecord(
    JSON.stringify({
      ...OLD_RECORD,
      networkInterfaces: [
        { network: "nat", mac: "02:00:00:00:00:01" },
        { network: "lab", mac: "02:00:00:00:00:02", ipv4: "10.77.0.2" },
      ],
      forwards: [{ protocol: "tcp", hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80 }],
    }),
    "vm.json",
  );
  assert.deepEqual(nicsSpecOf(record, "/h/vms/web"), [
    {
      mac: "02:00:00:00:00:01",
      attach: {
        kind: "passt",
        forwards: [{ protocol: "tcp", hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80 }],
      },
    },
    {
      mac: "02:00:00:00:00:02",
      attach: {
        kind: "switch",
        socketPath: "/h/networks/lab/switch.sock",
        hello: `tsvm-switch 1 ${OLD_RECORD.id} 02:00:00:00:00:02\n`,
      },
    },
  ]);
  for (const [patch, field] of [
    [{ networkInterfaces: [{ network: "nat", mac: "02:00:00:00:00:0G" }] }, /networkInterfaces\[0\]\.mac/],
    [{ networkInterfaces: [{ network: "nat" }] }, /mac/],
    [{ forwards: [{ protocol: "tcp", hostAddress: "127.0.0.1", hostPort: 80, guestPort: 80 }] }, /hostPort/],
    [
      { forwards: [{ protocol: "icmp", hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80 }] },
      /protocol/,
    ],
  ] as const)
    assert.throws(() => parseVmRecord(JSON.stringify({ ...OLD_RECORD, ...patch }), "/x/vm.json"), field);
});
