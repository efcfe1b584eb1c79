// NAT and port forwards with a real Linux guest through the daemon (bin/tsvm): a download from a server on
// the host's 127.0.0.1 at the gateway and an upload to it (sha256 compared, in 64 KiB frames at the NAT
// card's MTU), ping of the gateway (passt's ping sockets), host curl to the guest's httpd through a TCP
// forward, a UDP forward that answers, forwards refused (privileged port, a port another VM or a process
// holds), passt killed with kill -9 (restarted, an event, the VM RUNNING, the network working again), and a
// clone of a memory snapshot with its own MAC whose agent is not held up by the card's after-restore job.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { createSocket } from "node:dgram";
import { readFileSync } from "node:fs";
import { createServer } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { after, test } from "node:test";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage, until } from "./linux-vm-fixture.ts";

const { client, tsvm, exec, booted } = await linuxVmFixture("nat-linux");

const blob = randomBytes(1024 * 1024);
const blobSha = createHash("sha256").update(blob).digest("hex");
const server = createServer((req, res) => {
  if (req.url !== "/blob") {
    res.writeHead(404);
    res.end();
    return;
  }
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.length });
  res.end(blob);
});
await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
const blobPort = (server.address() as AddressInfo).port;
after(() => server.close());

// A TCP sink for the guest's upload: the sha256 of the first blob-sized stream, then it closes.
let uploaded: (sha: string) => void = () => {};
const sink = createTcpServer((s) => {
  const hash = createHash("sha256");
  let n = 0;
  s.on("data", (b) => {
    hash.update(b);
    n += b.length;
    if (n >= blob.length) {
      s.end();
      uploaded(n === blob.length ? hash.digest("hex") : `${n} bytes`);
    }
  });
  s.on("error", () => {});
});
await new Promise<void>((resolve) => sink.listen(0, "127.0.0.1", resolve));
const sinkPort = (sink.address() as AddressInfo).port;
after(() => sink.close());

/** passt answers ICMP echo through ping sockets: its group (nobody's when the daemon is root) must be in
 *  net.ipv4.ping_group_range, which scripts/setup-host.sh sets. */
function pingSocketsAllowed(): boolean {
  const [lo, hi] = readFileSync("/proc/sys/net/ipv4/ping_group_range", "utf8")
    .trim()
    .split(/\s+/)
    .map(Number);
  const gid = process.getuid?.() === 0 ? 65534 : (process.getgid?.() ?? 0);
  return lo! <= gid && gid <= hi!;
}

