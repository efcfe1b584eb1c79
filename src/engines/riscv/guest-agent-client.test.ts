import assert from "node:assert/strict";
import { test } from "node:test";
import {
  decodeBase64,
  encodeBase64,
  GUEST_AGENT_MAX_LINE,
  GuestAgentClient,
  type GuestAgentError,
} from "./guest-agent-client.ts";

const ascii = (s: string) => new TextEncoder().encode(s);

/** A client wired to a scripted guest: `sent` holds the host's lines, `feed` plays the guest's bytes. */
function setup() {
  const sent: string[] = [];
  let partial = "";
  const errors: string[] = [];
  const client = new GuestAgentClient(
    (bytes) => {
      partial += new TextDecoder().decode(bytes);
      const lines = partial.split("\n");
      partial = lines.pop()!;
      sent.push(...lines);
    },
    { onProtocolError: (m) => errors.push(m) },
  );
  const feed = (s: string | Uint8Array) => client.receive(typeof s === "string" ? ascii(s) : s);
  return { client, sent, errors, feed };
}

/** A connected client (HELLO seen). */
function connected() {
  const s = setup();
  s.feed("HELLO tsvm-agent 1\n");
  assert.equal(s.client.connected, true);
  return s;
}

const lastId = (sent: string[], verb: string): number => {
  const line = [...sent].reverse().find((l) => l.startsWith(`${verb} `));
  assert.ok(line, `no ${verb} sent; sent: ${sent.join(" | ")}`);
  return Number(line.split(" ")[1]);
};

/** Lets exec reach the point where it has sent its request. */
const tick = () => new Promise((r) => setTimeout(r, 0));

/** A seeded xorshift32, so a failing hostile-input case can be replayed. */
function rng(seed: number) {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x1_0000_0000;
  };
}

test("base64: round trip of every length 0…40, strict refusal of malformed and non-canonical text", () => {
  const rand = rng(7);
  for (let n = 1; n <= 40; n++) {
    const bytes = Uint8Array.from({ length: n }, () => Math.floor(rand() * 256));
    const text = encodeBase64(bytes);
    assert.equal(text, Buffer.from(bytes).toString("base64"));
    assert.deepEqual(decodeBase64(text), bytes);
  }
  for (const bad of ["", "QQ", "QQ=", "Q===", "QR==", "QQ=A", "Q Q=", "QQ==QQ==", "ÀÀÀÀ", "QQ\n=", "////="]) {
    assert.equal(decodeBase64(bad), null, JSON.stringify(bad));
  }
});

test("exec: the request carries the command; output split anywhere is delivered exactly; exit status exact", async () => {
  const { client, sent, feed } = connected();
  const out: string[] = [];
  const run = client.exec("echo hi; echo 'é' >&2; exit 7", {
    onOutput: (b, stream) => out.push(`${stream}:${Buffer.from(b).toString("latin1")}`),
  });
  await tick();
  const id = lastId(sent, "EXEC");
  const cmd = sent.at(-1)!.split(" ")[2]!;
  assert.equal(Buffer.from(cmd, "base64").toString(), "echo hi; echo 'é' >&2; exit 7");
  const reply = `OUT ${id} ${encodeBase64(Uint8Array.of(0, 1, 2, 255))}\nERR ${id} ${encodeBase64(ascii("x"))}\nEXIT ${id} 7\n`;
  // One byte at a time: lines cut anywhere still parse.
  for (const byte of ascii(reply)) feed(Uint8Array.of(byte));
  assert.deepEqual(await run, { exitCode: 7 });
  assert.deepEqual(out, ["stdout:\0\x01\x02\xff", "stderr:x"]);
});

test("exec before the agent said hello: AGENT_NOT_CONNECTED; waitForAgent gives up within its bound", async () => {
  const { client, sent } = setup();
  await assert.rejects(client.exec("true"), { code: "AGENT_NOT_CONNECTED" });
  const started = Date.now();
  await assert.rejects(client.waitForAgent(300), { code: "AGENT_NOT_CONNECTED" });
  assert.ok(Date.now() - started < 2000);
  assert.ok(sent.some((l) => /^PING \d+$/.test(l)));
});

