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
    () => "HELLO tsvm-agent 3\n",
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

// ---- protocol version 2: sessions ----

/** A client connected to a version-2 agent. */
function connectedV2() {
  const s = setup();
  s.feed("HELLO tsvm-agent 2\n");
  assert.equal(s.client.version, 2);
  return s;
}

const b64 = (s: string | Uint8Array) => encodeBase64(typeof s === "string" ? ascii(s) : s);

test("open: OPEN carries mode, size and command (or - for a login shell); output, EXIT, ACK of output", async () => {
  const { client, sent, feed } = connectedV2();
  const out: string[] = [];
  const session = client.open("stty size", {
    tty: { cols: 100, rows: 30 },
    onOutput: (b, stream) => {
      out.push(`${stream}:${Buffer.from(b).toString()}`);
    },
  });
  const id = lastId(sent, "OPEN");
  assert.equal(sent.at(-1), `OPEN ${id} pty 100 30 ${b64("stty size")}`);
  feed(`OUT ${id} ${b64("30 ")}\nOUT ${id} ${b64("100\r\n")}\n`);
  await tick();
  // One ACK for what was delivered in one turn.
  assert.equal(sent.at(-1), `ACK ${id} 8`);
  feed(`EXIT ${id} 0\n`);
  assert.equal(await session.exit, 0);
  assert.deepEqual(out, ["stdout:30 ", "stdout:100\r\n"]);
  client.open(null, { onOutput: () => {} });
  assert.match(sent.at(-1)!, /^OPEN \d+ pipe 0 0 -$/);
});

test("open with a version-1 agent: AGENT_UNSUPPORTED, whether HELLO said so or a probe finds out", async () => {
  const { client } = connected();
  assert.equal(client.version, 1);
  assert.throws(() => client.open("cat", { onOutput: () => {} }), { code: "AGENT_UNSUPPORTED" });
  // An agent that only answered a ping (it ran before a restore): VERSION is ignored, the PONG behind it
  // comes first, so it is version 1.
  const s = setup();
  const waiting = s.client.waitForAgent(10_000);
  s.feed(`PONG ${lastId(s.sent, "PING")}\n`);
  await tick();
  const probe = lastId(s.sent, "VERSION");
  const ping = lastId(s.sent, "PING");
  assert.ok(ping > probe);
  s.feed(`PONG ${ping}\n`);
  await waiting;
  assert.equal(s.client.version, 1);
  assert.throws(() => s.client.open(null, { onOutput: () => {} }), { code: "AGENT_UNSUPPORTED" });
});

test("a version-2 agent found by the probe: sessions opened meanwhile start once it answers", async () => {
  const { client, sent, feed } = setup();
  feed("PONG 77\n"); // connected, version unknown
  const session = client.open("true", { onOutput: () => {} });
  await tick();
  assert.equal(sent.filter((l) => l.startsWith("OPEN")).length, 0);
  feed("VERSION 12345 2\n"); // not the probe's id: ignored
  assert.equal(client.version, 0);
  feed(`VERSION ${lastId(sent, "VERSION")} 2\n`);
  assert.equal(client.version, 2);
  await tick();
  const id = lastId(sent, "OPEN");
  feed(`EXIT ${id} 3\n`);
  assert.equal(await session.exit, 3);
});

