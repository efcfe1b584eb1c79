// The API over a real Unix socket and real localhost TCP, with real HTTP requests, a real hypervisor and
// real VMM processes (hosting the counting stand-in guest); every answer is checked against openapi.json.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { closeAndKill } from "../../hypervisor/fixtures/close-and-kill.ts";
import { fixtureLauncherConfig } from "../../hypervisor/fixtures/fixture-launcher.ts";
import { FileImageCatalog, Hypervisor } from "../../hypervisor/hypervisor.ts";
import { hostCapacity } from "../../hypervisor/resources.ts";
import { defaultDataDir, VmStore } from "../../hypervisor/store.ts";
import { ProcessVmmLauncher } from "../../hypervisor/vmm-process.ts";
import { VMM_PROTOCOL_VERSION } from "../../hypervisor/vmm-protocol.ts";
import { ApiClient, ApiError, type SerialPortConnection } from "../client.ts";
import { apiSocketPath, apiTokenPath, dataDir } from "../data-dir.ts";
import { API_OPERATIONS, buildOpenApiDocument, documentValidator } from "../openapi.ts";
import type { Operation, VmEvent } from "../types.ts";
import { ApiServer, WEBSOCKET_ROUTES } from "./api-server.ts";
import { ensureApiToken } from "./api-token.ts";

const doc = buildOpenApiDocument() as {
  openapi: string;
  paths: Record<string, Record<string, unknown>>;
};
const validate = documentValidator(doc);

function conforms(name: string, value: unknown): void {
  assert.deepEqual(validate(name, value), [], `${name}: ${JSON.stringify(value).slice(0, 300)}`);
}

let home: string;
let hv: Hypervisor;
let server: ApiServer;
let client: ApiClient;
let token: string;
let tcpPort: number;
let heldVmm: ChildProcess;

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-api-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096, 1));
  // Two VMs whose definitions are unusable; a process started on the second's spec stands in for its VMM.
  for (const name of ["mangled", "held"]) {
    await mkdir(join(home, "vms", name), { recursive: true });
    await writeFile(join(home, "vms", name, "vm.json"), name === "mangled" ? "{not json" : "[]");
  }
  heldVmm = spawn(process.execPath, [
    "-e",
    "setInterval(() => {}, 1000)",
    join(home, "vms/held/vmm-spec.json"),
  ]);
  await writeFile(
    join(home, "vms/held/vmm.json"),
    JSON.stringify({
      protocol: VMM_PROTOCOL_VERSION,
      vmId: "lost",
      pid: heldVmm.pid,
      socketPath: join(home, "vms/held/vmm.sock"),
      startedAt: new Date().toISOString(),
    }),
  );
  hv = await Hypervisor.open({
    store: await VmStore.open(home),
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 1024, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 2048, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher(fixtureLauncherConfig),
    images: new FileImageCatalog({ default: join(home, "template.img") }),
    defaultEngine: "fixture",
    defaultImage: "default",
    stopTimeoutMs: 1000,
  });
  token = await ensureApiToken(home);
  server = new ApiServer(hv, { token });
  await server.listenUnix(apiSocketPath(home));
  tcpPort = await server.listenTcp(0);
  client = ApiClient.forDataDir(home);
});

after(async () => {
  heldVmm.kill("SIGKILL");
  await server.close();
  await closeAndKill(hv);
  await rm(home, { recursive: true, force: true });
});

/** A raw HTTP request on the Unix socket (or TCP with `tcp`), for bodies a client would never send. */
function raw(
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = { "content-type": "application/json" },
  tcp = false,
): Promise<{ status: number; json: unknown; headers: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      tcp
        ? { host: "127.0.0.1", port: tcpPort, method, path, headers }
        : { socketPath: apiSocketPath(home), method, path, headers },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          resolve({
            status: res.statusCode ?? 0,
            json: text ? JSON.parse(text) : undefined,
            headers: res.headers,
          });
        });
      },
    );
    // A WebSocket route that accepts the request upgrades it: 101, and the connection is dropped.
    req.on("upgrade", (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, json: undefined, headers: res.headers });
    });
    req.on("error", reject);
    req.end(body);
  });
}

async function expectError(status: number, reason: string, promise: Promise<unknown>): Promise<void> {
  await assert.rejects(promise, (e: unknown) => {
    assert.ok(e instanceof ApiError, String(e));
    assert.equal(e.status, status, e.message);
    assert.equal(e.reason, reason, e.message);
    return true;
  });
}

