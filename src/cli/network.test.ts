// `tsvm network` as a user runs it (bin/tsvm, a real daemon): create, list, describe and delete, the
// refusals in one line each, and the same through the REST API's /v1/networks with its error codes.
import assert from "node:assert/strict";
import { readdir } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

let installation: CliInstallation;
const tsvm = (...args: string[]) => installation.tsvm(...args);

before(async () => {
  installation = await cliInstallation("cli-network");
});

after(async () => {
  await installation.remove();
});

/** A JSON request to the daemon's API socket (the daemon the CLI started). */
function api(method: string, path: string, body?: unknown): Promise<{ status: number; body: any }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        socketPath: join(installation.home, "api.sock"),
        method,
        path,
        headers: { "content-type": "application/json" },
      },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => {
          text += c;
        });
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) }));
      },
    );
    req.on("error", reject);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

test("tsvm network create, list, describe and delete; refusals name what is wrong", async () => {
  const help = await tsvm("network", "--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: tsvm network create NAME \[--subnet CIDR\]/);

  const created = await tsvm("network", "create", "lab");
  assert.equal(created.code, 0, created.stderr);
  assert.equal(created.stdout, "created network 'lab' (10.77.0.0/24)\n");
  const second = await tsvm("network", "create", "web", "--subnet", "192.168.50.0/24", "--format", "json");
  assert.equal(second.code, 0, second.stderr);
  assert.equal(JSON.parse(second.stdout).gatewayAddress, "192.168.50.1");

  for (const [args, words] of [
    [["network", "create", "lab"], "the network 'lab' already exists"],
    [["network", "create", "nat"], "'nat' is reserved"],
    [["network", "create", "x", "--subnet", "10.77.0.0/16"], "overlaps the network 'lab' (10.77.0.0/24)"],
    [["network", "create", "x", "--subnet", "8.8.8.0/24"], "it must lie in 10.0.0.0/8"],
    [["network", "create", "x", "--subnet", "10.1.0.0/30"], "from /16 to /29"],
    [["network", "delete", "nope"], "the network 'nope' was not found"],
  ] as const) {
    const r = await tsvm(...args);
    assert.equal(r.code, 1, `${args.join(" ")}: ${r.stdout}`);
    assert.equal(r.stderr.trimEnd().split("\n").length, 1, r.stderr);
    assert.ok(r.stderr.startsWith("tsvm network: ") && r.stderr.includes(words), r.stderr);
  }
  const usage = await tsvm("network", "list", "extra");
  assert.equal(usage.code, 2);

  const list = await tsvm("network", "list", "--format", "json");
  assert.equal(list.code, 0, list.stderr);
  const items = JSON.parse(list.stdout) as Array<{ name: string; subnet: string; members: unknown[] }>;
  assert.deepEqual(
    items.map((n) => `${n.name} ${n.subnet} ${n.members.length}`),
    ["lab 10.77.0.0/24 0", "web 192.168.50.0/24 0"],
  );
  const table = await tsvm("network", "list");
  assert.match(table.stdout, /^NAME +SUBNET +CARDS +SWITCH\nlab +10\.77\.0\.0\/24 +0 +-\n/);
  const described = await tsvm("network", "describe", "lab");
  assert.match(described.stdout, /switch: +not running/);

  // The API: the same collection, Compute Engine-style error bodies.
  const missing = await api("GET", "/v1/networks/nope");
  assert.equal(missing.status, 404);
  assert.equal(missing.body.error.errors[0].reason, "not-found");
  const overlap = await api("POST", "/v1/networks", { name: "x", subnet: "192.168.50.128/25" });
  assert.equal(overlap.status, 409);
  assert.equal(overlap.body.error.errors[0].reason, "subnet-overlap");
  const bad = await api("POST", "/v1/networks", { name: "x", subnet: "10.1.0.0/8" });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error.errors[0].reason, "invalid-subnet");
  const unknownField = await api("POST", "/v1/networks", { name: "x", router: "10.1.0.1" });
  assert.equal(unknownField.status, 400);
  const op = await api("POST", "/v1/networks", { name: "db" });
  assert.equal(op.status, 200);
  assert.equal(op.body.operationType, "insertNetwork");
  assert.equal(op.body.status, "DONE");
  assert.equal(op.body.error, null);

  for (const name of ["lab", "web", "db"]) {
    const deleted = await tsvm("network", "delete", name);
    assert.equal(deleted.code, 0, deleted.stderr);
  }
  assert.deepEqual(await readdir(join(installation.home, "networks")), []);
  const empty = await tsvm("network", "list");
  assert.equal(empty.stdout, "no networks\n");
});