test("stdin: at most 64 KiB unacknowledged in IN lines of ≤ 3000 bytes; ACKs move the window; EOF after all", async () => {
  const { client, sent, feed } = connectedV2();
  const session = client.open("cat", { onOutput: () => {} });
  const id = lastId(sent, "OPEN");
  const data = Uint8Array.from({ length: 100_000 }, (_, i) => i & 255);
  let written = false;
  const w = session.write(data).then(() => (written = true));
  session.end();
  const inLines = () => sent.filter((l) => l.startsWith(`IN ${id} `));
  const bytesSent = () => inLines().reduce((n, l) => n + Buffer.from(l.split(" ")[2]!, "base64").length, 0);
  assert.equal(bytesSent(), 64 * 1024);
  assert.ok(inLines().every((l) => Buffer.from(l.split(" ")[2]!, "base64").length <= 3000));
  await tick();
  assert.equal(written, false);
  assert.ok(!sent.includes(`EOF ${id}`));
  feed(`ACK ${id} 40000\n`);
  await w;
  assert.equal(bytesSent(), 100_000);
  assert.equal(sent.at(-1), `EOF ${id}`);
  const echoed = Buffer.concat(inLines().map((l) => Buffer.from(l.split(" ")[2]!, "base64")));
  assert.deepEqual(new Uint8Array(echoed), data);
  // An ACK of more than was sent is a violation: the session fails and is killed.
  feed(`ACK ${id} 999999\n`);
  await assert.rejects(session.exit, { code: "AGENT_PROTOCOL" });
  assert.equal(lastId(sent, "KILL"), id);
  assert.equal(client.protocolErrors, 1);
});

test("output is acknowledged only when onOutput's promise resolves; a guest beyond the window is cut off", async () => {
  const { client, sent, feed } = connectedV2();
  const pending: (() => void)[] = [];
  const session = client.open("yes", {
    onOutput: () => new Promise<void>((resolve) => pending.push(resolve)),
  });
  const id = lastId(sent, "OPEN");
  const chunk = new Uint8Array(3000);
  for (let i = 0; i < 80; i++) feed(`OUT ${id} ${b64(chunk)}\n`); // 240,000 bytes: within the window
  await tick();
  assert.equal(sent.filter((l) => l.startsWith("ACK")).length, 0);
  for (const resolve of pending.splice(0, 10)) resolve();
  await tick();
  assert.equal(sent.at(-1), `ACK ${id} 30000`);
  // 210,000 outstanding; 20 more chunks pass 256 KiB.
  for (let i = 0; i < 20; i++) feed(`OUT ${id} ${b64(chunk)}\n`);
  await assert.rejects(session.exit, { code: "AGENT_PROTOCOL" });
  assert.equal(lastId(sent, "KILL"), id);
});

test("session controls: WINCH, SIGNAL, KILL lines; bad values refused; BUSY and HELLO end sessions", async () => {
  const { client, sent, feed } = connectedV2();
  const session = client.open(null, { tty: { cols: 80, rows: 24 }, onOutput: () => {} });
  const id = lastId(sent, "OPEN");
  session.resize(120, 40);
  session.signal(2);
  session.kill();
  assert.deepEqual(sent.slice(-3), [`WINCH ${id} 120 40`, `SIGNAL ${id} 2`, `KILL ${id}`]);
  assert.throws(() => session.signal(0), RangeError);
  assert.throws(() => session.resize(-1, 5), RangeError);
  assert.throws(() => client.open("x", { tty: { cols: 70000, rows: 1 }, onOutput: () => {} }), {
    code: "AGENT_BAD_COMMAND",
  });
  feed(`EXIT ${id} 137\n`);
  assert.equal(await session.exit, 137);
  await assert.rejects(session.write(ascii("late")), { code: "AGENT_SESSION_ENDED" });
  const refused = client.open("true", { onOutput: () => {} });
  feed(`BUSY ${lastId(sent, "OPEN")}\n`);
  await assert.rejects(refused.exit, { code: "AGENT_BUSY" });
  const a = client.open("sleep 9", { onOutput: () => {} });
  const b = client.open("sleep 9", { onOutput: () => {} });
  feed("HELLO tsvm-agent 2\n");
  await assert.rejects(a.exit, { code: "AGENT_RESTARTED" });
  await assert.rejects(b.exit, { code: "AGENT_RESTARTED" });
  assert.equal(client.protocolErrors, 0);
});