test("ping: resolves on the matching PONG, which also marks the agent connected", async () => {
  const { client, sent, feed } = setup();
  const p = client.ping(2000);
  feed("PONG 999\n"); // someone else's: ignored
  feed(`PONG ${lastId(sent, "PING")}\n`);
  await p;
  assert.equal(client.connected, true);
  await assert.rejects(client.ping(50), { code: "AGENT_TIMEOUT" });
});

test("waitForAgent: a HELLO from an agent that starts late answers it at once", async () => {
  const { client, sent, feed } = setup();
  const started = Date.now();
  const waiting = client.waitForAgent(60_000);
  await tick();
  assert.equal(sent.filter((l) => l.startsWith("PING ")).length, 1);
  feed("HELLO tsvm-agent 1\n");
  await waiting;
  assert.ok(Date.now() - started < 1000);
  assert.equal(client.connected, true);
});

test("timeout: the command is killed, rejected with AGENT_TIMEOUT; the next exec waits for its EXIT", async () => {
  const { client, sent, feed } = connected();
  await assert.rejects(client.exec("sleep 1000", { timeoutMs: 30 }), { code: "AGENT_TIMEOUT" });
  const killed = lastId(sent, "KILL");
  assert.equal(killed, lastId(sent, "EXEC"));
  const next = client.exec("true");
  await new Promise((r) => setTimeout(r, 20));
  // Not sent while the killed command still holds the agent.
  assert.equal(lastId(sent, "EXEC"), killed);
  feed(`OUT ${killed} ${encodeBase64(ascii("late"))}\nEXIT ${killed} 137\n`);
  await tick();
  const id = lastId(sent, "EXEC");
  assert.notEqual(id, killed);
  feed(`EXIT ${id} 0\n`);
  assert.deepEqual(await next, { exitCode: 0 });
});

test("abort signal kills the command: AGENT_ABORTED and a KILL for it", async () => {
  const { client, sent } = connected();
  const ac = new AbortController();
  const run = client.exec("cat", { signal: ac.signal });
  await tick();
  ac.abort();
  await assert.rejects(run, { code: "AGENT_ABORTED" });
  assert.equal(lastId(sent, "KILL"), lastId(sent, "EXEC"));
});

test("BUSY from the agent rejects with AGENT_BUSY; a second exec while one runs is refused", async () => {
  const { client, sent, feed } = connected();
  const run = client.exec("true");
  await assert.rejects(client.exec("true"), { code: "AGENT_BUSY" });
  await tick();
  feed(`BUSY ${lastId(sent, "EXEC")}\n`);
  await assert.rejects(run, { code: "AGENT_BUSY" });
});

test("hostile lines fail the running command with AGENT_PROTOCOL and kill it; the client carries on", async () => {
  const cases = [
    (id: number) => `OUT ${id} not-base64!\n`,
    (id: number) => `OUT ${id} QR==\n`,
    (id: number) => `OUT ${id}\n`,
    (id: number) => `EXIT ${id} 256\n`,
    (id: number) => `EXIT ${id} -1\n`,
    (id: number) => `EXIT ${id} 07\n`,
    (id: number) => `EXIT ${id}\n`,
    (id: number) => `PONG ${id} extra\n`,
    (id: number) => `EXIT ${id} 0\r\n`,
    () => "EXIT 0 0\n",
    () => "EXIT 99999999999 0\n",
    () => "HELLO tsvm-agent 2\n",
    () => "\u00ff\n",
    () => "garbage\n",
    () => `OUT 1 ${"A".repeat(GUEST_AGENT_MAX_LINE)}\n`,
  ];
  for (const make of cases) {
    const { client, sent, feed, errors } = connected();
    const run = client.exec("true");
    await tick();
    const id = lastId(sent, "EXEC");
    feed(make(id));
    await assert.rejects(run, (e: GuestAgentError) => {
      assert.equal(e.code, "AGENT_PROTOCOL", `${JSON.stringify(make(id).slice(0, 40))}: ${e.message}`);
      return true;
    });
    assert.equal(lastId(sent, "KILL"), id);
    assert.equal(client.protocolErrors, 1);
    assert.equal(errors.length, 1);
  }
});

