// The remote API options: taken out of the command line into the environment (not `tsvm daemon`'s own
// --token-file), and the endpoint they name, with one clear line for each bad value.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { remoteEndpoint, takeRemoteOptions } from "./remote-api.ts";

test("--api-url and --token-file go to the environment, before or after the command, never past --", () => {
  const env: NodeJS.ProcessEnv = {};
  assert.deepEqual(
    takeRemoteOptions(
      ["--api-url", "http://127.0.0.1:7101", "list", "--token-file=T", "--format", "json"],
      env,
    ),
    ["list", "--format", "json"],
  );
  assert.equal(env.TSVM_API_URL, "http://127.0.0.1:7101");
  assert.equal(env.TSVM_API_TOKEN_FILE, "T");
  const exec: NodeJS.ProcessEnv = {};
  assert.deepEqual(takeRemoteOptions(["exec", "web", "--", "echo", "--api-url", "x"], exec), [
    "exec",
    "web",
    "--",
    "echo",
    "--api-url",
    "x",
  ]);
  assert.equal(exec.TSVM_API_URL, undefined);
  assert.throws(() => takeRemoteOptions(["list", "--api-url"], {}), /--api-url needs a value/);
});

test("tsvm daemon keeps its own --token-file (the cluster's token)", () => {
  const env: NodeJS.ProcessEnv = {};
  const argv = ["daemon", "--cluster", "http://127.0.0.1:2379", "--token-file", "TOKEN"];
  assert.deepEqual(takeRemoteOptions(argv, env), argv);
  assert.equal(env.TSVM_API_TOKEN_FILE, undefined);
});

test("the endpoint: none without TSVM_API_URL; a bad URL, no token file or an empty one is one clear line", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-remote-"));
  try {
    const token = join(dir, "token");
    await writeFile(token, "secret-token-0123456789\n");
    assert.equal(remoteEndpoint({}), undefined);
    assert.deepEqual(remoteEndpoint({ TSVM_API_URL: "http://127.0.0.1:7101", TSVM_API_TOKEN_FILE: token }), {
      host: "127.0.0.1",
      port: 7101,
      token: "secret-token-0123456789",
    });
    assert.throws(
      () => remoteEndpoint({ TSVM_API_URL: "https://127.0.0.1:7101", TSVM_API_TOKEN_FILE: token }),
      /is not http:\/\/HOST:PORT/,
    );
    assert.throws(() => remoteEndpoint({ TSVM_API_URL: "http://127.0.0.1:7101" }), /needs its token/);
    await writeFile(token, "\n");
    assert.throws(
      () => remoteEndpoint({ TSVM_API_URL: "http://127.0.0.1:7101", TSVM_API_TOKEN_FILE: token }),
      /is empty/,
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
