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
  mtu: number | null;
  downMBs: number | null;
  upMBs: number | null;
  pingMs: number | null;
  requestMs: number | null;
}

/** Guest seconds (from /proc/uptime) around `cmd`, printed as "T a b". */
const timed = (cmd: string) =>
  `a=$(cut -d' ' -f1 /proc/uptime); ${cmd}; s=$?; b=$(cut -d' ' -f1 /proc/uptime); echo "T $a $b"; exit $s`;

function seconds(output: string): number {
  const m = /T ([\d.]+) ([\d.]+)/.exec(output);
  if (!m) throw new Error(`no timing in: ${output}`);
  return Number(m[2]) - Number(m[1]);
}

async function measure(shell: SerialShell): Promise<PeerNumbers> {
  const lease = await shell.run(
    "i=0; until ip -4 addr show eth0 | grep -q 'inet '; do sleep 1; i=$((i+1)); [ $i -ge 120 ] && exit 1; done",
    180_000,
  );
  if (lease.status !== 0) throw new Error("no DHCP lease");
  if (guestMtu !== null) await shell.run(`ip link set dev eth0 mtu ${guestMtu}`);
  const mtu = Number((await shell.run("cat /sys/class/net/eth0/mtu")).output.trim().split("\n").at(-1));
  await shell.run(`dd if=/dev/urandom of=/tmp/up bs=65536 count=${upBytes >> 16} 2>/dev/null`);
  const best = (xs: number[]) => (xs.length ? Math.max(...xs) : null);
  const down: number[] = [];
  const up: number[] = [];
  for (let i = 0; i < runs; i++) {
    const d = await shell.run(timed(`wget -q -O /dev/null http://${gateway}:${httpPort}/blob`), 600_000);
    if (d.status === 0) down.push(downBytes / 1e6 / seconds(d.output));
    const u = await shell.run(timed(`nc ${gateway} ${sinkPort} </tmp/up`), 600_000);
    if (u.status === 0) up.push(upBytes / 1e6 / seconds(u.output));
  }
  const ping = await shell.run(`ping -c 10 -i 0.2 -W 2 ${gateway}`, 60_000);
  const rtt = /= [\d.]+\/([\d.]+)\//.exec(ping.output);
  const req = await shell.run(
    timed(
      `for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do wget -q -O /dev/null http://${gateway}:${httpPort}/small; done`,
    ),
  );
  return {
    mtu: Number.isFinite(mtu) ? mtu : null,
    downMBs: best(down),
    upMBs: best(up),
    pingMs: rtt ? Number(rtt[1]) : null,
    requestMs: req.status === 0 ? (seconds(req.output) * 1000) / 20 : null,
  };
}

/** Boots one peer (its process with the console on stdio), measures, powers it off. */
async function runPeer(name: string, child: ChildProcessWithoutNullStreams): Promise<PeerNumbers> {
  const shell = new SerialShell((t) => child.stdin.write(t));
  child.stdout.on("data", (b: Buffer) => shell.write(b));
  let stderr = "";
  child.stderr.on("data", (b) => (stderr = (stderr + b).slice(-2000)));
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  try {
    const t0 = Date.now();
    await shell.ready(BOOT_MS);
    log(`${name}: shell after ${((Date.now() - t0) / 1000).toFixed(1)} s`);
    return await measure(shell);
  } catch (e) {
    throw new Error(`${name}: ${(e as Error).message}\n${stderr}`);
  } finally {
    child.stdin.write("poweroff -f\n");
    const timer = setTimeout(() => child.kill("SIGKILL"), 30_000);
    await exited;
    clearTimeout(timer);
  }
}

const dir = mkdtempSync(join(tmpdir(), "tsvm-net-bench-"));
const results: Record<string, PeerNumbers> = {};
try {
  if (values.only !== "tsvm") {
    const passt = new PasstProcess({ socketPath: join(dir, "qemu-passt", "passt.sock") });
    await passt.start();
    try {
      const disk = copyDiskFor(image, join(dir, "qemu-disk.img"));
      const qemu = spawn(
        "qemu-system-riscv64",
        [
          ...["-machine", "virt", "-m", "256M", "-smp", "1", "-display", "none", "-monitor", "none"],
          ...["-serial", "stdio", "-bios", image.firmware, "-kernel", image.kernel, "-initrd", image.initrd],
          ...["-append", APPEND],
          ...["-drive", `file=${disk},format=raw,if=none,id=d0`, "-device", "virtio-blk-device,drive=d0"],
          ...["-netdev", `stream,id=n0,server=off,addr.type=unix,addr.path=${passt.socketPath}`],
          ...["-device", `virtio-net-device,netdev=n0,mac=02:51:45:4d:55:01,host_mtu=${PASST_MTU}`],
        ],
        { stdio: ["pipe", "pipe", "pipe"] },
      );
      log("qemu: booting");
      results.qemu = await runPeer("qemu", qemu);
    } finally {
      await passt.stop();
    }
  }
  if (values.only !== "qemu") {
    const disk = copyDiskFor(image, join(dir, "tsvm-disk.img"));
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
        ...["--kernel", image.kernel, "--initrd", image.initrd, "--bios", image.firmware, "--disk", disk],
        ...["--append", APPEND],
      ],
      { stdio: ["pipe", "pipe", "pipe"] },
    );
    log("tsvm: booting");
    results.tsvm = await runPeer("tsvm", tsvm);
  }
} finally {
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
