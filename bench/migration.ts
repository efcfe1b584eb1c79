// The migration benchmark (`node --import ./node_modules/tsx/dist/loader.mjs bench/migration.ts`): an idle
// Linux guest (the default image, 256 MiB unless --memory) moved between two hosts, tsvm beside QEMU, runs
// alternating (tsvm, QEMU, tsvm, …) so that both see the same stretches of a shared host's speed.
//   tsvm: two daemons in a cluster on one etcd (src/hypervisor/fixtures/test-cluster.ts), each with its spare
//         VMM as a daemon has by default, `tsvm move` of the RUNNING VM back and forth: live (the daemons
//         drive the VMM-to-VMM stream, cluster/live-moves.ts; its active disk goes in the stream after the
//         pause); the figures are the move operation's (totalMs, downtimeMs, rounds, bytes), and its
//         statusMessage says whether it went live.
//   QEMU: qemu-system-riscv64 booted to its shell, then `migrate` over QMP to a second QEMU started with
//         -incoming on 127.0.0.1, with block migration (blk: the disk is copied too, as tsvm copies it);
//         the figures are query-migrate's (total-time, downtime, ram and disk transferred). Back and forth,
//         a fresh -incoming QEMU for each move.
// Progress goes to stderr, the table (or JSON) to stdout, with the load average before and after.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { copyFileSync, statSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import { connect, type Socket } from "node:net";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { freePort } from "../src/hypervisor/fixtures/etcd-server.ts";
import { fixtureLauncherConfig } from "../src/hypervisor/fixtures/fixture-launcher.ts";
import { fixtureVmRecord } from "../src/hypervisor/fixtures/fixture-vm-record.ts";
import { TestCluster, waitFor } from "../src/hypervisor/fixtures/test-cluster.ts";
import { BOOTARGS } from "../src/hypervisor/riscv-guest.ts";
import { type VmPaths, VmStore } from "../src/hypervisor/store.ts";
import type { VmRecord } from "../src/hypervisor/vm-record.ts";
import type { VmmHandle } from "../src/hypervisor/vmm.ts";
import { ProcessVmmLauncher } from "../src/hypervisor/vmm-process.ts";
import { copyDiskFor, findImage, type ImageInfo } from "../src/images/image-store.ts";
import { median } from "./bench-report.ts";
import { QEMU } from "./peer-versions.ts";

const HELP = `Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/migration.ts [options]

Moves an idle Linux guest between two hosts --runs times with tsvm (tsvm move: live) and with QEMU (live
migration over QMP, with its disk), alternating, and prints medians and tsvm/QEMU ratios.

Options:
  --memory MIB     guest RAM (default 256)
  --dirty-mib N    a process in each guest rewrites N MiB of its memory for ever (default 0: idle)
  --runs N         moves per peer (default 4)
  --tsvm daemons|vmm  daemons (default): \`tsvm move\` of the RUNNING VM between two daemons of a cluster
                   (live: the daemons drive the VMM-to-VMM stream, the disk in it); vmm: the VMM-to-VMM
                   stream alone, without daemons (the target's disk a copy taken beforehand)
  --format table|json
  -h, --help
`;

interface Move {
  totalMs: number;
  downtimeMs: number;
  bytes: number;
  /** tsvm daemons: whether the move went live (else stop-and-copy, its statusMessage says why). */
  live?: boolean;
}

const BOOT_TIMEOUT_MS = 15 * 60_000;

/**
 * With --dirty-mib N, each guest runs a process that rewrites the same N MiB of its memory for ever (dd
 * reading /dev/zero into its N MiB buffer: the kernel clears those pages again and again), touching no disk.
 */
function dirtierCommand(mib: number): string {
  return `dd if=/dev/zero of=/dev/null bs=${mib}M count=1000000000 >/dev/null 2>&1 &`;
}

/** tsvm: a two-host cluster with one VM, moved back and forth. */
class TsvmPeer {
  private where = "h1";
  private constructor(private readonly cluster: TestCluster) {}

