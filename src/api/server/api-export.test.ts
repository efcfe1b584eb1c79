// Export and import over the real API (a Unix socket, real VMM processes hosting the counting stand-in
// guest): the export is a streamed application/octet-stream download with its exact length, the import an
// insert with source=archive and a streamed body; refusals are Compute Engine error bodies that conform to
// the OpenAPI document, and every answer does.
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Readable, Writable } from "node:stream";
import { after, before, test } from "node:test";
import { closeAndKill } from "../../hypervisor/fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "../../hypervisor/fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { ApiClient, ApiError } from "../client.ts";
import { apiSocketPath } from "../data-dir.ts";
import { buildOpenApiDocument, documentValidator } from "../openapi.ts";
import { API_BASE } from "../types.ts";
import { ApiServer } from "./api-server.ts";

const validate = documentValidator(buildOpenApiDocument());
const conforms = (name: string, value: unknown) => assert.deepEqual(validate(name, value), []);

let root: string;
const hvs: Hypervisor[] = [];
const servers: ApiServer[] = [];
let source: ApiClient;
let target: ApiClient;

before(async () => {
  root = await mkdtemp(join(tmpdir(), "tsvm-api-export-"));
  await writeFile(join(root, "template.img"), Buffer.alloc(65536, 3));
  const open = async (name: string) => {
    const home = join(root, name);
    const hv = await openFixtureHypervisor(home, join(root, "template.img"), { diskAvailableMiB: 4096 });
    const server = new ApiServer(hv);
    await server.listenUnix(apiSocketPath(home));
    hvs.push(hv);
    servers.push(server);
    return ApiClient.forDataDir(home);
  };
  source = await open("a");
  target = await open("b");
});
after(async () => {
  for (const s of servers) await s.close();
  for (const hv of hvs) await closeAndKill(hv);
  await rm(root, { recursive: true, force: true });
});

/** One raw request on the source's or target's socket: status, headers and body. */
function raw(
  client: ApiClient,
  method: string,
  path: string,
  body?: Buffer,
  type = "application/octet-stream",
): Promise<{ status: number; type: string; length: string | undefined; body: Buffer }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: (client.endpoint as { socketPath: string }).socketPath,
        method,
        path: `${API_BASE}${path}`,
        headers: body ? { "content-type": type } : {},
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () =>
          resolve({
            status: res.statusCode ?? 0,
            type: String(res.headers["content-type"]),
            length: res.headers["content-length"],
            body: Buffer.concat(chunks),
          }),
        );
      },
    );
    req.on("error", reject);
    req.end(body);
  });
}

async function waitDone(client: ApiClient, op: { id: string }) {
  const done = await client.waitUntilDone(op.id);
  assert.equal(done.error, null, done.error?.message);
}

