// End to end: boots the default image on RiscvEngine with the agent's virtio-console port and drives the
// guest agent (/etc/tsvm/agent) through GuestAgentClient: exit status, binary and long output, stderr,
// cancel of a command that never ends, and ping; then protocol version 2's sessions: stdin, terminals and
// their size, signals, sessions side by side, 20 MiB each way (with the speed), and flow control.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { FileBlockBackend } from "../../src/engines/backends/file-block-backend.ts";
import {
  GUEST_AGENT_PORT_NAME,
  GuestAgentClient,
  type GuestAgentStream,
} from "../../src/engines/riscv/guest-agent-client.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { BOOT_TIMEOUT_MS, img, skip } from "./tsvm-run-fixture.ts";

/** Any one command below. */
const COMMAND_TIMEOUT_MS = 5 * 60_000;
/** The agent's port: port 0 is the virtio console itself, named ports follow. */
const AGENT_PORT = 1;

let dir = "";
let engine: RiscvEngine | null = null;
let disk: FileBlockBackend | null = null;
let serial = "";
let client: GuestAgentClient;
const protocolErrors: string[] = [];

before(
  async () => {
    if (!img) return;
    dir = mkdtempSync(join(tmpdir(), "tsvm-guest-agent-"));
    disk = await FileBlockBackend.open(copyDiskFor(img, join(dir, "disk.img")));
    const file = (path: string) => ({ name: path, bytes: new Uint8Array(readFileSync(path)) });
    let agent: GuestAgentClient | null = null;
    engine = new RiscvEngine({
      config: {
        harts: 1,
        memoryBytes: 256 * 1024 * 1024,
        firmware: file(img.firmware),
        kernel: file(img.kernel),
        initrd: file(img.initrd),
        bootargs: "console=ttyS0",
      },
      console: { write: (b) => (serial += Buffer.from(b).toString("latin1")) },
      disks: [disk],
      virtioConsole: {
        sink: { write: () => {} },
        ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: (b) => agent?.receive(b) } }],
      },
    });
    const running = engine;
    agent = new GuestAgentClient(
      (bytes) => {
        const taken = running.sendVirtioConsole(AGENT_PORT, bytes);
        if (taken !== bytes.length)
          throw new Error(`the agent's port took ${taken} of ${bytes.length} bytes`);
      },
      { onProtocolError: (m) => protocolErrors.push(m) },
    );
    client = agent;
    await engine.start();
    await client.waitForAgent(BOOT_TIMEOUT_MS).catch((e: Error) => {
      throw new Error(`${e.message}; serial console: ${serial.slice(-2000)}`);
    });
  },
  { timeout: BOOT_TIMEOUT_MS + 60_000 },
);

