// Network cards and port forwards through the hypervisor, with real VMM processes (hosting the counting
// stand-in guest) and Debian's real passt: what passt holds, its restart after kill -9 (an event, the VM
// RUNNING), MACs across stop/start and clones, forwards refused at create, update and start.
import assert from "node:assert/strict";
import { createServer, type Server } from "node:net";
import { after, test } from "node:test";
import { failed, ok, TestHypervisors } from "./fixtures/test-hypervisors.ts";
import type { Hypervisor } from "./hypervisor.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { IllegalActionError } from "./lifecycle.ts";
import { checkHostPortsFree } from "./port-forwards.ts";

const hypervisors = new TestHypervisors("tsvm-net-");
const servers: Server[] = [];
after(() => {
  for (const s of servers) s.close();
});

async function openHypervisor(): Promise<Hypervisor> {
  return (await hypervisors.open()).hv;
}

/** A TCP port on 127.0.0.1 free now (the kernel's choice, let go at once). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = s.address() as { port: number };
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Whether some process (passt) holds the TCP or UDP port on 127.0.0.1. */
async function held(protocol: "tcp" | "udp", port: number): Promise<boolean> {
  return checkHostPortsFree("probe", [
    { protocol, hostAddress: "127.0.0.1", hostPort: port, guestPort: 1 },
  ]).then(
    () => false,
    (e: HypervisorError) => {
      assert.equal(e.code, "port-in-use");
      return true;
    },
  );
}

