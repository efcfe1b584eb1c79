// Clients that stop reading while a source produces many MiB, over real sockets to the real API server and
// real VMM processes (the counting stand-in guest): what the daemon and the VMM queue for them stays under
// the bounds, the slow client later gets everything or a count of what it missed (checked against the
// numbered output it did get), and the other clients are not held up.
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { type IncomingMessage, request } from "node:http";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { WebSocket } from "ws";
import { closeAndKill } from "../../hypervisor/fixtures/close-and-kill.ts";
import { openFixtureHypervisor } from "../../hypervisor/fixtures/fixture-hypervisor.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { CONSOLE_VIEWER_QUEUE_BYTES, EXEC_OUTPUT_QUEUE_BYTES } from "../../hypervisor/vmm-protocol.ts";
import { ApiClient } from "../client.ts";
import { apiSocketPath } from "../data-dir.ts";
import type { VmEvent } from "../types.ts";
import { ApiServer, EXEC_HIGH_WATER_BYTES } from "./api-server.ts";
import { EVENT_STREAM_HIGH_WATER_BYTES } from "./event-stream.ts";
import { CONSOLE_HIGH_WATER_BYTES } from "./serial-port-socket.ts";

/** The most one read of a socket hands on at once (a VMM's console or exec line, a guest's print). */
const CHUNK = 64 * 1024 + 4096;

let home: string;
let hv: Hypervisor;
let server: ApiServer;
let client: ApiClient;

before(async () => {
  home = await mkdtemp(join(tmpdir(), "tsvm-slow-"));
  await writeFile(join(home, "template.img"), Buffer.alloc(4096, 1));
  hv = await openFixtureHypervisor(home, join(home, "template.img"));
  server = new ApiServer(hv);
  await server.listenUnix(apiSocketPath(home));
  client = ApiClient.forDataDir(home);
  for (const name of ["talky-1", "agent-1"]) {
    const op = await client.insertInstance({ name, machineType: "t1-micro" });
    assert.equal((await client.waitUntilDone(op.id)).error, null);
  }
});