  static async start(memoryMiB: number, dirtyMiB: number): Promise<TsvmPeer> {
    // Each daemon keeps a spare VMM ready, as daemons do by default (tests leave it out).
    const cluster = await TestCluster.start({
      hosts: ["h1", "h2"],
      config: () => ({ stopTimeoutMs: 5000 }),
      spareVmm: true,
    });
    const peer = new TsvmPeer(cluster);
    const r = await cluster.on(
      "h1",
      "create",
      "idle",
      "--host",
      "h1",
      "--machine-type",
      `custom-1-${memoryMiB}`,
    );
    if (r.code !== 0) throw new Error(`create: ${r.stderr}`);
    const booted = await cluster.on("h1", "exec", "idle", "--agent-wait", "600", "--", "true");
    if (booted.code !== 0) throw new Error(`the guest did not boot: ${booted.stderr}`);
    if (dirtyMiB > 0) {
      const dirtying = await cluster.on("h1", "exec", "idle", "--", "sh", "-c", dirtierCommand(dirtyMiB));
      if (dirtying.code !== 0) throw new Error(`the dirtying process did not start: ${dirtying.stderr}`);
    }
    return peer;
  }

  async move(): Promise<Move> {
    const to = this.where === "h1" ? "h2" : "h1";
    const op = await this.cluster.json("h1", "move", "idle", "--host", to);
    this.where = to;
    process.stderr.write(`tsvm: ${op.statusMessage}\n`);
    return {
      totalMs: op.migration.totalMs,
      downtimeMs: op.migration.downtimeMs,
      bytes: op.migration.bytes,
      live: /^moved live/.test(op.statusMessage),
    };
  }

  stop(): Promise<void> {
    return this.cluster.stop();
  }
}

/**
 * tsvm VMM to VMM (--tsvm vmm): the live migration of migration-stream.ts between two VMM processes, one
 * data directory each, without daemons (the stream alone, as --tsvm daemons drives it): the target VMM is launched waiting (`incoming`),
 * the source's migrateOut sends RAM in rounds while the guest runs, then pauses it for the rest. The
 * disk is not moved by this path yet: the target's is a copy of the source's taken while the idle guest
 * runs on (fine for timing an idle guest; see docs/cluster.md "Live migration").
 */
class VmmPeer {
  private current!: { handle: VmmHandle; paths: VmPaths };
  private other!: VmPaths;
  private readonly launcher = new ProcessVmmLauncher({
    ...fixtureLauncherConfig,
    engineModules: { riscv: fileURLToPath(new URL("../src/hypervisor/riscv-guest.ts", import.meta.url)) },
  });
  private readonly vm: VmRecord;

  private constructor(
    private readonly dir: string,
    memoryMiB: number,
  ) {
    this.vm = fixtureVmRecord("idle", { engine: "riscv", image: "default", memoryMiB });
  }

  static async start(image: ImageInfo, memoryMiB: number, dirtyMiB: number): Promise<VmmPeer> {
    const dir = await mkdtemp(join(tmpdir(), "tsvm-migration-vmm-"));
    const peer = new VmmPeer(dir, memoryMiB);
    const hosts: VmPaths[] = [];
    for (const host of ["h1", "h2"]) {
      const store = await VmStore.open(join(dir, host));
      await store.create(peer.vm);
      hosts.push(store.paths(peer.vm.name));
    }
    copyDiskFor(image, join(hosts[0]!.dir, "disk.img"));
    const handle = await peer.launcher.launch(peer.vm, hosts[0]!, "boot");
    peer.current = { handle, paths: hosts[0]! };
    peer.other = hosts[1]!;
    const booted = await handle.exec("true", { agentWaitMs: BOOT_TIMEOUT_MS, onOutput: () => {} });
    if (booted.exitCode !== 0) throw new Error("the guest did not boot");
    if (dirtyMiB > 0) {
      const dirtying = await handle.exec(dirtierCommand(dirtyMiB), { agentWaitMs: 0, onOutput: () => {} });
      if (dirtying.exitCode !== 0) throw new Error("the dirtying process did not start");
    }
    return peer;
  }

  async move(): Promise<Move> {
    const to = this.other;
    copyFileSync(join(this.current.paths.dir, "disk.img"), join(to.dir, "disk.img"));
    const ticket = randomBytes(16).toString("hex");
    let listening!: (port: number) => void;
    const port = new Promise<number>((r) => {
      listening = r;
    });
    const launch = this.launcher.launch(this.vm, to, "restore", {
      incoming: { ticket, waitMs: 600_000, onListening: listening },
    });
    // Total: from the ask to the guest running on the target (not the source VMM's exit after it).
    const ready = launch.then(() => Date.now());
    ready.catch(() => {});
    const asked = Date.now();
    const figures = await this.current.handle.migrateOut!({ host: "127.0.0.1", port: await port, ticket });
    const handle = await launch;
    const totalMs = (await ready) - asked;
    process.stderr.write(`tsvm (vmm): ${JSON.stringify(figures)}\n`);
    this.other = this.current.paths;
    this.current = { handle, paths: to };
    return { totalMs, downtimeMs: Math.round(figures.pausedMs), bytes: figures.bytes };
  }