test("an over-long line is dropped up to its newline; the next line parses", async () => {
  const { client, sent, feed } = connected();
  feed(`${"x".repeat(3 * GUEST_AGENT_MAX_LINE)}`);
  feed("yyy\n");
  assert.equal(client.protocolErrors, 1);
  const run = client.exec("true");
  await tick();
  feed(`EXIT ${lastId(sent, "EXEC")} 3\n`);
  assert.deepEqual(await run, { exitCode: 3 });
  assert.equal(client.protocolErrors, 1);
});

test("random bytes from a hostile guest never throw, and a well-formed exchange still works after", async () => {
  for (let seed = 1; seed <= 20; seed++) {
    const rand = rng(seed);
    const { client, sent, feed } = setup();
    const words = [
      "OUT ",
      "ERR ",
      "EXIT ",
      "PONG ",
      "BUSY ",
      "HELLO tsvm-agent 1",
      "1",
      " ",
      "\n",
      "==",
      "QQ",
    ];
    for (let i = 0; i < 2000; i++) {
      if (rand() < 0.5) feed(ascii(words[Math.floor(rand() * words.length)]!));
      else feed(Uint8Array.from({ length: Math.floor(rand() * 64) }, () => Math.floor(rand() * 256)));
    }
    feed("\nHELLO tsvm-agent 1\n");
    const run = client.exec("echo ok");
    await tick();
    feed(`EXIT ${lastId(sent, "EXEC")} 0\n`);
    assert.deepEqual(await run, { exitCode: 0 }, `seed ${seed}`);
  }
});

test("output for another id is ignored; a HELLO mid-command rejects it with AGENT_RESTARTED", async () => {
  const { client, sent, feed } = connected();
  const got: Uint8Array[] = [];
  const run = client.exec("sleep 5", { onOutput: (b) => got.push(b) });
  await tick();
  const id = lastId(sent, "EXEC");
  feed(`OUT ${id + 1} ${encodeBase64(ascii("not mine"))}\nEXIT ${id + 1} 0\n`);
  feed("HELLO tsvm-agent 1\n");
  await assert.rejects(run, { code: "AGENT_RESTARTED" });
  assert.equal(got.length, 0);
  assert.equal(client.protocolErrors, 0);
});

test("close rejects the command in flight and every later call with AGENT_CLOSED", async () => {
  const { client } = connected();
  const run = client.exec("sleep 5");
  client.close("the VM stopped");
  await assert.rejects(run, { code: "AGENT_CLOSED", message: "the VM stopped" });
  await assert.rejects(client.exec("true"), { code: "AGENT_CLOSED" });
  await assert.rejects(client.ping(), { code: "AGENT_CLOSED" });
});

test("an onOutput that throws stops the command with its own error instead of escaping receive", async () => {
  const { client, sent, feed } = connected();
  const run = client.exec("yes", {
    onOutput: () => {
      throw new Error("stdout closed");
    },
  });
  await tick();
  const id = lastId(sent, "EXEC");
  feed(`OUT ${id} ${encodeBase64(ascii("y\n"))}\n`);
  await assert.rejects(run, { message: "stdout closed" });
  assert.equal(lastId(sent, "KILL"), id);
});

test("commands the agent cannot carry are refused before anything is sent", async () => {
  const { client, sent } = connected();
  await assert.rejects(client.exec("a".repeat(20_000)), { code: "AGENT_BAD_COMMAND" });
  await assert.rejects(client.exec("echo \0"), { code: "AGENT_BAD_COMMAND" });
  assert.equal(sent.filter((l) => l.startsWith("EXEC")).length, 0);
});