after(async () => {
  await server?.close();
  if (hv) await closeAndKill(hv);
  await rm(home, { recursive: true, force: true });
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const t0 = Date.now();
  while (!ok()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

/** Samples the daemon's and the VM's VMM's queued bytes every 100 ms for `ms`; returns the largest of each. */
async function watchQueues(vm: string, ms: number): Promise<{ daemon: number; vmm: number }> {
  const most = { daemon: 0, vmm: 0 };
  for (const t0 = Date.now(); Date.now() - t0 < ms; ) {
    await sleep(100);
    most.daemon = Math.max(most.daemon, server.queuedBytes);
    most.vmm = Math.max(most.vmm, (await hv.stats(vm)).vmmQueuedBytes ?? Number.NaN);
  }
  return most;
}

/**
 * Checks numbered output as it arrives (line k is k in 19 digits and a newline, as the stand-in guest
 * prints) that may have gaps where a marker said how many bytes were dropped: every line follows the one
 * before, or follows it by exactly the lines the marker between them accounts for.
 */
class NumberedLines {
  lines = 0;
  private last: number | undefined;
  private skip = 0;
  private rest = "";
  private started: boolean;

  /** `midStream`: a console viewer attaches mid-stream, so what precedes the first newline may be a line's tail. */
  constructor({ midStream = false } = {}) {
    this.started = !midStream;
  }

  text(chunk: string): void {
    let text = this.rest + chunk;
    if (!this.started) {
      const first = text.indexOf("\n");
      if (first < 0) return;
      text = text.slice(first + 1);
      this.started = true;
    }
    const complete = text.lastIndexOf("\n") + 1;
    this.rest = text.slice(complete);
    for (const line of text.slice(0, complete).split("\n")) {
      if (line === "") continue;
      assert.match(line, /^\d{19}$/);
      const n = Number(line);
      if (this.last !== undefined)
        assert.equal(n, this.last + 1 + this.skip, `line ${n} after ${this.last}, ${this.skip} dropped`);
      this.last = n;
      this.skip = 0;
      this.lines++;
    }
  }

  dropped(bytes: number): void {
    assert.equal(this.rest, "", "output is dropped in whole lines");
    assert.equal(bytes % 20, 0, `dropped ${bytes} bytes: whole lines`);
    this.skip += bytes / 20;
  }
}

test("a console viewer that stops reading: bounded queues in daemon and VMM, a notice of what it missed; another viewer gets all", async () => {
  // The slow viewer speaks WebSocket through `ws` directly, as any client might; it reads nothing for 6 s
  // while the guest prints about 650 kB/s (slow enough that the other viewer, in this busy process, keeps
  // up on a loaded machine).
  const slow = new WebSocket("ws://localhost/v1/instances/talky-1/serialPort", {
    createConnection: () => connect(apiSocketPath(home)),
  });
  await new Promise((resolve, reject) => {
    slow.once("open", resolve);
    slow.once("error", reject);
  });
  let slowText = "";
  slow.on("message", (data: Buffer) => {
    slowText += data.toString("latin1");
  });
  slow.pause();
  const fast = await client.openSerialPort("talky-1");
  const fastLines = new NumberedLines({ midStream: true });
  let fastProblem: unknown;
  fast.onData((b) => {
    try {
      fastLines.text(b.toString("latin1"));
    } catch (e) {
      fastProblem ??= e;
    }
  });
  try {
    const printedBefore = (await hv.stats("talky-1")).printed!;
    const most = await watchQueues("talky-1", 6000);
    // Two viewers, each bounded by the high-water mark plus one chunk.
    assert.ok(most.daemon <= 2 * (CONSOLE_HIGH_WATER_BYTES + CHUNK), `daemon queued ${most.daemon}`);
    assert.ok(most.vmm <= 2 * (CONSOLE_VIEWER_QUEUE_BYTES + CHUNK), `VMM queued ${most.vmm}`);
    const stats = await hv.stats("talky-1");
    const printed = stats.printed! - printedBefore;
    assert.ok(printed > 2 * 1024 * 1024, `the guest printed ${printed} bytes meanwhile`);
    assert.ok(stats.consoleDroppedBytes! > 512 * 1024, `dropped ${stats.consoleDroppedBytes}`);

    const notice =
      /\r\n\[tsvm: (\d+) bytes of console output dropped: this viewer read too slowly; `tsvm logs talky-1` has them\]\r\n/g;
    slow.resume();
    // It gets what was queued for it, then the notice, then the output from then on.
    await until("the notice and output after it", () => {
      const at = slowText.search(notice);
      return at >= 0 && slowText.length - at > 100_000;
    });
    const pieces = slowText.split(notice);
    assert.ok(pieces.length >= 3, "the slow viewer was told what it missed");
    const slowLines = new NumberedLines({ midStream: true });
    for (const [i, part] of pieces.entries()) {
      if (i % 2) slowLines.dropped(Number(part));
      else slowLines.text(part);
    }
    // The viewer that kept reading missed nothing: its lines follow each other, no notice among them.
    assert.equal(fastProblem, undefined);
    assert.ok(fastLines.lines * 20 > printed * 0.9, `it got ${fastLines.lines} lines of ${printed / 20}`);
  } finally {
    slow.close();
    fast.close();
  }
});

/** POSTs an exec on the API's Unix socket and resolves with the answer, not yet read. */
function startExec(vm: string, command: string): Promise<IncomingMessage> {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({ command, agentWaitSec: 0 });
    const req = request({
      socketPath: apiSocketPath(home),
      method: "POST",
      path: `/v1/instances/${vm}/exec`,
      headers: { "content-type": "application/json", "content-length": Buffer.byteLength(body) },
    });
    req.on("response", resolve);
    req.on("error", reject);
    req.end(body);
  });
}

function readLines(res: IncomingMessage): Promise<unknown[]> {
  return new Promise((resolve, reject) => {
    let text = "";
    res.setEncoding("utf8");
    res.on("data", (c: string) => {
      text += c;
    });
    res.on("end", () =>
      resolve(
        text
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as unknown),
      ),
    );
    res.on("error", reject);
  });
}

