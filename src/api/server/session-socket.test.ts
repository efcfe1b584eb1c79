// Agent sessions over WebSocket end to end: the real API server, a real VMM, and the stand-in guest's
// sessions (host `sh -c`, host-shell-session.ts) behind it. Stdin reaches the command, its exit status
// comes back, a client that reads slowly loses no byte, a client that goes away kills the session, and a
// session that cannot start is an ordinary error answer.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { closeAndKill } from "../../hypervisor/fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "../../hypervisor/fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { ApiClient, ApiError } from "../client.ts";
import { apiSocketPath } from "../data-dir.ts";
import { openSession } from "../session-connection.ts";
import { ApiServer } from "./api-server.ts";

let home: string;
let hv: Hypervisor;
let server: ApiServer;
let client: ApiClient;

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-session-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096, 1));
  hv = await openFixtureHypervisor(home, join(home, "template.img"));
  server = new ApiServer(hv);
  await server.listenUnix(apiSocketPath(home));
  client = ApiClient.forDataDir(home);
  for (const name of ["agent-a", "plain"]) {
    const op = await client.insertInstance({ name });
    assert.equal((await client.waitUntilDone(op.id)).error, null);
  }
});

after(async () => {
  await server?.close();
  if (hv) await closeAndKill(hv);
  await rm(home, { recursive: true, force: true });
});

test("stdin reaches the command, stdout and stderr come apart, and its exit status comes back", async () => {
  const s = await openSession(client, "agent-a", { command: "cat; echo oops >&2; exit 7" });
  let out = "";
  let err = "";
  s.onOutput((bytes, stream) => {
    if (stream === "stdout") out += bytes.toString();
    else err += bytes.toString();
  });
  await s.write(Buffer.from("hi\n"));
  s.end();
  assert.equal(await s.exit, 7);
  assert.equal(out, "hi\n");
  assert.equal(err, "oops\n");
});

test("8 MiB through cat both ways with a slow reader: no byte lost, same sha256", async () => {
  const data = Buffer.alloc(8 * 1048576);
  for (let i = 0; i < data.length; i += 4) data.writeUInt32LE((i * 2654435761) >>> 0, i);
  const s = await openSession(client, "agent-a", { command: "cat" });
  const hash = createHash("sha256");
  let received = 0;
  let slowed = 0;
  s.onOutput(async (bytes) => {
    hash.update(bytes);
    received += bytes.length;
    // A reader that stops now and then: the guest must wait, not drop.
    if (slowed < 20 && received > slowed * 400_000) {
      slowed++;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  await s.write(data);
  s.end();
  assert.equal(await s.exit, 0);
  assert.equal(received, data.length);
  assert.equal(hash.digest("hex"), createHash("sha256").update(data).digest("hex"));
  assert.ok(slowed >= 10, "the reader held the output back several times");
});

test("a signal reaches the command; a client that goes away kills the session", async () => {
  const s = await openSession(client, "agent-a", { command: "sleep 100" });
  await new Promise((r) => setTimeout(r, 200));
  s.signal(15);
  assert.equal(await s.exit, 128 + 15);

  const t = await openSession(client, "agent-a", { command: "echo $$; exec sleep 100" });
  const pid = await new Promise<number>((resolve) => t.onOutput((b) => resolve(Number(b.toString().trim()))));
  assert.doesNotThrow(() => process.kill(pid, 0));
  t.close();
  const t0 = Date.now();
  while (Date.now() - t0 < 5000) {
    try {
      process.kill(pid, 0);
    } catch {
      break;
    }
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.throws(() => process.kill(pid, 0), /ESRCH/, "the session's process is gone");
});

test("a session that cannot start is an error answer: no agent, not running, bad parameters", async () => {
  await assert.rejects(openSession(client, "plain", { command: "true" }), (e: ApiError) => {
    assert.equal(e.reason, "agent-unavailable");
    return true;
  });
  await assert.rejects(
    openSession(client, "nosuch", { command: "true" }),
    (e: ApiError) => e.reason === "not-found",
  );
  await assert.rejects(
    openSession(client, "agent-a", { command: "true", tty: { cols: 0, rows: 5 } }),
    (e: ApiError) => e.status === 400 && /cols/.test(e.message),
  );
  await assert.rejects(
    openSession(client, "agent-a", { command: "x".repeat(9000) }),
    (e: ApiError) => e.status === 400 && /command/.test(e.message),
  );
  const op = await client.instanceAction("plain", "stop");
  await client.waitUntilDone(op.id);
  await assert.rejects(
    openSession(client, "plain", { command: "true" }),
    (e: ApiError) => e.reason === "illegal-action",
  );
});