async function waitOk(op: Operation): Promise<Operation> {
  conforms("Operation", op);
  const done = await client.waitUntilDone(op.id);
  conforms("Operation", done);
  assert.equal(done.error, null, done.error?.message);
  return done;
}

test("the OpenAPI document describes exactly the routes the server serves", () => {
  assert.equal(doc.openapi, "3.1.0");
  const served = [...server.routes, ...WEBSOCKET_ROUTES]
    .map((r) => `${r.method} ${r.path} ${r.operationId}`)
    .sort();
  const documented: string[] = [];
  for (const [path, item] of Object.entries(doc.paths))
    for (const [method, op] of Object.entries(item))
      if (method !== "parameters")
        documented.push(`${method.toUpperCase()} ${path} ${(op as { operationId: string }).operationId}`);
  assert.deepEqual(documented.sort(), served);
});

test("GET /v1/openapi.json serves the document the schemas give", async () => {
  const res = await raw("GET", "/v1/openapi.json");
  assert.equal(res.status, 200);
  assert.deepEqual(res.json, buildOpenApiDocument());
});

test("every documented integer query parameter is enforced by the server at exactly its bounds", async () => {
  let checked = 0;
  for (const op of API_OPERATIONS) {
    if (op.method !== "GET" && op.method !== "POST") continue;
    for (const q of op.query ?? []) {
      const { type, minimum, maximum } = q.schema as { type: string; minimum?: number; maximum?: number };
      if (type !== "integer") continue;
      const path = op.path.replace("{name}", "web").replace("{id}", "nope");
      // WebSocket routes are reached with an upgrade request; its refusals are ordinary answers.
      const headers =
        "websocket" in op.answer
          ? {
              connection: "Upgrade",
              upgrade: "websocket",
              "sec-websocket-version": "13",
              "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
            }
          : undefined;
      const status = async (value: number) =>
        (await raw(op.method, `${path}?${q.name}=${value}`, undefined, headers)).status;
      if (minimum !== undefined) assert.equal(await status(minimum - 1), 400, `${op.operationId} ${q.name}`);
      if (maximum !== undefined) assert.equal(await status(maximum + 1), 400, `${op.operationId} ${q.name}`);
      // At the bound itself the parameter is accepted (the operation may still fail on other grounds).
      for (const bound of [minimum, maximum])
        if (bound !== undefined)
          assert.notEqual(await status(bound), 400, `${op.operationId} ${q.name}=${bound}`);
      checked++;
    }
  }
  assert.equal(checked, 8);
});

test("the client's data directory default agrees with the store's", () => {
  for (const env of [{ TSVM_HOME: "/a" }, { XDG_DATA_HOME: "/x", HOME: "/h" }, { HOME: "/h" }])
    assert.equal(dataDir(env), defaultDataDir(env));
});

test("insert, get, list, operations and events over the Unix socket conform to the document", async () => {
  const op = await client.insertInstance({ name: "web", cpus: 1, memoryMiB: 128 });
  assert.equal(op.operationType, "insert");
  await waitOk(op);
  const vm = await client.getInstance("web");
  conforms("Instance", vm);
  assert.equal(vm.status, "RUNNING");
  assert.ok(vm.vmmPid);
  const list = await client.listInstances();
  conforms("InstanceList", list);
  assert.deepEqual(
    list.items.map((i) => i.name),
    ["web"],
  );
  conforms("Operation", await client.getOperation(op.id));
  conforms("OperationList", await client.listOperations());
  const events = await client.listEvents(0, "web");
  conforms("EventList", events);
  assert.deepEqual(
    events.items.map((e) => e.to),
    ["PROVISIONING", "STAGING", "RUNNING"],
  );
  conforms("MachineTypeList", await client.listMachineTypes());
  const host = await client.getHost();
  conforms("HostInfo", host);
  assert.equal(host.vcpusUsed, 1);
  // Not in a cluster: one host, "local", which an insert may name; no other.
  const hosts = await client.listHosts();
  conforms("ClusterHostList", hosts);
  assert.deepEqual(
    hosts.items.map((h) => `${h.name} ${h.status} ${h.used.vcpus}/${h.capacity.vcpus} ${h.vms.join(",")}`),
    ["local UP 1/4 web"],
  );
  await assert.rejects(client.insertInstance({ name: "elsewhere", host: "h9" }), (e: Error) =>
    /no host 'h9': this daemon is not in a cluster/.test(e.message),
  );
  conforms("InstanceStats", await client.getStats("web"));
  const stats = (await client.getStats("web")).stats;
  assert.ok(stats.vmmCpuMs! > 0 && stats.vmmRssBytes! > 0, "the VMM process's own figures are there");
  const log = await client.getSerialPortOutput("web");
  conforms("SerialPortOutput", log);
  assert.match(log.contents, /^boot at count 0\n/);
  assert.equal(log.next, Buffer.byteLength(log.contents));
  const rest = await client.getSerialPortOutput("web", log.next + 1000);
  assert.deepEqual([rest.contents, rest.start, rest.next], ["", log.next, log.next]);
});