after(async () => {
  client?.close("the test ended");
  await engine?.stop();
  await disk?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

/** Runs `command` through the agent, collecting each stream's bytes. */
async function run(command: string, timeoutMs = COMMAND_TIMEOUT_MS) {
  const chunks: Record<GuestAgentStream, Buffer[]> = { stdout: [], stderr: [] };
  const { exitCode } = await client.exec(command, {
    timeoutMs,
    onOutput: (bytes, stream) => chunks[stream].push(Buffer.from(bytes)),
  });
  return { exitCode, stdout: Buffer.concat(chunks.stdout), stderr: Buffer.concat(chunks.stderr) };
}

test("ping: the agent answers on its virtio-console port", { skip }, async () => {
  const started = Date.now();
  await client.ping(30_000);
  assert.ok(Date.now() - started < 30_000);
  assert.equal(client.connected, true);
});

test("echo hi; exit 7 → stdout 'hi\\n' and exit status 7", { skip }, async () => {
  const r = await run("echo hi; exit 7");
  assert.equal(r.exitCode, 7);
  assert.equal(r.stdout.toString(), "hi\n");
  assert.equal(r.stderr.length, 0);
});

test("commands run as root in / with HOME=/root and stdin at end of file", { skip }, async () => {
  const r = await run("id -u; pwd; echo $HOME; cat; echo eof");
  assert.equal(r.stdout.toString(), "0\n/\n/root\neof\n");
});

test("binary output arrives byte for byte; stderr is kept apart", { skip }, async () => {
  const r = await run("printf '\\0\\1\\2\\377'; echo oops >&2");
  assert.equal(r.exitCode, 0);
  assert.deepEqual([...r.stdout], [0, 1, 2, 255]);
  assert.equal(r.stderr.toString(), "oops\n");
});

test("long output: seq 1 20000 arrives complete and in order", { skip }, async () => {
  const r = await run("seq 1 20000");
  assert.equal(r.exitCode, 0);
  const expected = `${Array.from({ length: 20000 }, (_, i) => i + 1).join("\n")}\n`;
  assert.equal(r.stdout.length, expected.length);
  assert.equal(r.stdout.toString(), expected);
});

test("a command ended by a signal reports 128+N, and nothing but its own output", { skip }, async () => {
  const r = await run("echo before; kill -9 $$; echo after");
  assert.equal(r.exitCode, 137);
  assert.equal(r.stdout.toString(), "before\n");
  assert.equal(r.stderr.toString(), "");
});

test("a command that never ends is killed on timeout, with its children; the agent serves the next", {
  skip,
}, async () => {
  await assert.rejects(client.exec("sleep 1001 & sleep 1002; echo never", { timeoutMs: 3000 }), {
    code: "AGENT_TIMEOUT",
  });
  const r = await run("ps | grep -c '[s]leep 100'; echo next");
  assert.equal(r.stdout.toString(), "0\nnext\n");
});

test("a cancel sent right behind the request still stops the command", { skip }, async () => {
  const ac = new AbortController();
  const cancelled = client.exec("sleep 1003", { signal: ac.signal });
  setTimeout(() => ac.abort(), 0);
  await assert.rejects(cancelled, { code: "AGENT_ABORTED" });
  const r = await run("ps | grep -c '[s]leep 1003'; echo next");
  assert.equal(r.stdout.toString(), "0\nnext\n");
});

/** A session's output as text, with a wait for a pattern in it. */
function collector() {
  let text = "";
  const waiters: { re: RegExp; done: () => void }[] = [];
  return {
    onOutput: (bytes: Uint8Array) => {
      text += Buffer.from(bytes).toString("latin1");
      for (const w of waiters.filter((w) => w.re.test(text))) {
        waiters.splice(waiters.indexOf(w), 1);
        w.done();
      }
    },
    text: () => text,
    waitFor: (re: RegExp) =>
      re.test(text) ? Promise.resolve() : new Promise<void>((done) => waiters.push({ re, done })),
  };
}

test("version 2: the image's agent said HELLO tsvm-agent 2", { skip }, () => {
  assert.equal(client.version, 2);
});

test("stdin: cat echoes what was written, binary and all, and ends at EOF", { skip }, async () => {
  const out = collector();
  const session = client.open("cat; echo done", { onOutput: out.onOutput, timeoutMs: COMMAND_TIMEOUT_MS });
  await session.write(new TextEncoder().encode("hello\n"));
  await session.write(Uint8Array.of(0, 1, 255, 10));
  session.end();
  assert.equal(await session.exit, 0);
  assert.equal(out.text(), "hello\n\0\x01\xff\ndone\n");
});

test("pty: stty size reports the window, and a resize reaches the foreground group as SIGWINCH", {
  skip,
}, async () => {
  const out = collector();
  const session = client.open(
    "trap 'echo winch; stty size; exit 5' WINCH; stty size; while :; do sleep 1; done",
    {
      tty: { cols: 100, rows: 30 },
      onOutput: out.onOutput,
      timeoutMs: COMMAND_TIMEOUT_MS,
    },
  );
  await out.waitFor(/30 100\r\n/);
  session.resize(120, 40);
  assert.equal(await session.exit, 5);
  assert.match(out.text(), /^30 100\r\nwinch\r\n40 120\r\n$/);
});

test("a login shell on a pty: TERM, /root, the profile's prompt, exit status", { skip }, async () => {
  const out = collector();
  const session = client.open(null, { tty: { cols: 80, rows: 24 }, onOutput: out.onOutput });
  await out.waitFor(/~ # $/);
  await session.write(new TextEncoder().encode("echo $TERM; pwd; exit 3\n"));
  assert.equal(await session.exit, 3);
  assert.match(out.text(), /xterm-256color\r\n\/root\r\n/);
});

test("SIGNAL 2 ends sleep 100 with 130; so does a ^C typed on a pty", { skip }, async () => {
  const piped = client.open("sleep 100", { onOutput: () => {}, timeoutMs: 60_000 });
  piped.signal(2);
  assert.equal(await piped.exit, 130);
  const out = collector();
  const tty = client.open("echo ready; sleep 100", {
    tty: { cols: 80, rows: 24 },
    onOutput: out.onOutput,
    timeoutMs: 60_000,
  });
  await out.waitFor(/ready/);
  await tty.write(Uint8Array.of(3));
  assert.equal(await tty.exit, 130);
});

test("two sessions at once keep their bytes apart", { skip }, async () => {
  const a = collector();
  const b = collector();
  const one = client.open("cat", { onOutput: a.onOutput, timeoutMs: COMMAND_TIMEOUT_MS });
  const two = client.open("tr a-z A-Z", { onOutput: b.onOutput, timeoutMs: COMMAND_TIMEOUT_MS });
  for (let i = 0; i < 20; i++) {
    await one.write(new TextEncoder().encode(`one ${i}\n`));
    await two.write(new TextEncoder().encode(`two ${i}\n`));
  }
  one.end();
  two.end();
  assert.deepEqual(await Promise.all([one.exit, two.exit]), [0, 0]);
  assert.equal(a.text(), Array.from({ length: 20 }, (_, i) => `one ${i}\n`).join(""));
  assert.equal(b.text(), Array.from({ length: 20 }, (_, i) => `TWO ${i}\n`).join(""));
});

const BIG = 20 * 1024 * 1024;

test("20 MiB out of the guest and 20 MiB into it through cat, sha256 matching, with the speed", {
  skip,
}, async (t) => {
  const made = await run(`head -c ${BIG} /dev/urandom >/tmp/big && sha256sum /tmp/big`);
  assert.equal(made.exitCode, 0, made.stderr.toString());
  const guestSum = made.stdout.toString().split(" ")[0];
  const hash = createHash("sha256");
  let received = 0;
  let started = Date.now();
  const out = client.open("cat /tmp/big", {
    onOutput: (bytes) => {
      hash.update(bytes);
      received += bytes.length;
    },
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  assert.equal(await out.exit, 0);
  const outSeconds = (Date.now() - started) / 1000;
  assert.equal(received, BIG);
  assert.equal(hash.digest("hex"), guestSum);

  const data = randomBytes(BIG);
  started = Date.now();
  const into = client.open("cat >/tmp/in", { onOutput: () => {}, timeoutMs: COMMAND_TIMEOUT_MS });
  for (let at = 0; at < BIG; at += 256 * 1024) await into.write(data.subarray(at, at + 256 * 1024));
  into.end();
  assert.equal(await into.exit, 0);
  const inSeconds = (Date.now() - started) / 1000;
  const check = await run("sha256sum /tmp/in; rm -f /tmp/in /tmp/big");
  assert.equal(check.stdout.toString().split(" ")[0], createHash("sha256").update(data).digest("hex"));
  const mbps = (s: number) => (BIG / 1e6 / s).toFixed(2);
  t.diagnostic(`guest → host: 20 MiB in ${outSeconds.toFixed(1)} s = ${mbps(outSeconds)} MB/s`);
  t.diagnostic(`host → guest: 20 MiB in ${inSeconds.toFixed(1)} s = ${mbps(inSeconds)} MB/s`);
});

test("flow control: a host that does not acknowledge stops the output at 256 KiB; it resumes after", {
  skip,
}, async () => {
  let received = 0;
  let release: () => void = () => {};
  const held = new Promise<void>((resolve) => (release = resolve));
  let reachedWindow: () => void = () => {};
  const atWindow = new Promise<void>((resolve) => (reachedWindow = resolve));
  const session = client.open("head -c 1048576 /dev/zero", {
    onOutput: (bytes) => {
      received += bytes.length;
      if (received >= 256 * 1024) reachedWindow();
      return held; // nothing is acknowledged until `release`
    },
    timeoutMs: COMMAND_TIMEOUT_MS,
  });
  await atWindow;
  await new Promise((r) => setTimeout(r, 3000));
  assert.equal(received, 256 * 1024);
  release();
  assert.equal(await session.exit, 0);
  assert.equal(received, 1024 * 1024);
});

test("the agent leaves the serial console alone and never broke the protocol", { skip }, async () => {
  assert.doesNotMatch(serial, /HELLO|PONG|EXIT \d/);
  assert.match(serial, /~ # $/);
  assert.deepEqual(protocolErrors, []);
});
