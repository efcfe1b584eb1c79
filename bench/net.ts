// The network benchmark: TCP throughput guest→host and host→guest and round-trip times, tsvm (`tsvm run
// --net`) beside qemu-system-riscv64 (TCG, `-netdev stream` on a passt of its own) on the same kernel,
// initramfs, firmware and disk, in one invocation, with the tsvm/qemu ratios. Not a test.
//
// Both cards have passt's MTU (PASST_MTU: tsvm's NAT card, QEMU's `host_mtu=`), both passts the same
// options. --guest-mtu N sets eth0's MTU in both guests before measuring (1500: Ethernet-sized frames).
//
// Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/net.ts [--down-mib N] [--up-mib N]
//          [--runs N] [--guest-mtu N] [--only tsvm|qemu] [--format table|json]
import { type ChildProcessWithoutNullStreams, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createServer as createHttpServer } from "node:http";
import { type AddressInfo, createServer as createTcpServer } from "node:net";
import { cpus, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { PASST_MTU, PasstProcess } from "../src/engines/backends/passt-process.ts";
import { copyDiskFor, findImage } from "../src/images/image-store.ts";
import { hostGateway } from "../tests/integration/host-gateway.ts";
import { SerialShell } from "../tests/integration/serial-shell.ts";

const root = dirname(dirname(fileURLToPath(import.meta.url)));
const APPEND = "console=ttyS0 earlycon=sbi";
const BOOT_MS = 600_000;

const { values } = parseArgs({
  options: {
    "down-mib": { type: "string" },
    "up-mib": { type: "string" },
    runs: { type: "string" },
    "guest-mtu": { type: "string" },
    only: { type: "string" },
    format: { type: "string" },
  },
});
const downBytes = Number(values["down-mib"] ?? 8) << 20;
const upBytes = Number(values["up-mib"] ?? 4) << 20;
const runs = Number(values.runs ?? 2);
const guestMtu = values["guest-mtu"] === undefined ? null : Number(values["guest-mtu"]);
const log = (s: string) => process.stderr.write(`net-bench: ${s}\n`);

const image = findImage("default");
if (!image) {
  log("no default image: run `bin/tsvm image build` first");
  process.exit(2);
}

const gateway = hostGateway();

// Host side: an HTTP server (downloads) and a TCP sink that closes after `upBytes` (uploads).
const blob = randomBytes(downBytes);
const small = randomBytes(64);
const http = createHttpServer((req, res) => {
  const body = req.url === "/blob" ? blob : small;
  res.writeHead(200, { "content-length": body.length });
  res.end(body);
});
await new Promise<void>((r) => http.listen(0, "127.0.0.1", r));
const httpPort = (http.address() as AddressInfo).port;
const sink = createTcpServer((s) => {
  let n = 0;
  s.on("data", (b) => {
    n += b.length;
    if (n >= upBytes) s.end();
  });
  s.on("error", () => {});
});
await new Promise<void>((r) => sink.listen(0, "127.0.0.1", r));
const sinkPort = (sink.address() as AddressInfo).port;

interface PeerNumbers {
  /** eth0's MTU in the guest while measuring. */
  mtu: number | null;
  /** Guest CPU busy (%) during the best run of each direction. */
  downBusy: number | null;
  upBusy: number | null;
  downMBs: number | null;
  upMBs: number | null;
  pingMs: number | null;
  requestMs: number | null;
}

/** Guest seconds (from /proc/uptime) around `cmd`, printed as "T a b", and the CPU's time counters
 *  (/proc/stat's first line) before and after it, as "C …" lines. */
const timed = (cmd: string) =>
  `c=$(head -1 /proc/stat); a=$(cut -d' ' -f1 /proc/uptime); ${cmd}; s=$?; b=$(cut -d' ' -f1 /proc/uptime); ` +
  `echo "C $c"; echo "C $(head -1 /proc/stat)"; echo "T $a $b"; exit $s`;

/** The share of the guest's CPU time that was not idle (idle and iowait) between the two "C" lines. */
function busy(output: string): number | null {
  const lines = [...output.matchAll(/^C cpu\s+([\d ]+)$/gm)].map((m) =>
    m[1]!.trim().split(/\s+/).map(Number),
  );
  if (lines.length !== 2) return null;
  const [a, b] = lines as [number[], number[]];
  const total = b.reduce((x, y) => x + y, 0) - a.reduce((x, y) => x + y, 0);
  const idle = b[3]! + b[4]! - a[3]! - a[4]!;
  return total > 0 ? (1 - idle / total) * 100 : null;
}

function seconds(output: string): number {
  const m = /T ([\d.]+) ([\d.]+)/.exec(output);
  if (!m) throw new Error(`no timing in: ${output}`);
  return Number(m[2]) - Number(m[1]);
}

/** One booted guest on the serial console of its process. */
interface Peer {
  readonly name: string;
  readonly shell: SerialShell;
  readonly numbers: PeerNumbers;
  /** Powers the guest off and waits for its process (and its passt). */
  stop(): Promise<void>;
}

/** Waits for the peer's shell and DHCP lease, sets the MTU asked for and writes the upload's file. */
async function prepare(peer: Peer): Promise<void> {
  const { shell } = peer;
  const t0 = Date.now();
  await shell.ready(BOOT_MS);
  log(`${peer.name}: shell after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  const lease = await shell.run(
    "i=0; until ip -4 addr show eth0 | grep -q 'inet '; do sleep 1; i=$((i+1)); [ $i -ge 120 ] && exit 1; done",
    180_000,
  );
  if (lease.status !== 0) throw new Error(`${peer.name}: no DHCP lease`);
  if (guestMtu !== null) await shell.run(`ip link set dev eth0 mtu ${guestMtu}`);
  const mtu = Number((await shell.run("cat /sys/class/net/eth0/mtu")).output.trim().split("\n").at(-1));
  peer.numbers.mtu = Number.isFinite(mtu) ? mtu : null;
  await shell.run(`dd if=/dev/urandom of=/tmp/up bs=65536 count=${upBytes >> 16} 2>/dev/null`);
}

/** One timed transfer; keeps the best rate and the guest's busy share during it. */
async function transfer(peer: Peer, direction: "down" | "up"): Promise<void> {
  const cmd =
    direction === "down"
      ? `wget -q -O /dev/null http://${gateway}:${httpPort}/blob`
      : `nc ${gateway} ${sinkPort} </tmp/up`;
  const r = await peer.shell.run(timed(cmd), 600_000);
  if (r.status !== 0) {
    const said = r.output.replace(/^[CT] .*$/gm, "").trim();
    log(`${peer.name}: ${direction} failed (status ${r.status})${said ? `: ${said.slice(-200)}` : ""}`);
    return;
  }
  const rate = (direction === "down" ? downBytes : upBytes) / 1e6 / seconds(r.output);
  const n = peer.numbers;
  log(`${peer.name}: ${direction} ${rate.toFixed(2)} MB/s`);
  if (direction === "down" && rate > (n.downMBs ?? 0)) {
    n.downMBs = rate;
    n.downBusy = busy(r.output);
  }
  if (direction === "up" && rate > (n.upMBs ?? 0)) {
    n.upMBs = rate;
    n.upBusy = busy(r.output);
  }
}

/** Ping's mean round trip and the mean time of 20 small HTTP requests. */
async function latency(peer: Peer): Promise<void> {
  const ping = await peer.shell.run(`ping -c 10 -i 0.2 -W 2 ${gateway}`, 60_000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.output);
  peer.numbers.pingMs = rtt ? Number(rtt[1]) : null;
  const req = await peer.shell.run(
    timed(
      `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do wget -q -O /dev/null http://${gateway}:${httpPort}/small; done`,
    ),
  );
  peer.numbers.requestMs = req.status === 0 ? (seconds(req.output) * 1000) / 20 : null;
}

/** A peer on `child` (its process with the console on stdio); `after` runs once it has exited. */
function peerOf(name: string, child: ChildProcessWithoutNullStreams, after?: () => Promise<void>): Peer {
  const shell = new SerialShell((t) => child.stdin.write(t));
  child.stdout.on("data", (b: Buffer) => shell.write(b));
  let stderr = "";
  child.stderr.on("data", (b) => (stderr = (stderr + b).slice(-2000)));
  child.on("error", (e) => log(`${name}: ${e.message}`));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  exited.then(() => {
    if (stderr.trim() !== "") log(`${name} (stderr): ${stderr.trim()}`);
  });
  const numbers: PeerNumbers = {
    mtu: null,
    downMBs: null,
    upMBs: null,
    downBusy: null,
    upBusy: null,
    pingMs: null,
    requestMs: null,
  };
  return {
    name,
    shell,
    numbers,
    async stop() {
      child.stdin.write("poweroff -f\n");
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
      await exited;
      clearTimeout(timer);
      await after?.();
    },
  };
}

async function startQemu(): Promise<Peer> {
  const passt = new PasstProcess({ socketPath: join(dir, "qemu-passt", "passt.sock") });
  await passt.start();
  const disk = copyDiskFor(image!, join(dir, "qemu-disk.img"));
  const qemu = spawn(
    "qemu-system-riscv64",
    [
      ...["-machine", "virt", "-m", "256M", "-smp", "1", "-display", "none", "-monitor", "none"],
      ...["-serial", "stdio", "-bios", image!.firmware, "-kernel", image!.kernel, "-initrd", image!.initrd],
      ...["-append", APPEND],
      ...["-drive", `file=${disk},format=raw,if=none,id=d0`, "-device", "virtio-blk-device,drive=d0"],
      ...["-netdev", `stream,id=n0,server=off,addr.type=unix,addr.path=${passt.socketPath}`],
      ...["-device", `virtio-net-device,netdev=n0,mac=02:51:45:4d:55:01,host_mtu=${PASST_MTU}`],
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  log("qemu: booting");
  return peerOf("qemu", qemu, () => passt.stop());
}

function startTsvm(): Peer {
  const disk = copyDiskFor(image!, join(dir, "tsvm-disk.img"));
  const tsvm = spawn(
    process.execPath,
    [
      ...[
        "--import",
        join(root, "node_modules/tsx/dist/loader.mjs"),
        join(root, "bin/tsvm.ts"),
        "run",
        "--net",
      ],
      ...["--kernel", image!.kernel, "--initrd", image!.initrd, "--bios", image!.firmware, "--disk", disk],
      ...["--append", APPEND],
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  log("tsvm: booting");
  return peerOf("tsvm", tsvm);
}

// Both guests run at once and take turns, each run in the other order: the host's load, which moves a lot
// on a shared machine, falls on both alike. An idle guest costs either peer little.
const dir = mkdtempSync(join(tmpdir(), "tsvm-net-bench-"));
const results: Record<string, PeerNumbers> = {};
const peers: Peer[] = [];
try {
  if (values.only !== "tsvm") peers.push(await startQemu());
  if (values.only !== "qemu") peers.push(startTsvm());
  await Promise.all(peers.map((p) => prepare(p)));
  for (let i = 0; i < runs; i++) {
    const order = i % 2 === 0 ? peers : [...peers].reverse();
    for (const p of order) await transfer(p, "down");
    for (const p of order) await transfer(p, "up");
  }
  for (const p of peers) await latency(p);
  for (const p of peers) results[p.name] = p.numbers;
} finally {
  for (const p of peers) await p.stop().catch((e: Error) => log(`${p.name}: ${e.message}`));
  http.close();
  sink.close();
  rmSync(dir, { recursive: true, force: true });
}

const q = results.qemu;
const t = results.tsvm;
const fmt = (v: number | null | undefined, d = 2) =>
  v === null || v === undefined ? "—" : Number.isInteger(v) ? String(v) : v.toFixed(d);
const ratio = (a: number | null | undefined, b: number | null | undefined) =>
  a && b ? (a / b).toFixed(2) : "—";
if (values.format === "json") {
  process.stdout.write(`${JSON.stringify({ gateway, downBytes, upBytes, runs, results }, null, 2)}\n`);
} else {
  const rev = execFileSync("git", ["rev-parse", "--short", "HEAD"], { cwd: root, encoding: "utf8" }).trim();
  const rows: [string, number | null | undefined, number | null | undefined, string][] = [
    ["guest eth0 MTU", t?.mtu, q?.mtu, ""],
    ["host→guest TCP, MB/s", t?.downMBs, q?.downMBs, ratio(t?.downMBs, q?.downMBs)],
    ["guest→host TCP, MB/s", t?.upMBs, q?.upMBs, ratio(t?.upMBs, q?.upMBs)],
    ["  guest CPU busy ↓, %", t?.downBusy, q?.downBusy, ""],
    ["  guest CPU busy ↑, %", t?.upBusy, q?.upBusy, ""],
    ["ping gateway RTT, ms", t?.pingMs, q?.pingMs, ratio(t?.pingMs, q?.pingMs)],
    ["HTTP request, ms", t?.requestMs, q?.requestMs, ratio(t?.requestMs, q?.requestMs)],
  ];
  const lines = [
    `${new Date().toISOString()}  ${cpus()[0]?.model ?? "?"}, ${cpus().length} cores, load ${loadavg()[0]!.toFixed(2)}`,
    `tsvm ${rev} on Node ${process.version}; gateway ${gateway}; down ${downBytes >> 20} MiB, up ${upBytes >> 20} MiB, best of ${runs}`,
    "",
    `${"measure".padEnd(24)} ${"tsvm".padStart(8)} ${"qemu".padStart(8)} ${"tsvm/qemu".padStart(10)}`,
    ...rows.map(
      ([m, a, b, r]) => `${m.padEnd(24)} ${fmt(a).padStart(8)} ${fmt(b).padStart(8)} ${r.padStart(10)}`,
    ),
  ];
  process.stdout.write(`${lines.join("\n")}\n`);
}
process.exit(0);