test("the snapshots collection under an instance: create, list, get, restore, delete conform to the document", async () => {
  await waitOk(await client.insertInstance({ name: "snappy", memoryMiB: 64 }));
  const created = await client.createSnapshot("snappy", { name: "one", description: "the first" });
  conforms("Operation", created);
  assert.equal(created.operationType, "createSnapshot");
  assert.match(
    (await waitOk(created)).statusMessage,
    /taken with the guest's memory; the guest was paused \d+ ms/,
  );
  const list = await client.listSnapshots("snappy");
  conforms("SnapshotList", list);
  assert.deepEqual(
    list.items.map((s) => [s.name, s.parent, s.memory, s.description, s.vmStatus]),
    [["one", null, true, "the first", "RUNNING"]],
  );
  conforms("Snapshot", await client.getSnapshot("snappy", "one"));
  const answers: Array<[string, string, string | undefined, number, string]> = [
    ["POST", "/v1/instances/snappy/snapshots", JSON.stringify({ name: "one" }), 409, "already-exists"],
    ["POST", "/v1/instances/snappy/snapshots", JSON.stringify({ name: "Bad!" }), 400, "invalid-name"],
    ["POST", "/v1/instances/snappy/snapshots", JSON.stringify({ nam: "x" }), 400, "invalid-argument"],
    ["GET", "/v1/instances/snappy/snapshots/ghost", undefined, 404, "not-found"],
    ["DELETE", "/v1/instances/snappy/snapshots/ghost", undefined, 404, "not-found"],
    ["POST", "/v1/instances/snappy/snapshots/ghost/restore", undefined, 404, "not-found"],
    ["GET", "/v1/instances/ghost/snapshots", undefined, 404, "not-found"],
  ];
  for (const [method, path, body, status, reason] of answers) {
    const r = await raw(method, path, body);
    assert.equal(r.status, status, `${method} ${path}: ${JSON.stringify(r.json)}`);
    conforms("Error", r.json);
    assert.equal(
      (r.json as { error: { errors: Array<{ reason: string }> } }).error.errors[0]!.reason,
      reason,
    );
  }
  const restored = await waitOk(await client.restoreSnapshot("snappy", "one"));
  assert.equal(restored.operationType, "restoreSnapshot");
  assert.equal((await client.getInstance("snappy")).status, "RUNNING");
  const deleted = await waitOk(await client.deleteSnapshot("snappy", "one"));
  assert.equal(deleted.operationType, "deleteSnapshot");
  assert.deepEqual((await client.listSnapshots("snappy")).items, []);
  await waitOk(await client.deleteInstance("snappy"));
});

