// The web console's login codes and sessions on a clock of the test's own: a code works once and for ten
// minutes, a session until its lifetime ends, and each refusal says which case it is.

import assert from "node:assert/strict";
import { test } from "node:test";
import { parseListenAddress } from "./web-console-server.ts";
import { LOGIN_CODE_MS, WebLogins } from "./web-logins.ts";

test("a code is exchanged once for a session that ends after its lifetime", () => {
  let now = 1_000_000;
  const logins = new WebLogins(60, () => now);
  const { code, expiresAt } = logins.issueCode();
  assert.equal(expiresAt, now + LOGIN_CODE_MS);
  const first = logins.redeem(code);
  assert.ok(first.ok);
  assert.deepEqual(logins.check(first.session), { ok: true });
  const again = logins.redeem(code);
  assert.ok(!again.ok);
  assert.match(again.problem, /was used already/);
  now += 59_999;
  assert.deepEqual(logins.check(first.session), { ok: true });
  now += 1;
  const expired = logins.check(first.session);
  assert.ok(!expired.ok);
  assert.match(expired.problem, /session expired/);
  logins.end(first.session);
  const ended = logins.check(first.session);
  assert.ok(!ended.ok);
  assert.match(ended.problem, /unknown to the daemon/);
});

test("an unused code stops working after ten minutes; wrong and malformed codes are refused", () => {
  let now = 0;
  const logins = new WebLogins(60, () => now);
  const { code } = logins.issueCode();
  now += LOGIN_CODE_MS;
  const late = logins.redeem(code);
  assert.ok(!late.ok);
  assert.match(late.problem, /expired \(codes work for 10 minutes\)/);
  const wrong = logins.redeem("f".repeat(32));
  assert.ok(!wrong.ok);
  assert.match(wrong.problem, /this login code is wrong/);
  const junk = logins.redeem("<script>");
  assert.ok(!junk.ok);
  assert.match(junk.problem, /not one 'tsvm web' printed/);
  assert.match((logins.check(undefined) as { problem: string }).problem, /sign in first/);
});

test("only the newest 64 codes are kept", () => {
  const logins = new WebLogins();
  const first = logins.issueCode().code;
  for (let i = 0; i < 64; i++) logins.issueCode();
  assert.ok(!logins.redeem(first).ok);
});

test("what is saved holds hashes only; restored, its sessions keep their end and its codes work once", () => {
  let now = 5_000_000;
  const logins = new WebLogins(60, () => now);
  const used = logins.issueCode().code;
  const spare = logins.issueCode().code;
  const first = logins.redeem(used);
  assert.ok(first.ok);
  const saved = logins.state();
  const text = JSON.stringify(saved);
  for (const secret of [used, spare, first.session]) assert.ok(!text.includes(secret), "no secret is saved");
  assert.equal(saved.sessions.length, 1);
  assert.equal(saved.sessions[0]!.endsAt, now + 60_000);

  now += 30_000;
  // A restart with a longer lifetime in its config: the session ends when it was going to.
  const restored = new WebLogins(3600, () => now, saved);
  assert.deepEqual(restored.check(first.session), { ok: true });
  assert.match((restored.redeem(used) as { problem: string }).problem, /was used already/);
  const second = restored.redeem(spare);
  assert.ok(second.ok);
  assert.match((restored.redeem(spare) as { problem: string }).problem, /was used already/);
  now += 30_000;
  assert.match((restored.check(first.session) as { problem: string }).problem, /session expired/);
  assert.deepEqual(restored.check(second.session), { ok: true });
  // Codes that expired while no daemon ran are gone.
  now += LOGIN_CODE_MS;
  const late = new WebLogins(60, () => now, { ...saved, usedCodes: [] });
  assert.match((late.redeem(spare) as { problem: string }).problem, /this login code is wrong/);
});

test("listen addresses: IP literals or localhost with a port, else one clear line", () => {
  assert.deepEqual(parseListenAddress("127.0.0.1:8090"), { host: "127.0.0.1", port: 8090 });
  assert.deepEqual(parseListenAddress("[::1]:0"), { host: "::1", port: 0 });
  assert.deepEqual(parseListenAddress("localhost:9000"), { host: "localhost", port: 9000 });
  assert.throws(() => parseListenAddress("8090"), /the address '8090' is not HOST:PORT/);
  assert.throws(() => parseListenAddress("127.0.0.1:65536"), /is not HOST:PORT/);
  assert.throws(() => parseListenAddress("example.com:80"), /must be an IP address or localhost/);
});
