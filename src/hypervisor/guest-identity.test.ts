import assert from "node:assert/strict";
import { test } from "node:test";
import {
  identityBootArgs,
  identityOf,
  newIdentity,
  parseRestoredIdentityOutput,
  RESEED_BYTES,
  RESEED_PROGRAM,
  restoredIdentityCommand,
} from "./guest-identity.ts";
import { CorruptRecordError, parseVmRecord } from "./vm-record.ts";

/** vm.json as tsvm wrote it before identities were kept (no `identity` field). */
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

test("newIdentity: the hostname given and 128 random bits of machine id, new each time", () => {
  const a = newIdentity("web");
  const b = newIdentity("web");
  assert.equal(a.hostname, "web");
  assert.match(a.machineId, /^[0-9a-f]{32}$/);
  assert.notEqual(a.machineId, b.machineId);
});

test("identityOf: the recorded identity; for a record without one, the name and the id's hex digits", () => {
  const old = parseVmRecord(JSON.stringify(OLD_RECORD), "vm.json");
  assert.equal(old.identity, undefined);
  assert.deepEqual(identityOf(old), { hostname: "web", machineId: "3f0c6a1e94d24c518b8e0d1f2a3b4c5d" });
  const recorded = { hostname: "web", machineId: "0123456789abcdef0123456789abcdef" };
  const now = parseVmRecord(JSON.stringify({ ...OLD_RECORD, identity: recorded }), "vm.json");
  assert.deepEqual(identityOf(now), recorded);
  // An id tsvm never makes still gives a valid, stable machine id.
  const odd = identityOf({ id: "id-web", name: "web" });
  assert.match(odd.machineId, /^[0-9a-f]{32}$/);
  assert.equal(identityOf({ id: "id-web", name: "web" }).machineId, odd.machineId);
});

test("vm.json: an identity that is not a hostname and 32 hex digits is refused, naming the field", () => {
  for (const [identity, field] of [
    [{ hostname: "Web", machineId: "0".repeat(32) }, /identity\.hostname/],
    [{ hostname: "web", machineId: "0".repeat(31) }, /identity\.machineId/],
    [{ hostname: "web", machineId: "G".repeat(32) }, /identity\.machineId/],
    [{ hostname: "web" }, /identity\.machineId|machineId/],
    [{ hostname: "web", machineId: "0".repeat(32), mac: "x" }, /mac/],
  ] as const) {
    assert.throws(
      () => parseVmRecord(JSON.stringify({ ...OLD_RECORD, identity }), "/x/vm.json"),
      (e: Error) => e instanceof CorruptRecordError && field.test(e.message),
    );
  }
});

test("identityBootArgs: the two words rcS reads; nothing else gets onto the command line", () => {
  assert.equal(
    identityBootArgs({ hostname: "db-1", machineId: "ab".repeat(16) }),
    `tsvm.hostname=db-1 tsvm.machine_id=${"ab".repeat(16)}`,
  );
  assert.throws(
    () => identityBootArgs({ hostname: "a init=/bin/sh", machineId: "ab".repeat(16) }),
    /hostname/,
  );
  assert.throws(() => identityBootArgs({ hostname: "a", machineId: `${"ab".repeat(15)} x` }), /machine id/);
});

test("restoredIdentityCommand: reseed first, from the seed's hex on stdin, then hostname and the two files", () => {
  const seed = new Uint8Array(RESEED_BYTES).map((_, i) => i);
  const command = restoredIdentityCommand({ hostname: "db-1", machineId: "cd".repeat(16) }, seed);
  const hex = Buffer.from(seed).toString("hex");
  const reseed = command.indexOf(`echo ${hex} | ${RESEED_PROGRAM}`);
  const hostname = command.indexOf("hostname db-1 && echo db-1 >/etc/hostname");
  assert.ok(reseed >= 0 && hostname > reseed, command);
  assert.ok(command.includes(`echo ${"cd".repeat(16)} >/etc/machine-id`));
  assert.throws(() => restoredIdentityCommand({ hostname: "x;reboot", machineId: "cd".repeat(16) }, seed));
});

test("parseRestoredIdentityOutput: each part's status, null when the guest said none or garbage", () => {
  assert.deepEqual(parseRestoredIdentityOutput("reseed 0\nidentity 0\n"), {
    reseedStatus: 0,
    identityStatus: 0,
    networkStatuses: [],
  });
  assert.deepEqual(parseRestoredIdentityOutput("reseed 127\nidentity 0\n"), {
    reseedStatus: 127,
    identityStatus: 0,
    networkStatuses: [],
  });
  assert.deepEqual(parseRestoredIdentityOutput("reseed -1\nidentity 1x\nreseed 99999\n"), {
    reseedStatus: null,
    identityStatus: null,
    networkStatuses: [],
  });
  // A hostile guest's flood: only the first 4 KiB are looked at.
  assert.deepEqual(parseRestoredIdentityOutput(`${"x".repeat(1 << 20)}\nreseed 0\n`, 1), {
    reseedStatus: null,
    identityStatus: null,
    networkStatuses: [null],
  });
  // One status per card, in order; a card the guest said nothing about is null.
  assert.deepEqual(parseRestoredIdentityOutput("reseed 0\nidentity 0\nnet 0 0\nnet 2 1\nnet 1 x\n", 3), {
    reseedStatus: 0,
    identityStatus: 0,
    networkStatuses: [0, null, 1],
  });
});

test("restoredIdentityCommand: each card gets its MAC and a new DHCP client as rcS starts it, after the identity", () => {
  const seed = new Uint8Array(RESEED_BYTES);
  const macs = ["02:00:00:00:00:01", "02:aa:bb:cc:dd:ee"];
  const command = restoredIdentityCommand({ hostname: "db-1", machineId: "cd".repeat(16) }, seed, macs);
  const lines = command.split("\n");
  assert.equal(lines.length, 4);
  assert.match(lines[2]!, /ip link set dev eth0 address 02:00:00:00:00:01/);
  assert.match(
    lines[2]!,
    /udhcpc -b -S -t 5 -T 2 -A 3 -i eth0 -x hostname:db-1 -p \/run\/udhcpc\.eth0\.pid -s \/usr\/share\/udhcpc\/default\.script/,
  );
  assert.match(lines[2]!, /kill \$p/);
  assert.match(lines[2]!, /echo "net 0 \$\?"$/);
  assert.match(lines[3]!, /eth1 address 02:aa:bb:cc:dd:ee.*echo "net 1 \$\?"$/);
  assert.throws(
    () => restoredIdentityCommand({ hostname: "db-1", machineId: "cd".repeat(16) }, seed, ["02:00;reboot"]),
    /malformed/,
  );
});
