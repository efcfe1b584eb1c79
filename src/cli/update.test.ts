// `tsvm update` as a user runs it (bin/tsvm, a real daemon, the API's PATCH), on a VM hosting the counting
// stand-in guest with a NAT card (real passt): the new forwards as a line and as JSON, and each refusal
// (a running VM, a privileged port, usage errors) in one line with its exit status.
import assert from "node:assert/strict";
import { createServer } from "node:net";
import { after, before, test } from "node:test";
import { type CliInstallation, cliInstallation } from "./fixtures/cli-installation.ts";

let installation: CliInstallation;
const tsvm = (...args: string[]) => installation.tsvm(...args);

before(async () => {
  installation = await cliInstallation("cli-update");
});

after(async () => {
  await tsvm("delete", "web");
  await installation.remove();
});

/** A TCP port on 127.0.0.1 free now (the kernel's choice, let go at once). */
async function freePort(): Promise<number> {
  const s = createServer();
  await new Promise<void>((resolve) => s.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = s.address() as { port: number };
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** The one line a refused command printed, and its exit status. */
async function refused(args: string[], code: number, message: RegExp): Promise<void> {
  const r = await tsvm(...args);
  assert.equal(r.code, code, `${args.join(" ")}: ${r.stderr}`);
  assert.match(r.stderr.trim(), message);
  assert.equal(r.stderr.trim().split("\n").length, 1, r.stderr);
}

test("tsvm update: forwards replaced as a line and as JSON; refusals in one line", async () => {
  assert.equal((await tsvm("create", "web", "--machine-type", "t1-micro")).code, 0);
  const port = await freePort();
  await refused(["update", "web", "--forward", `tcp:${port}:80`], 1, /^tsvm update: .*RUNNING.*TERMINATED/);
  assert.equal((await tsvm("stop", "web")).code, 0);

  const line = await tsvm("update", "web", "--forward", `tcp:${port}:80`, "--forward", `udp:${port}:53`);
  assert.equal(line.code, 0, line.stderr);
  assert.equal(
    line.stdout,
    `web: port forwards tcp:127.0.0.1:${port}:80, udp:127.0.0.1:${port}:53 (from its next start).\n`,
  );
  const json = await tsvm("update", "web", "--no-forwards", "--format", "json");
  assert.equal(json.code, 0, json.stderr);
  assert.deepEqual((JSON.parse(json.stdout) as { forwards: unknown[] }).forwards, []);

  await refused(["update", "web", "--forward", "tcp:80:80"], 1, /host port 80 is privileged/);
  await refused(["update", "nope", "--no-forwards"], 1, /^tsvm update: .*'nope'/);
  await refused(["update", "web"], 2, /nothing to change/);
  await refused(
    ["update", "web", "--no-forwards", "--forward", `tcp:${port}:80`],
    2,
    /give --forward or --no-forwards, not both/,
  );
  await refused(["update", "web", "--forward", "tcp:x:80"], 2, /^tsvm update: --forward: /);
});