  async stop(): Promise<void> {
    this.current.handle.kill();
    await this.current.handle.exited;
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A QMP connection: one command at a time, events skipped. */
class Qmp {
  private buffer = "";
  private waiting: ((line: Record<string, unknown>) => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.on("data", (d: Buffer) => {
      this.buffer += d.toString();
      for (;;) {
        const nl = this.buffer.indexOf("\n");
        if (nl < 0) break;
        const line = JSON.parse(this.buffer.slice(0, nl)) as Record<string, unknown>;
        this.buffer = this.buffer.slice(nl + 1);
        if ("return" in line || "error" in line) this.waiting?.(line);
      }
    });
  }

  static async open(path: string): Promise<Qmp> {
    const socket = await waitFor(`QMP at ${path}`, async () => {
      const s = connect(path);
      return new Promise<Socket | undefined>((resolve) => {
        s.once("connect", () => resolve(s));
        s.once("error", () => resolve(undefined));
      });
    });
    const qmp = new Qmp(socket);
    await qmp.run("qmp_capabilities");
    return qmp;
  }

  run(command: string, args?: object): Promise<Record<string, unknown>> {
    return new Promise((resolve, reject) => {
      this.waiting = (line) => {
        this.waiting = undefined;
        if ("error" in line) reject(new Error(`${command}: ${JSON.stringify(line.error)}`));
        else resolve(line.return as Record<string, unknown>);
      };
      this.socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
    });
  }

  close(): void {
    this.socket.destroy();
  }
}

/** QEMU: the source booted to its shell, moved to a fresh -incoming QEMU each time. */
class QemuPeer {
  private current!: { child: ChildProcess; qmp: Qmp; disk: string };
  private next = 0;
  private constructor(
    private readonly dir: string,
    private readonly image: ImageInfo,
    private readonly memoryMiB: number,
  ) {}

  static async start(image: ImageInfo, memoryMiB: number, dirtyMiB: number): Promise<QemuPeer> {
    const dir = await mkdtemp(join(tmpdir(), "tsvm-migration-qemu-"));
    const peer = new QemuPeer(dir, image, memoryMiB);
    const disk = join(dir, "disk-0.img");
    copyFileSync(image.disk, disk);
    const { child, qmp } = await peer.launch(disk, undefined);
    let console = "";
    child.stdout!.on("data", (d: Buffer) => {
      console = (console + d.toString()).slice(-4096);
    });
    await waitFor(
      "QEMU's guest to reach its shell",
      async () => (/[#$] $/.test(console) ? true : undefined),
      BOOT_TIMEOUT_MS,
    );
    if (dirtyMiB > 0) child.stdin!.write(`${dirtierCommand(dirtyMiB)}\n`);
    peer.current = { child, qmp, disk };
    return peer;
  }

  private async launch(
    disk: string,
    incomingPort: number | undefined,
  ): Promise<{ child: ChildProcess; qmp: Qmp }> {
    const qmpPath = join(this.dir, `qmp-${this.next++}.sock`);
    const argv = ["-M", "virt", "-smp", "1", "-m", `${this.memoryMiB}M`, "-nographic"];
    argv.push("-bios", this.image.firmware, "-kernel", this.image.kernel, "-initrd", this.image.initrd);
    argv.push("-append", BOOTARGS, "-qmp", `unix:${qmpPath},server=on,wait=off`);
    argv.push("-drive", `file=${disk},if=none,id=d0,format=raw`, "-device", "virtio-blk-device,drive=d0");
    if (incomingPort !== undefined) argv.push("-incoming", `tcp:127.0.0.1:${incomingPort}`);
    const child = spawn(QEMU, argv, { stdio: ["pipe", "pipe", "pipe"] });
    const qmp = await Qmp.open(qmpPath);
    return { child, qmp };
  }

  async move(): Promise<Move> {
    const port = await freePort();
    const disk = join(this.dir, `disk-${this.next}.img`);
    // The destination's disk: empty, of the same size; block migration fills it.
    execFileSync("truncate", ["-s", String(statSync(this.current.disk).size), disk]);
    const target = await this.launch(disk, port);
    const source = this.current;
    await source.qmp.run("migrate", { uri: `tcp:127.0.0.1:${port}`, blk: true });
    const info = await waitFor(
      "QEMU's migration to complete",
      async () => {
        const q = await source.qmp.run("query-migrate");
        if (q.status === "failed") throw new Error(`QEMU's migration failed: ${JSON.stringify(q)}`);
        return q.status === "completed" ? q : undefined;
      },
      600_000,
    );
    await source.qmp.run("quit").catch(() => {});
    source.qmp.close();
    source.child.kill("SIGKILL");
    await rm(source.disk, { force: true });
    this.current = { ...target, disk };
    const ram = info.ram as { transferred: number };
    const blk = info.disk as { transferred: number } | undefined;
    return {
      totalMs: info["total-time"] as number,
      downtimeMs: info.downtime as number,
      bytes: ram.transferred + (blk?.transferred ?? 0),
    };
  }

  async stop(): Promise<void> {
    this.current.qmp.close();
    this.current.child.kill("SIGKILL");
    await rm(this.dir, { recursive: true, force: true });
  }
}

function summary(moves: Move[]): { totalMs: number; downtimeMs: number; mib: number; runs: Move[] } {
  return {
    totalMs: median(moves.map((m) => m.totalMs))!,
    downtimeMs: median(moves.map((m) => m.downtimeMs))!,
    mib: Math.round((median(moves.map((m) => m.bytes))! / 1048576) * 10) / 10,
    runs: moves,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      memory: { type: "string", default: "256" },
      runs: { type: "string", default: "4" },
      tsvm: { type: "string", default: "daemons" },
      "dirty-mib": { type: "string", default: "0" },
      format: { type: "string", default: "table" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const memoryMiB = Number(values.memory);
  const runs = Number(values.runs);
  const dirtyMiB = Number(values["dirty-mib"]);
  const image = findImage("default");
  if (!image) {
    process.stderr.write("no default image: run `tsvm image build` first\n");
    return 1;
  }
  const loadBefore = loadavg();
  process.stderr.write(`booting a ${memoryMiB} MiB guest on tsvm and on QEMU\n`);
  if (values.tsvm !== "daemons" && values.tsvm !== "vmm") {
    process.stderr.write(`--tsvm is daemons or vmm, not '${values.tsvm}'\n`);
    return 2;
  }
  const [tsvm, qemu] = await Promise.all([
    values.tsvm === "vmm" ? VmmPeer.start(image, memoryMiB, dirtyMiB) : TsvmPeer.start(memoryMiB, dirtyMiB),
    QemuPeer.start(image, memoryMiB, dirtyMiB),
  ]);
  const results = { tsvm: [] as Move[], qemu: [] as Move[] };
  try {
    for (let i = 0; i < runs; i++) {
      for (const [name, peer] of [
        ["tsvm", tsvm],
        ["qemu", qemu],
      ] as const) {
        const m = await peer.move();
        results[name].push(m);
        process.stderr.write(`${name} move ${i + 1}: ${JSON.stringify(m)}\n`);
      }
    }
  } finally {
    await Promise.all([tsvm.stop(), qemu.stop()]);
  }
  const report = {
    memoryMiB,
    dirtyMiB,
    runs,
    loadAverage: { before: loadBefore.map((l) => l.toFixed(2)), after: loadavg().map((l) => l.toFixed(2)) },
    tsvm: summary(results.tsvm),
    qemu: summary(results.qemu),
  };
  if (values.format === "json") process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
  else {
    const row = (name: string, s: ReturnType<typeof summary>) =>
      `${name.padEnd(6)} ${String(s.totalMs).padStart(9)} ${String(s.downtimeMs).padStart(12)} ${String(s.mib).padStart(9)}\n`;
    const ratio = (a: number, b: number) => (b > 0 ? (a / b).toFixed(2) : "-");
    process.stdout.write(
      `${dirtyMiB > 0 ? `${dirtyMiB} MiB-dirtying` : "idle"} ${memoryMiB} MiB guest, median of ${runs} moves; load average ${report.loadAverage.before.join(" ")} → ${report.loadAverage.after.join(" ")}\n` +
        `peer    total ms  downtime ms  MiB sent   (tsvm: ${values.tsvm}${values.tsvm === "daemons" ? `, ${results.tsvm.filter((m) => m.live).length} of ${runs} moves live` : ""})\n` +
        row("tsvm", report.tsvm) +
        row("qemu", report.qemu) +
        `tsvm/qemu ${ratio(report.tsvm.totalMs, report.qemu.totalMs).padStart(7)} ${ratio(report.tsvm.downtimeMs, report.qemu.downtimeMs).padStart(12)} ${ratio(report.tsvm.mib, report.qemu.mib).padStart(9)}\n`,
    );
  }
  return 0;
}

process.exitCode = await main();