test("export is a streamed download with its exact length; import is insert?source=archive; both conform", async () => {
  await waitDone(source, await source.insertInstance({ name: "web", machineType: "t1-micro" }));
  const running = await raw(source, "GET", "/instances/web/export");
  assert.equal(running.status, 409);
  conforms("Error", JSON.parse(running.body.toString()));
  assert.match(JSON.parse(running.body.toString()).error.message, /RUNNING/);
  await waitDone(source, await source.instanceAction("web", "suspend"));

  const download = await raw(source, "GET", "/instances/web/export");
  assert.equal(download.status, 200);
  assert.equal(download.type, "application/octet-stream");
  assert.equal(Number(download.length), download.body.length);
  assert.equal(download.body.subarray(1, 7).toString(), "TSVMVM");

  // The client: into a sink, with progress reaching the total.
  const got: Buffer[] = [];
  let progress = 0;
  await source.exportInstance(
    "web",
    new Writable({
      write(chunk, _enc, done) {
        got.push(chunk);
        done();
      },
    }),
    { onProgress: (n, total) => (progress = n === total ? n : progress) },
  );
  assert.equal(progress, download.body.length);

  const op = await target.importInstance(Readable.from([Buffer.concat(got)]));
  conforms("Operation", op);
  assert.equal(op.operationType, "insert");
  assert.equal(op.status, "DONE");
  const vm = await target.getInstance("web");
  conforms("Instance", vm);
  assert.equal(vm.status, "SUSPENDED");

  // Refusals: Compute Engine error bodies with the table's statuses, nothing created.
  const before = await target.listInstances();
  const taken = await raw(target, "POST", "/instances?source=archive", download.body);
  assert.equal(taken.status, 409);
  assert.equal(JSON.parse(taken.body.toString()).error.errors[0].reason, "already-exists");
  const damaged = Buffer.from(download.body);
  damaged[damaged.length - 10]! ^= 1;
  const bad = await raw(target, "POST", "/instances?source=archive&name=other", damaged);
  assert.equal(bad.status, 400);
  conforms("Error", JSON.parse(bad.body.toString()));
  assert.equal(JSON.parse(bad.body.toString()).error.errors[0].reason, "bad-archive");
  const json = await raw(
    target,
    "POST",
    "/instances?source=archive&name=other",
    download.body,
    "application/json",
  );
  assert.equal(json.status, 415);
  const zip = await raw(target, "POST", "/instances?source=zip", download.body);
  assert.equal(zip.status, 400);
  assert.equal(JSON.parse(zip.body.toString()).error.errors[0].reason, "invalid-argument");
  const flag = await raw(source, "GET", "/instances/web/export?snapshots=maybe");
  assert.equal(flag.status, 400);
  assert.deepEqual(
    (await target.listInstances()).items.map((i) => i.name),
    before.items.map((i) => i.name),
  );
  assert.deepEqual(
    (await readdir(join(root, "b"))).filter((n) => n.startsWith(".tmp")),
    [],
    "no staging left behind",
  );

  // A refusal that comes early (the name, from the manifest) reaches the client while it still uploads.
  const big = Readable.from(
    (async function* () {
      yield download.body;
      for (let i = 0; i < 64; i++) yield Buffer.alloc(1 << 20);
    })(),
  );
  await assert.rejects(
    target.importInstance(big),
    (e: Error) => e instanceof ApiError && e.reason === "already-exists",
  );
});

test("import of a VM with a card on a network the target lacks: invalid-network, or dropMissingNetworks", async () => {
  await waitDone(source, await source.insertNetwork({ name: "lab" }));
  await waitDone(
    source,
    await source.insertInstance({
      name: "lan",
      machineType: "t1-micro",
      networkInterfaces: [{ network: "nat" }, { network: "lab" }],
    }),
  );
  await waitDone(source, await source.instanceAction("lan", "stop"));
  const file = await raw(source, "GET", "/instances/lan/export");
  assert.equal(file.status, 200);

  const missing = await raw(target, "POST", "/instances?source=archive", file.body);
  assert.equal(missing.status, 400);
  conforms("Error", JSON.parse(missing.body.toString()));
  const error = JSON.parse(missing.body.toString()).error;
  assert.equal(error.errors[0].reason, "invalid-network");
  assert.match(error.message, /network 'lab', which this host does not have/);
  const flag = await raw(target, "POST", "/instances?source=archive&dropMissingNetworks=maybe", file.body);
  assert.equal(flag.status, 400);
  assert.equal(JSON.parse(flag.body.toString()).error.errors[0].reason, "invalid-argument");
  await assert.rejects(target.getInstance("lan"), (e: Error) => e instanceof ApiError && e.status === 404);

  const op = await target.importInstance(Readable.from([file.body]), { dropMissingNetworks: true });
  assert.equal(op.error, null);
  const vm = await target.getInstance("lan");
  conforms("Instance", vm);
  assert.deepEqual(
    vm.networkInterfaces.map((c) => c.network),
    ["nat"],
  );
});