test("exec output to a client that stops reading: back-pressure to the VMM, bounded there, dropped bytes counted exactly", async () => {
  const total = 11_000 * 3000; // 33 MB of numbered lines, in the stand-in agent's 3000-byte chunks
  const res = await startExec("agent-1", `flood ${total}`);
  assert.equal(res.statusCode, 200);
  res.pause();
  const most = await watchQueues("agent-1", 3000);
  // Past the mark, at most what one read of the VMM's socket held.
  assert.ok(most.daemon <= EXEC_HIGH_WATER_BYTES + 2 * CHUNK, `daemon queued ${most.daemon}`);
  assert.ok(most.vmm <= EXEC_OUTPUT_QUEUE_BYTES + CHUNK, `VMM queued ${most.vmm}`);
  // Meanwhile the API answers others.
  const t0 = Date.now();
  assert.equal((await client.getInstance("agent-1")).status, "RUNNING");
  assert.ok(Date.now() - t0 < 2000);

  res.resume();
  const lines = (await readLines(res)) as Array<Record<string, unknown>>;
  assert.deepEqual(lines.at(-1), { exitCode: 0 });
  let received = 0;
  let dropped = 0;
  const numbered = new NumberedLines();
  for (const l of lines.slice(0, -1)) {
    if (typeof l.dropped === "number") {
      dropped += l.dropped;
      numbered.dropped(l.dropped);
      continue;
    }
    assert.equal(l.stream, "stdout");
    const text = Buffer.from(String(l.data), "base64").toString("latin1");
    received += text.length;
    numbered.text(text);
  }
  assert.ok(dropped > 0, "the stalled client missed output, and was told");
  assert.equal(received + dropped, total, "every byte was either delivered or counted as dropped");

  // A client that keeps reading gets every byte and no dropped line.
  const whole = await readLines(await startExec("agent-1", `flood ${100 * 3000}`));
  assert.ok(!whole.some((l) => typeof (l as { dropped?: unknown }).dropped === "number"));
  const wholeLines = new NumberedLines();
  for (const l of whole.slice(0, -1))
    wholeLines.text(Buffer.from(String((l as { data: string }).data), "base64").toString("latin1"));
  assert.equal(wholeLines.lines, 100 * 150);
});

test("an event watcher that stops reading: nothing queued past the mark, catches up from the log, a gap line for what left it", async () => {
  const from = hv.events.lastSeq;
  const res = await new Promise<IncomingMessage>((resolve, reject) => {
    const req = request({ socketPath: apiSocketPath(home), path: `/v1/events?watch=true&after=${from}` });
    req.on("response", resolve);
    req.on("error", reject);
    req.end();
  });
  res.pause();
  const fastSeen: VmEvent[] = [];
  let fastDropped = 0;
  const abort = new AbortController();
  const fast = client.watchEvents(
    from,
    (e) => fastSeen.push(e),
    abort.signal,
    undefined,
    (n) => {
      fastDropped += n;
    },
  );

  // 20,000 events of about 600 bytes (12 MB), more than the 10,000 the daemon keeps, 50 per turn of the
  // event loop (so a reading client can keep up).
  const count = 20_000;
  let most = 0;
  for (let i = 0; i < count; i++) {
    hv.events.append({
      time: new Date().toISOString(),
      type: "notice",
      vmName: "talky-1",
      vmId: "test",
      from: null,
      to: null,
      message: `event ${i} ${"x".repeat(500)}`,
    });
    if (i % 50 === 49) {
      most = Math.max(most, server.queuedBytes);
      await new Promise((r) => setImmediate(r));
    }
  }
  const last = hv.events.lastSeq;
  assert.ok(most <= 2 * (EVENT_STREAM_HIGH_WATER_BYTES + 1024), `daemon queued ${most}`);
  await until("the fast watcher's last event", () => fastSeen.at(-1)?.seq === last);
  abort.abort();
  await fast;
  assert.equal(fastDropped, 0);
  assert.deepEqual(
    fastSeen.map((e) => e.seq),
    Array.from({ length: count }, (_, i) => from + 1 + i),
  );

  let text = "";
  res.setEncoding("utf8");
  res.on("data", (c: string) => {
    text += c;
  });
  res.resume();
  await until("the slow watcher's last event", () => text.includes(`"seq":${last},`));
  res.destroy();
  const lines = text
    .split("\n")
    .filter(Boolean)
    .map((l) => JSON.parse(l) as { seq?: number; dropped?: number });
  let expected = from + 1;
  let gaps = 0;
  for (const l of lines) {
    if (l.dropped !== undefined) {
      expected += l.dropped;
      gaps++;
    } else assert.equal(l.seq, expected++);
  }
  assert.equal(expected, last + 1, "every event was received or counted");
  assert.ok(gaps >= 1, "the watcher fell behind the log's 10,000 events and was told how many it missed");
});
