// End to end with real Linux and the guest agent: a VM of the default image through the daemon (started on
// demand by bin/tsvm); `tsvm exec` while it boots (waiting for the agent) and after, the exec stream of the
// API checked against the OpenAPI document, and a graceful stop — the agent runs `poweroff` in the guest, which
// powers itself off before the stop timeout would force it.
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { request } from "node:http";
import { join } from "node:path";
import { test } from "node:test";
import { apiSocketPath } from "../../src/api/data-dir.ts";
import { buildOpenApiDocument, documentValidator } from "../../src/api/openapi.ts";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, root, until } from "./linux-vm-fixture.ts";

/** Far longer than a poweroff takes: a stop that ends sooner was not forced by the timeout. */
const STOP_TIMEOUT_MS = 120_000;
const { home, client, tsvm } = await linuxVmFixture("hv-agent");

/** The VMM logs the agent's first words: from then on a stop can ask the guest. */
function agentConnected(): Promise<true> {
  return until("the guest agent", async () => {
    const log = await readFile(join(home, "vms/vm/vmm.log"), "utf8");
    return log.includes("guest agent connected") ? true : undefined;
  });
}

test("tsvm exec while the guest boots: waits for the agent, streams stdout and stderr, exits with the status", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 120_000,
}, async () => {
  await writeFile(join(home, "config.json"), JSON.stringify({ stopTimeoutMs: STOP_TIMEOUT_MS }));
  const created = await tsvm("create", "vm", "--memory", "256M", "--async");
  assert.equal(created.code, 0, created.stderr);
  await until("the VM running", async () =>
    (await client.getInstance("vm")).status === "RUNNING" ? true : undefined,
  );
  // Just RUNNING, the kernel still booting: without waiting for the agent, a clear refusal.
  const early = await tsvm("exec", "vm", "--agent-wait", "0", "--", "true");
  assert.equal(early.code, 255);
  // (Its stdin is a pipe, so it runs as a session, which says it in these words.)
  assert.match(early.stderr, /the guest agent is not connected yet \(the VM is still booting\?\)/);
  const r = await tsvm(
    "exec",
    "vm",
    "--agent-wait",
    String(Math.ceil(BOOT_TIMEOUT_MS / 1000)),
    "--",
    "sh",
    "-c",
    "echo hi; echo err >&2; exit 7",
  );
  assert.equal(r.stdout, "hi\n");
  assert.equal(r.stderr, "err\n");
  assert.equal(r.code, 7);
});

test("tsvm exec: arguments arrive as they were given; exit status 0; an unknown VM fails clearly", {
  skip: noImage,
}, async () => {
  const r = await tsvm("exec", "vm", "--", "printf", "%s|", "a b", "it's", "$HOME");
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "a b|it's|$HOME|");
  const unknown = await tsvm("exec", "nosuchvm", "--", "true");
  assert.equal(unknown.code, 255);
  assert.match(unknown.stderr, /nosuchvm/);
  const usage = await tsvm("exec", "vm");
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /give the command after '--'/);
});

test("--timeout kills a command that runs too long; a cancelled exec is killed in the guest; the agent serves on", {
  skip: noImage,
}, async () => {
  const slow = await tsvm("exec", "vm", "--timeout", "2", "--", "sleep", "1000");
  assert.equal(slow.code, 255);
  assert.match(slow.stderr, /did not finish within 2000 ms and was killed/);

  const abort = new AbortController();
  let out = "";
  const cancelled = client.exec(
    "vm",
    { command: "echo started; exec sleep 999" },
    (bytes) => {
      out += bytes.toString();
      if (out.includes("started")) abort.abort();
    },
    abort.signal,
  );
  await assert.rejects(cancelled, /cancelled/);
  // The agent is free again only once the killed command has ended: this exec proves both.
  const ps = await until(
    "the next exec",
    async () => {
      const r = await tsvm("exec", "vm", "--", "ps");
      return r.code === 0 ? r.stdout : undefined;
    },
    60_000,
  );
  assert.doesNotMatch(ps, /sleep 999/);
  assert.doesNotMatch(ps, /sleep 1000/);
});

test("the API's exec stream: every NDJSON line conforms to ExecChunk; output then the exit status", {
  skip: noImage,
}, async () => {
  const validate = documentValidator(buildOpenApiDocument());
  const body = JSON.stringify({ command: "seq 1 3000; echo done >&2; exit 3", timeoutSec: 120 });
  const { status, type, text } = await new Promise<{ status: number; type: string; text: string }>(
    (done, fail) => {
      const req = request({
        socketPath: apiSocketPath(home),
        method: "POST",
        path: "/v1/instances/vm/exec",
        headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
      });
      req.on("error", fail);
      req.on("response", (res) => {
        let text = "";
        res.setEncoding("utf8");
        res.on("data", (c: string) => (text += c));
        res.on("end", () =>
          done({ status: res.statusCode ?? 0, type: String(res.headers["content-type"]), text }),
        );
      });
      req.end(body);
    },
  );
  assert.equal(status, 200, text);
  assert.equal(type, "application/x-ndjson");
  const lines = text
    .trimEnd()
    .split("\n")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
  for (const line of lines) assert.deepEqual(validate("ExecChunk", line), [], JSON.stringify(line));
  assert.deepEqual(lines.at(-1), { exitCode: 3 });
  const out = (stream: string) =>
    Buffer.concat(
      lines.filter((l) => l.stream === stream).map((l) => Buffer.from(String(l.data), "base64")),
    ).toString();
  assert.equal(out("stdout"), `${Array.from({ length: 3000 }, (_, i) => i + 1).join("\n")}\n`);
  assert.equal(out("stderr"), "done\n");
});

test("stop asks the guest to power off through its agent; it is not forced", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + STOP_TIMEOUT_MS + 120_000,
}, async () => {
  await agentConnected(); // the VM of the tests above

  const started = Date.now();
  const stopped = await tsvm("stop", "vm");
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.ok(Date.now() - started < STOP_TIMEOUT_MS, "the stop ended before its timeout");
  const vm = await client.getInstance("vm");
  assert.equal(vm.status, "TERMINATED");
  const last = vm.history.at(-1)!;
  assert.equal(last.to, "TERMINATED");
  assert.match(last.reason, /^the guest powered off/);
  assert.doesNotMatch(last.reason, /forced/);
  // The VMM saw the guest's own power-off (SBI system reset), not a stop of its engine.
  const exit = JSON.parse(await readFile(join(home, "vms/vm/exit.json"), "utf8")) as { reason: string };
  assert.equal(exit.reason, "poweroff");

  const late = await tsvm("exec", "vm", "--", "true");
  assert.equal(late.code, 255);
  assert.match(
    late.stderr,
    /cannot exec VM 'vm' while it is TERMINATED; exec is allowed only when the VM is RUNNING/,
  );
});