async function until<T>(
  what: string,
  probe: () => Promise<T | undefined> | T | undefined,
  ms = 60_000,
): Promise<T> {
  const t0 = Date.now();
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const refused = (code: string, text: RegExp) => (e: unknown) =>
  e instanceof HypervisorError && e.code === code && text.test(e.message);

test("a VM's NAT card: passt holds its forwards, is restarted after kill -9 (an event, the VM RUNNING), counts per card", async () => {
  const hv = await openHypervisor();
  const tcp = await freePort();
  const udp = await freePort();
  await ok(
    hv,
    hv.insert({
      name: "web",
      forwards: [
        { protocol: "tcp", hostPort: tcp, guestPort: 80 },
        { protocol: "udp", hostPort: udp, guestPort: 53 },
      ],
    }),
  );
  const vm = hv.get("web");
  assert.equal(vm.networkInterfaces.length, 1);
  assert.equal(vm.networkInterfaces[0]!.network, "nat");
  assert.match(vm.networkInterfaces[0]!.mac, /^02(:[0-9a-f]{2}){5}$/);
  assert.deepEqual(vm.forwards, [
    { protocol: "tcp", hostAddress: "127.0.0.1", hostPort: tcp, guestPort: 80 },
    { protocol: "udp", hostAddress: "127.0.0.1", hostPort: udp, guestPort: 53 },
  ]);
  assert.ok(await held("tcp", tcp), "passt listens on the TCP forward");
  assert.ok(await held("udp", udp), "passt has the UDP forward");
  const before = await hv.stats("web");
  for (const key of [
    "nic0RxBytes",
    "nic0TxBytes",
    "nic0RxFrames",
    "nic0TxFrames",
    "nic0TxDropped",
    "netRxBytes",
  ])
    assert.equal(typeof before[key], "number", key);
  assert.equal(before.passtRestarts, 0);
  const pid = before.passtPid!;
  assert.ok(pid > 1);

  // Another VM cannot have the same host socket; a process holding one is refused too (nothing created).
  assert.throws(
    () => hv.insert({ name: "db", forwards: [{ protocol: "tcp", hostPort: tcp, guestPort: 8080 }] }),
    refused("port-in-use", new RegExp(`${tcp}/tcp .* already forwarded to VM 'web'`)),
  );
  const squatter = createServer();
  servers.push(squatter);
  const squatted = await freePort();
  await new Promise<void>((resolve) => squatter.listen({ host: "127.0.0.1", port: squatted }, resolve));
  const error = await failed(
    hv,
    hv.insert({ name: "db", forwards: [{ protocol: "tcp", hostPort: squatted, guestPort: 80 }] }),
  );
  assert.equal(error.code, "port-in-use");
  assert.match(error.message, /another process on the host holds it/);
  assert.throws(() => hv.get("db"), /no VM|not found|does not exist/i);
  assert.throws(
    () => hv.insert({ name: "db", forwards: [{ protocol: "tcp", hostPort: 80, guestPort: 80 }] }),
    refused("invalid-forward", /host port 80 is privileged/),
  );
  assert.throws(
    () =>
      hv.insert({
        name: "db",
        networkInterfaces: [],
        forwards: [{ protocol: "tcp", hostPort: 18080, guestPort: 80 }],
      }),
    refused("invalid-forward", /NAT card/),
  );

  // kill -9 of passt: restarted by the VMM, an event says so, the VM keeps RUNNING, the ports are held again.
  const seq = hv.events.lastSeq;
  process.kill(pid, "SIGKILL");
  const event = await until("the passt restart event", () =>
    hv.events.since(seq, 100, "web").find((e) => e.type === "notice" && /passt/.test(e.message)),
  );
  assert.match(event.message, /restarted.*the VM runs on/);
  assert.equal(hv.get("web").status, "RUNNING");
  const after = await hv.stats("web");
  assert.equal(after.passtRestarts, 1);
  assert.ok(after.passtPid! > 1 && after.passtPid !== pid);
  assert.ok(await held("tcp", tcp));
  assert.ok(await held("udp", udp));
});

test("MACs are kept across stop/start, new for a clone; forwards change only while TERMINATED and are checked at start", async () => {
  const hv = await openHypervisor();
  const port = await freePort();
  await ok(hv, hv.insert({ name: "app", forwards: [{ protocol: "tcp", hostPort: port, guestPort: 80 }] }));
  const mac = hv.get("app").networkInterfaces[0]!.mac;
  assert.throws(() => hv.update("app", { forwards: [] }), IllegalActionError);
  await ok(hv, hv.stop("app"));
  assert.equal(await held("tcp", port), false, "a stopped VM's passt is gone, and its ports with it");

  const next = await freePort();
  await ok(
    hv,
    hv.update("app", {
      forwards: [{ protocol: "tcp", hostAddress: "127.0.0.1", hostPort: next, guestPort: 8080 }],
    }),
  );
  assert.deepEqual(hv.get("app").forwards, [
    { protocol: "tcp", hostAddress: "127.0.0.1", hostPort: next, guestPort: 8080 },
  ]);
  assert.ok(
    hv.events
      .since(0, 1000, "app")
      .some((e) => e.message === `port forwards set to tcp:127.0.0.1:${next}:8080`),
  );
  assert.throws(
    () => hv.update("app", { forwards: [{ protocol: "udp", hostPort: 22, guestPort: 22 }] }),
    refused("invalid-forward", /privileged/),
  );

  // A clone: the same networks with a new MAC, none of the source's forwards.
  await ok(hv, hv.insert({ name: "app-2", sourceInstance: "app" }));
  const clone = hv.get("app-2");
  assert.equal(clone.networkInterfaces.length, 1);
  assert.notEqual(clone.networkInterfaces[0]!.mac, mac);
  assert.deepEqual(clone.forwards, []);
  assert.throws(
    () =>
      hv.insert({
        name: "app-3",
        sourceInstance: "app",
        forwards: [{ protocol: "tcp", hostPort: next, guestPort: 80 }],
      }),
    refused("port-in-use", /already forwarded to VM 'app'/),
  );
  assert.throws(
    () => hv.insert({ name: "app-3", sourceInstance: "app", networkInterfaces: [] }),
    refused("invalid-argument", /networkInterfaces/),
  );

  // A process took the port while the VM was stopped: start is refused, saying which port and why.
  const squatter = createServer();
  servers.push(squatter);
  await new Promise<void>((resolve) => squatter.listen({ host: "127.0.0.1", port: next }, resolve));
  const error = await failed(hv, hv.start("app"));
  assert.equal(error.code, "port-in-use");
  assert.match(error.message, new RegExp(`host port ${next}/tcp .*another process on the host holds it`));
  assert.equal(hv.get("app").status, "TERMINATED");
  await new Promise((resolve) => squatter.close(resolve));

  await ok(hv, hv.start("app"));
  assert.equal(hv.get("app").networkInterfaces[0]!.mac, mac, "the MAC survives a stop and a start");
  assert.ok(await held("tcp", next));
});

test("no card: networkInterfaces [] starts no passt; a missing passt fails the start in one line naming the package", async () => {
  const hv = await openHypervisor();
  await ok(hv, hv.insert({ name: "quiet", networkInterfaces: [] }));
  assert.deepEqual(hv.get("quiet").networkInterfaces, []);
  assert.equal((await hv.stats("quiet")).passtPid, undefined);
  process.env.TSVM_PASST = "/nonexistent/passt";
  try {
    const error = await failed(hv, hv.insert({ name: "loud" }));
    assert.equal(error.code, "vmm-start-failed");
    assert.match(
      error.message,
      /passt is not installed .*install Debian's passt package \(apt-get install passt\)/,
    );
    assert.ok(!error.message.includes("\n"));
  } finally {
    delete process.env.TSVM_PASST;
  }
});