/** A port on 127.0.0.1 free now (the kernel's choice, let go at once). */
async function freePort(): Promise<number> {
  const s = createTcpServer();
  await new Promise<void>((resolve) => s.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const { port } = s.address() as AddressInfo;
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/** Waits in the guest for eth0's DHCP lease, then prints the default gateway (passt's, mapped to the host). */
const GATEWAY =
  "i=0; until ip route | grep -q '^default'; do sleep 1; i=$((i+1)); [ $i -ge 180 ] && exit 1; done; " +
  "ip route | awk '/^default/ { print $3; exit }'";

/** The guest downloads the host's blob through NAT and prints its sha256. */
async function download(vm: string): Promise<string> {
  const gateway = (await exec(vm, GATEWAY)).trim();
  assert.match(gateway, /^\d+\.\d+\.\d+\.\d+$/);
  return exec(vm, `wget -q -T 20 -O /tmp/blob http://${gateway}:${blobPort}/blob && sha256sum /tmp/blob`);
}

function curl(url: string): Promise<{ code: number; stdout: string }> {
  return new Promise((resolve) =>
    execFile("curl", ["-s", "--max-time", "20", url], (e, stdout) =>
      resolve({ code: e ? (typeof e.code === "number" ? e.code : 1) : 0, stdout }),
    ),
  );
}

/** Sends `text` to 127.0.0.1:port over UDP and resolves with the first answer (undefined after 3 s). */
function udpAsk(port: number, text: string): Promise<string | undefined> {
  return new Promise((resolve) => {
    const socket = createSocket("udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve(undefined);
    }, 3000);
    socket.on("message", (msg) => {
      clearTimeout(timer);
      socket.close();
      resolve(msg.toString());
    });
    socket.send(text, port, "127.0.0.1");
  });
}

test("NAT, TCP and UDP forwards, refusals, passt kill -9, a clone of a memory snapshot", {
  skip: noImage,
  timeout: 4 * BOOT_TIMEOUT_MS,
}, async () => {
  const tcp = await freePort();
  const udp = await freePort();
  const created = await tsvm(
    "create",
    "web",
    "--memory",
    "256M",
    "--forward",
    `tcp:${tcp}:80`,
    "--forward",
    `udp:127.0.0.1:${udp}:53`,
  );
  assert.equal(created.code, 0, created.stderr);
  const described = await tsvm("describe", "web");
  assert.match(described.stdout, /eth0 {2}nat {10}02(:[0-9a-f]{2}){5}/);
  assert.match(described.stdout, new RegExp(`tcp:127\\.0\\.0\\.1:${tcp}:80`));
  assert.match(described.stdout, new RegExp(`udp:127\\.0\\.0\\.1:${udp}:53`));
  const vm = await client.getInstance("web");
  const mac = vm.networkInterfaces[0]!.mac;

  // Refused at once, each with one line: a privileged port, a port another VM forwards, one a process holds.
  const privileged = await tsvm("create", "db", "--forward", "tcp:80:80");
  assert.equal(privileged.code, 1);
  assert.match(privileged.stderr, /host port 80 is privileged \(below 1024\)/);
  const taken = await tsvm("create", "db", "--forward", `tcp:${tcp}:8080`);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, new RegExp(`host port ${tcp}/tcp .*already forwarded to VM 'web'`));
  const squatter = createTcpServer();
  await new Promise<void>((resolve) => squatter.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const held = (squatter.address() as AddressInfo).port;
  const busy = await tsvm("create", "db", "--forward", `tcp:${held}:80`);
  squatter.close();
  assert.equal(busy.code, 1);
  assert.match(busy.stderr, new RegExp(`host port ${held}/tcp .*another process on the host holds it`));
  assert.equal((await tsvm("describe", "db")).code, 1, "nothing was created");

  await booted("web");
  assert.equal(
    (await exec("web", "cat /sys/class/net/eth0/address")).trim(),
    mac,
    "the guest's eth0 has the MAC",
  );
  assert.match(await download("web"), new RegExp(`^${blobSha}\\s+/tmp/blob`, "m"));
  // The NAT card tells Linux passt's MTU: the upload leaves in frames of up to 64 KiB.
  assert.equal((await exec("web", "cat /sys/class/net/eth0/mtu")).trim(), "65520");
  const gw = (await exec("web", GATEWAY)).trim();
  const sha = new Promise<string>((resolve) => {
    uploaded = resolve;
  });
  await exec("web", `nc ${gw} ${sinkPort} </tmp/blob`);
  assert.equal(await sha, blobSha, "the upload arrived whole");
  const sent = await exec(
    "web",
    "cat /sys/class/net/eth0/statistics/tx_bytes /sys/class/net/eth0/statistics/tx_packets",
  );
  const [txBytes, txPackets] = sent.trim().split("\n").map(Number);
  assert.ok(txBytes! / txPackets! > 1514, `frames larger than Ethernet's (${txBytes} bytes in ${txPackets})`);
  assert.ok(
    pingSocketsAllowed(),
    "net.ipv4.ping_group_range excludes passt's group: run scripts/setup-host.sh",
  );
  assert.match(await exec("web", `ping -c 1 -W 10 ${gw}`), /1 packets transmitted, 1 packets received/);

  // The guest's services through the forwards: busybox httpd (TCP) and a UDP echo (nc runs cat on each datagram's peer).
  await exec(
    "web",
    "mkdir -p /www && echo hello-from-guest >/www/index.html && httpd -p 80 -h /www && " +
      "(while :; do nc -u -l -p 53 -e cat; done) </dev/null >/dev/null 2>&1 &",
  );
  const page = await until(
    "the guest's httpd through the TCP forward",
    async () => {
      const r = await curl(`http://127.0.0.1:${tcp}/index.html`);
      return r.code === 0 && r.stdout.includes("hello-from-guest") ? r.stdout : undefined;
    },
    60_000,
  );
  assert.equal(page.trim(), "hello-from-guest");
  const echo = await until("the UDP forward's answer", async () => udpAsk(udp, "ping-udp\n"), 60_000);
  assert.equal(echo.trim(), "ping-udp");

  // kill -9 of passt: the VMM restarts it, an event says so, the VM stays RUNNING, the network works again.
  const before = (await client.getStats("web")).stats;
  assert.ok((before.netRxBytes ?? 0) > blob.length, "the card counted the download");
  const { items: seen } = await client.listEvents(0, "web");
  const lastSeq = seen.at(-1)?.seq ?? 0;
  process.kill(before.passtPid!, "SIGKILL");
  const event = await until("the passt restart event", async () =>
    (await client.listEvents(lastSeq, "web")).items.find(
      (e) => e.type === "notice" && /passt/.test(e.message),
    ),
  );
  assert.match(event.message, /restarted/);
  assert.equal((await client.getInstance("web")).status, "RUNNING");
  const again = await until(
    "the TCP forward after passt's restart",
    async () => {
      const r = await curl(`http://127.0.0.1:${tcp}/index.html`);
      return r.code === 0 && r.stdout.includes("hello-from-guest") ? r.stdout : undefined;
    },
    120_000,
  );
  assert.equal(again.trim(), "hello-from-guest");
  // The guest's first connection to a restarted passt may be reset (its flows were the dead passt's): retried.
  const gateway = (await exec("web", GATEWAY)).trim();
  const again2 = await until(
    "a download through the restarted passt",
    async () => {
      const r = await tsvm(
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        `wget -q -T 20 -O /tmp/blob http://${gateway}:${blobPort}/blob && sha256sum /tmp/blob`,
      );
      return r.code === 0 ? r.stdout : undefined;
    },
    180_000,
  );
  assert.match(again2, new RegExp(`^${blobSha}\\s+/tmp/blob`, "m"));
  const events = await tsvm("events", "web");
  assert.match(events.stdout, /passt .*restarted/);

  // A clone of a memory snapshot gets its own MAC (in its record; the guest is given it in the background
  // after the restore) and no forwards; its agent answers at once (the card's job does not hold it).
  const snap = await tsvm("snapshot", "create", "web", "net");
  assert.equal(snap.code, 0, snap.stderr);
  const cloned = await tsvm("clone", "web", "web-2", "--snapshot", "net");
  assert.equal(cloned.code, 0, cloned.stderr);
  const clone = await client.getInstance("web-2");
  assert.notEqual(clone.networkInterfaces[0]!.mac, mac);
  assert.deepEqual(clone.forwards, []);
  await booted("web-2");
  assert.equal((await exec("web-2", "hostname")).trim(), "web-2");
  // The source keeps its MAC and its forwards.
  assert.equal((await exec("web", "cat /sys/class/net/eth0/address")).trim(), mac);
  const still = await until(
    "the source's TCP forward after the clone",
    async () => {
      const r = await curl(`http://127.0.0.1:${tcp}/index.html`);
      return r.code === 0 && r.stdout.includes("hello-from-guest") ? r.stdout : undefined;
    },
    120_000,
  );
  assert.equal(still.trim(), "hello-from-guest");
});