test("bad requests get clear 4xx answers in Compute Engine's error shape, and change nothing", async () => {
  const before = (await client.listInstances()).items.length;
  const cases: Array<[string, string, string | Buffer | undefined, number, string, Record<string, string>?]> =
    [
      ["POST", "/v1/instances", "{name:", 400, "malformed-json"],
      ["POST", "/v1/instances", JSON.stringify({ name: "x", memoryMiB: 0 }), 400, "invalid-machine-type"],
      [
        "POST",
        "/v1/instances",
        JSON.stringify({ name: "x", memoryMiB: 1024 * 1024 }),
        400,
        "invalid-machine-type",
      ],
      ["POST", "/v1/instances", JSON.stringify({ name: "x", cpus: "2" }), 400, "invalid-argument"],
      ["POST", "/v1/instances", JSON.stringify({ name: "x", disk: 1 }), 400, "invalid-argument"],
      ["POST", "/v1/instances", JSON.stringify([1]), 400, "invalid-argument"],
      ["POST", "/v1/instances", undefined, 400, "invalid-argument"],
      ["POST", "/v1/instances", JSON.stringify({ name: "../etc" }), 400, "invalid-name"],
      ["POST", "/v1/instances", JSON.stringify({ name: "web" }), 409, "already-exists"],
      [
        "POST",
        "/v1/instances",
        JSON.stringify({ name: "huge", cpus: 8, memoryMiB: 64 }),
        409,
        "capacity-exceeded",
      ],
      ["POST", "/v1/instances", Buffer.alloc(70 * 1024, 0x20), 413, "payload-too-large"],
      ["POST", "/v1/instances", "name=x", 415, "unsupported-media-type", { "content-type": "text/plain" }],
      ["GET", "/v1/instances/ghost", undefined, 404, "not-found"],
      ["POST", "/v1/instances/ghost/stop", undefined, 404, "not-found"],
      ["POST", "/v1/instances/web/resume", undefined, 409, "illegal-action"],
      // PATCH (instances.update): only while TERMINATED; each forward checked, naming what is wrong.
      ["PATCH", "/v1/instances/web", JSON.stringify({ forwards: [] }), 409, "illegal-action"],
      [
        "PATCH",
        "/v1/instances/web",
        JSON.stringify({ forwards: [{ protocol: "tcp" }] }),
        400,
        "invalid-argument",
      ],
      ["PATCH", "/v1/instances/web", JSON.stringify({ cpus: 2 }), 400, "invalid-argument"],
      ["PATCH", "/v1/instances/ghost", JSON.stringify({ forwards: [] }), 404, "not-found"],
      [
        "POST",
        "/v1/instances",
        JSON.stringify({ name: "x", forwards: [{ protocol: "tcp", hostPort: 80, guestPort: 80 }] }),
        400,
        "invalid-forward",
      ],
      [
        "POST",
        "/v1/instances",
        JSON.stringify({ name: "x", networkInterfaces: [{ network: "nat" }, { network: "nat" }] }),
        400,
        "invalid-network",
      ],
      [
        "POST",
        "/v1/instances/web/setMachineType",
        JSON.stringify({ machineType: "t1-small" }),
        409,
        "illegal-action",
      ],
      ["POST", "/v1/instances/ghost/exec", JSON.stringify({ command: "true" }), 404, "not-found"],
      ["POST", "/v1/instances/web/exec", JSON.stringify({}), 400, "invalid-argument"],
      ["POST", "/v1/instances/web/exec", JSON.stringify({ command: "" }), 400, "invalid-argument"],
      [
        "POST",
        "/v1/instances/web/exec",
        JSON.stringify({ command: "x".repeat(16385) }),
        400,
        "invalid-argument",
      ],
      ["POST", "/v1/instances/web/exec", JSON.stringify({ command: "a\u0000b" }), 400, "invalid-argument"],
      [
        "POST",
        "/v1/instances/web/exec",
        JSON.stringify({ command: "true", timeoutSec: 0 }),
        400,
        "invalid-argument",
      ],
      [
        "POST",
        "/v1/instances/web/exec",
        JSON.stringify({ command: "true", agentWaitSec: 601 }),
        400,
        "invalid-argument",
      ],
      [
        "POST",
        "/v1/instances/web/exec",
        JSON.stringify({ command: "true", user: "root" }),
        400,
        "invalid-argument",
      ],
      // The stand-in guest's engine has no guest agent.
      ["POST", "/v1/instances/web/exec", JSON.stringify({ command: "true" }), 409, "agent-unavailable"],
      ["GET", "/v1/operations/nope", undefined, 404, "not-found"],
      ["GET", "/v1/nothing-here", undefined, 404, "not-found"],
      ["PUT", "/v1/instances", undefined, 405, "method-not-allowed"],
      ["GET", "/v1/events?after=-1", undefined, 400, "invalid-argument"],
    ];
  for (const [method, path, body, status, reason, headers] of cases) {
    const res = await raw(method, path, body, headers);
    assert.equal(res.status, status, `${method} ${path}: ${JSON.stringify(res.json)}`);
    conforms("Error", res.json);
    const err = (res.json as { error: { code: number; message: string; errors: Array<{ reason: string }> } })
      .error;
    assert.equal(err.code, status);
    assert.equal(err.errors[0]!.reason, reason, `${method} ${path}: ${err.message}`);
    assert.ok(err.message.length > 10);
  }
  const memory0 = await raw("POST", "/v1/instances", JSON.stringify({ name: "x", memoryMiB: 0 }));
  assert.match((memory0.json as { error: { message: string } }).error.message, /invalid memory size 0 MiB/);
  // Schema errors name the field and what it must be, in tsvm's words.
  const messageOf = async (body: string) =>
    ((await raw("POST", "/v1/instances", body)).json as { error: { message: string } }).error.message;
  assert.equal(
    await messageOf(JSON.stringify({ name: "x", cpus: "2" })),
    "the field 'cpus' must be a whole number",
  );
  assert.equal(await messageOf(JSON.stringify({ cpus: 2 })), "the field 'name' is required");
  assert.equal(await messageOf("[1]"), "the request body must be a JSON object");
  assert.match(
    await messageOf(JSON.stringify({ name: "x", disk: 1 })),
    /^the field 'disk' is not a known field \(the fields are name, machineType, cpus, /,
  );
  assert.equal(
    await messageOf(JSON.stringify({ name: "x", cpuCapPercent: "half" })),
    "the field 'cpuCapPercent' must be a whole number of at least 1 or null",
  );
  assert.equal((await client.listInstances()).items.length, before);
  assert.equal((await client.getInstance("web")).status, "RUNNING");
});

test("names of Object's own properties as image, engine, machine type or field get a 4xx, never a 500", async () => {
  const before = (await client.listInstances()).items.length;
  for (const word of ["constructor", "__proto__", "toString", "hasOwnProperty"]) {
    const bodies: Array<[Record<string, unknown>, string]> = [
      [{ name: "x", image: word }, "invalid-image"],
      [{ name: "x", engine: word }, "invalid-engine"],
      [{ name: "x", machineType: word }, "invalid-machine-type"],
    ];
    for (const [body, reason] of bodies) {
      const res = await raw("POST", "/v1/instances", JSON.stringify(body));
      assert.equal(res.status, 400, `${JSON.stringify(body)}: ${JSON.stringify(res.json)}`);
      conforms("Error", res.json);
      assert.equal(
        (res.json as { error: { errors: Array<{ reason: string }> } }).error.errors[0]!.reason,
        reason,
      );
    }
    // A field of that name is an unknown field, not Object's.
    const field = await raw("POST", "/v1/instances", `{"name":"x",${JSON.stringify(word)}:1}`);
    assert.equal(field.status, 400, `field ${word}: ${JSON.stringify(field.json)}`);
    const setType = await raw(
      "POST",
      "/v1/instances/web/setMachineType",
      JSON.stringify({ machineType: word }),
    );
    assert.equal(setType.status, 400, `setMachineType ${word}: ${JSON.stringify(setType.json)}`);
    for (const path of [`/v1/instances/${word}`, `/v1/operations/${word}`, `/v1/instances/${word}/stats`]) {
      const res = await raw("GET", path);
      assert.ok(res.status >= 400 && res.status < 500, `${path}: ${res.status} ${JSON.stringify(res.json)}`);
      conforms("Error", res.json);
    }
  }
  assert.equal((await client.listInstances()).items.length, before);
  assert.deepEqual((await readdir(join(home, "vms"))).sort(), ["held", "mangled", "web"]);
});

test("a VM with an unusable definition is listed as unreachable and can be deleted, unless its VMM runs", async () => {
  const list = await client.listInstances();
  conforms("InstanceList", list);
  assert.deepEqual(
    list.unreachable.map((u) => [u.name, u.code]),
    [
      ["held", "corrupt-record"],
      ["mangled", "corrupt-record"],
    ],
  );
  await expectError(409, "corrupt-record", client.instanceAction("mangled", "start"));
  // A live process started on the VM's spec is taken for its VMM: the directory stays.
  await expectError(409, "vmm-running", client.deleteInstance("held"));
  assert.ok((await readdir(join(home, "vms"))).includes("held"));

  const done = await waitOk(await client.deleteInstance("mangled"));
  assert.equal(done.operationType, "delete");
  assert.ok(!(await readdir(join(home, "vms"))).includes("mangled"));
  await expectError(404, "not-found", client.deleteInstance("mangled"));
  const events = await client.listEvents(0, "mangled");
  assert.deepEqual(
    events.items.map((e) => e.type),
    ["deleted"],
  );
  heldVmm.kill("SIGKILL");
  await new Promise((resolve) => heldVmm.once("exit", resolve));
  await waitOk(await client.deleteInstance("held"));
  assert.deepEqual((await client.listInstances()).unreachable, []);
  assert.deepEqual(await readdir(join(home, "vms")), ["web"]);
});

test("TCP needs the bearer token: none or a wrong one → 401; the token file is 0600 and stable", async () => {
  const none = await raw("GET", "/v1/instances", undefined, {}, true);
  assert.equal(none.status, 401);
  assert.equal(none.headers["www-authenticate"], 'Bearer realm="tsvm"');
  conforms("Error", none.json);
  const wrong = await raw(
    "GET",
    "/v1/instances",
    undefined,
    { authorization: `Bearer ${"0".repeat(64)}` },
    true,
  );
  assert.equal(wrong.status, 401);
  const tcp = new ApiClient({ host: "127.0.0.1", port: tcpPort, token });
  assert.ok((await tcp.listInstances()).items.length >= 1);
  assert.equal((await stat(apiTokenPath(home))).mode & 0o777, 0o600);
  assert.equal(await ensureApiToken(home), token);
  assert.equal((await readFile(apiTokenPath(home), "utf8")).trim(), token);
  assert.equal((await stat(apiSocketPath(home))).mode & 0o777, 0o600);
});

/** Collects what a console attachment receives, and waits until it contains `text`. */
function collector(conn: SerialPortConnection) {
  let seen = "";
  conn.onData((b) => {
    seen += b.toString("utf8");
  });
  return {
    get text() {
      return seen;
    },
    async waitFor(text: string) {
      const t0 = Date.now();
      while (!seen.includes(text)) {
        if (Date.now() - t0 > 10_000)
          throw new Error(`never saw ${JSON.stringify(text)} (saw ${JSON.stringify(seen)})`);
        await new Promise((r) => setTimeout(r, 20));
      }
    },
  };
}

test("the serial console over WebSocket: several viewers see the output, each can type", async () => {
  const a = await client.openSerialPort("web");
  const b = await client.openSerialPort("web");
  const seenA = collector(a);
  const seenB = collector(b);
  a.write("hello");
  await seenA.waitFor("HELLO");
  await seenB.waitFor("HELLO");
  a.close();
  await a.closed;
  b.write("still here");
  await seenB.waitFor("STILL HERE");
  assert.ok(!seenA.text.includes("STILL HERE"), "a detached viewer gets nothing more");
  b.close();
  await b.closed;
  assert.match((await client.getSerialPortOutput("web")).contents, /HELLO/);
  await expectError(404, "not-found", client.openSerialPort("ghost"));
  const tcpNoToken = new ApiClient({ host: "127.0.0.1", port: tcpPort, token: "0".repeat(64) });
  await expectError(401, "unauthorized", tcpNoToken.openSerialPort("web"));
});

test("the event stream follows transitions as they happen", async () => {
  const seen: VmEvent[] = [];
  const abort = new AbortController();
  const start = (await client.listEvents(0)).lastSeq;
  const watching = client.watchEvents(start, (e) => seen.push(e), abort.signal, "web");
  await waitOk(await client.instanceAction("web", "stop"));
  const t0 = Date.now();
  while (seen.length < 2 && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
  abort.abort();
  await watching;
  for (const e of seen) conforms("VmEvent", e);
  assert.deepEqual(
    seen.map((e) => e.to),
    ["STOPPING", "TERMINATED"],
  );
});

test("concurrent calls on one VM are serialized and none is lost; wait with timeoutSec=0 returns at once", async () => {
  const ops = await Promise.all([
    client.instanceAction("web", "start"),
    client.instanceAction("web", "stop"),
    client.instanceAction("web", "start"),
    client.setMachineType("web", "t1-small").catch((e: ApiError) => e),
  ]);
  const quick = await client.waitOperation(ops[0]!.id as string, 0);
  conforms("Operation", quick);
  const results = [];
  for (const op of ops) if (!(op instanceof ApiError)) results.push(await client.waitUntilDone(op.id));
  // setMachineType was queued behind the others, so it is checked when its turn comes: illegal while RUNNING.
  assert.deepEqual(
    results.map((r) => r.error?.code ?? "ok"),
    ["ok", "ok", "ok", "illegal-action"],
  );
  assert.equal((await client.getInstance("web")).status, "RUNNING");
  await waitOk(await client.deleteInstance("web"));
  await expectError(404, "not-found", client.getInstance("web"));
});