test("sessions run beside each other and beside exec; timeout and abort kill only their own", async () => {
  const { client, sent, feed } = connectedV2();
  const got = new Map<number, string>();
  const open = (opts: { timeoutMs?: number; signal?: AbortSignal } = {}) => {
    const s = client.open("cat", {
      ...opts,
      onOutput: (b) => {
        got.set(id, (got.get(id) ?? "") + Buffer.from(b).toString());
      },
    });
    const id = lastId(sent, "OPEN");
    return { s, id };
  };
  const one = open();
  const two = open({ timeoutMs: 20 });
  const ac = new AbortController();
  const three = open({ signal: ac.signal });
  const run = client.exec("echo x", { onOutput: () => {} });
  await tick();
  const execId = lastId(sent, "EXEC");
  feed(`OUT ${one.id} ${b64("a")}\nOUT ${three.id} ${b64("c")}\n`);
  ac.abort();
  await assert.rejects(three.s.exit, { code: "AGENT_ABORTED" });
  await assert.rejects(two.s.exit, { code: "AGENT_TIMEOUT" });
  assert.ok(sent.includes(`KILL ${two.id}`) && sent.includes(`KILL ${three.id}`));
  feed(`OUT ${three.id} ${b64("late")}\nEXIT ${three.id} 137\nEXIT ${execId} 0\nEXIT ${one.id} 0\n`);
  assert.equal(await one.s.exit, 0);
  assert.deepEqual(await run, { exitCode: 0 });
  assert.deepEqual([got.get(one.id), got.get(three.id)], ["a", "c"]);
  assert.equal(client.protocolErrors, 0);
});

test("hostile version-2 lines: malformed ACK/VERSION/OUT fail open sessions (killed), never throw", async () => {
  const cases = [
    (id: number) => `ACK ${id}\n`,
    (id: number) => `ACK ${id} -1\n`,
    (id: number) => `ACK ${id} 01\n`,
    (id: number) => `ACK ${id} 99999999999\n`,
    (id: number) => `OUT ${id} ${"Q".repeat(5)}\n`,
    (id: number) => `VERSION ${id} 3\n`,
    (id: number) => `VERSION ${id}\n`,
    (id: number) => `EXIT ${id} 1 2\n`,
  ];
  for (const make of cases) {
    const { client, sent, feed, errors } = connectedV2();
    const session = client.open("cat", { onOutput: () => {} });
    const id = lastId(sent, "OPEN");
    feed(make(id));
    await assert.rejects(session.exit, { code: "AGENT_PROTOCOL" }, JSON.stringify(make(id)));
    assert.equal(lastId(sent, "KILL"), id);
    assert.equal(errors.length, 1);
  }
  // Random lines made of the version-2 words: nothing escapes receive, and a session still works after.
  for (let seed = 1; seed <= 10; seed++) {
    const rand = rng(seed);
    const { client, sent, feed } = connectedV2();
    const words = [
      "ACK ",
      "VERSION ",
      "OUT ",
      "EXIT ",
      "BUSY ",
      "1",
      "2",
      " ",
      "\n",
      "QQ==",
      "HELLO tsvm-agent 2",
    ];
    const sessions = Array.from({ length: 3 }, () => client.open("cat", { onOutput: () => {} }));
    for (const s of sessions) s.exit.catch(() => {});
    for (let i = 0; i < 3000; i++) {
      if (rand() < 0.6) feed(words[Math.floor(rand() * words.length)]!);
      else feed(Uint8Array.from({ length: Math.floor(rand() * 32) }, () => Math.floor(rand() * 256)));
    }
    feed("\nHELLO tsvm-agent 2\n");
    const session = client.open("true", { onOutput: () => {} });
    feed(`EXIT ${lastId(sent, "OPEN")} 0\n`);
    assert.equal(await session.exit, 0, `seed ${seed}`);
  }
});

test("onHello is told each HELLO (each boot of the guest), with its version; a bad HELLO is no boot", () => {
  const hellos: number[] = [];
  const client = new GuestAgentClient(() => {}, { onHello: (v) => hellos.push(v) });
  client.receive(ascii("HELLO tsvm-agent 2\n"));
  client.receive(ascii("PONG 1\n"));
  client.receive(ascii("HELLO tsvm-agent 3\nHELLO tsvm-ag"));
  assert.deepEqual(hellos, [2]);
  client.receive(ascii("ent 1\n"));
  assert.deepEqual(hellos, [2, 1], "a HELLO split across reads, after a reboot into an older image");
});
