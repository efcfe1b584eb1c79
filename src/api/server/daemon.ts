// The tsvm daemon: one per data directory. It holds the lock, opens the hypervisor (re-attaching to VMs
// that kept running while no daemon was there), serves the API, and on SIGTERM/SIGINT lets go of the VMs
// without stopping them.
//
// $TSVM_HOME/config.json (optional):
//   { "capacity": { "cpuOvercommit": 4, "memoryReserveMiB": 1024, "diskReserveMiB": 1024 },
//     "tcpPort": 8470,              // also serve localhost TCP (bearer token); absent: Unix socket only
//     "stopTimeoutMs": 90000,       // how long a stopping guest gets before it is forced off
//     "defaultEngine": "riscv", "defaultImage": "default",
//     "engines": { "name": "/path/to/engine-module.ts" },   // added to the built-in engines
//     "images": { "name": "/path/to/disk.img" },          // disk files usable as images
//     "webSessionSeconds": 43200 }  // how long a browser signed in to the web console stays signed in

import { mkdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { boundStderr } from "../../hypervisor/bounded-log.ts";
import { availableBytes } from "../../hypervisor/disk-admission.ts";
import { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";
import { ImageCacheCatalog } from "../../hypervisor/image-catalog.ts";
import { takeDaemonLock } from "../../hypervisor/daemon-lock.ts";
import { capacityConfig, measureHostCapacity } from "../../hypervisor/resources.ts";
import { VmStore, writeFileAtomic } from "../../hypervisor/store.ts";
import { ProcessVmmLauncher } from "../../hypervisor/vmm-process.ts";
import { HEARTBEAT_EVERY_MS } from "../../hypervisor/vmm-watchdog.ts";
import { apiSocketPath, daemonLogPath, type DaemonRecord, daemonRecordPath } from "../data-dir.ts";
import { ApiServer } from "./api-server.ts";
import { EtcdEventLog } from "../../hypervisor/cluster/etcd-event-log.ts";
import { HostFailover } from "../../hypervisor/cluster/host-failover.ts";
import { FENCE_AFTER_TTL_SHARE, killNow, watchLease } from "../../hypervisor/cluster/lease-fence.ts";
import { type ClusterOptions, joinCluster } from "./cluster-join.ts";
import { ClusterRouting } from "./cluster-routing.ts";
import { ClusterMoveTransport } from "../../hypervisor/cluster/move-transport.ts";
import { ensureApiToken } from "./api-token.ts";
import { webConsoleRecordPath } from "./web-console-record.ts";
import { WebConsoleServer } from "./web-console-server.ts";

export interface DaemonOptions {
  readonly home: string;
  /** vmm-main.ts and how to run it (the tsx loader). */
  readonly vmmEntry: string;
  readonly nodeArgs: readonly string[];
  /** How to run vmm-main.ts through tsx when vmmEntry is bundled (see ProcessVmmLauncherConfig). */
  readonly typeScriptVmm?: { readonly vmmEntry: string; readonly nodeArgs: readonly string[] };
  /** network-switch-main.ts (or its bundle) and node's arguments to run it: private networks' switches. */
  readonly switchEntry?: { readonly entry: string; readonly nodeArgs: readonly string[] };
  /** Built-in engines: name → module exporting createGuest. */
  readonly engineModules: Readonly<Record<string, string>>;
  /**
   * Keep a spare VMM of the default engine waiting for the next start or resume (spare-vmm.ts);
   * `codeStamp` names the code a VMM started now would run (a spare from other code is never adopted).
   */
  readonly spareVmm?: { readonly codeStamp: () => string };
  /** Builds (or finds) the web console's files and gives their directory; absent: no web console. */
  readonly webAssets?: () => Promise<string>;
  readonly log: (line: string) => void;
  /** Join a cluster (docs/cluster.md): VM records in its etcd, the API on TCP with the cluster's token. */
  readonly cluster?: ClusterOptions;
}

interface DaemonConfig {
  capacity?: unknown;
  tcpPort?: number;
  stopTimeoutMs?: number;
  defaultEngine?: string;
  defaultImage?: string;
  engines?: Record<string, string>;
  images?: Record<string, string>;
  switchFloodRate?: number;
  webSessionSeconds?: number;
}

/** A VM name of the greatest length (vm-schemas.ts): its spec path is the longest a spare must take. */
const LONGEST_VM_NAME = "a".repeat(63);

function configError(problem: string): HypervisorError {
  return new HypervisorError("invalid-config", `the daemon configuration is unusable: ${problem}`);
}

async function readConfig(home: string): Promise<DaemonConfig> {
  const path = join(home, "config.json");
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return {};
    throw e;
  }
  let c: unknown;
  try {
    c = JSON.parse(text);
  } catch (e) {
    throw configError(`${path} is not valid JSON (${(e as Error).message})`);
  }
  if (typeof c !== "object" || c === null || Array.isArray(c))
    throw configError(`${path} must hold an object`);
  const cfg = c as DaemonConfig;
  if (cfg.tcpPort !== undefined && (!Number.isInteger(cfg.tcpPort) || cfg.tcpPort < 0 || cfg.tcpPort > 65535))
    throw configError("'tcpPort' must be a port number");
  if (cfg.stopTimeoutMs !== undefined && (!Number.isInteger(cfg.stopTimeoutMs) || cfg.stopTimeoutMs < 0))
    throw configError("'stopTimeoutMs' must be a whole number of milliseconds");
  if (
    cfg.switchFloodRate !== undefined &&
    (!Number.isInteger(cfg.switchFloodRate) || cfg.switchFloodRate < 1 || cfg.switchFloodRate > 1_000_000)
  )
    throw configError("'switchFloodRate' must be a whole number of frames per second from 1 to 1000000");
  if (
    cfg.webSessionSeconds !== undefined &&
    (!Number.isInteger(cfg.webSessionSeconds) ||
      cfg.webSessionSeconds < 1 ||
      cfg.webSessionSeconds > 2_592_000)
  )
    throw configError("'webSessionSeconds' must be a whole number of seconds from 1 to 2592000 (30 days)");
  for (const key of ["engines", "images"] as const) {
    const m = cfg[key];
    if (
      m !== undefined &&
      (typeof m !== "object" || m === null || Object.values(m).some((v) => typeof v !== "string"))
    )
      throw configError(`'${key}' must map names to file paths`);
  }
  return cfg;
}

/** The daemon's exit status after it fenced itself (lease-fence.ts): its VMMs were killed. */
export const FENCED_EXIT_CODE = 4;

/**
 * Fencing: kills every VMM of this host and ends the process in the same turn of the event loop, so that
 * nothing (a VMM exit noticed, an automatic restart) runs in between. Restarted, the daemon joins again
 * and restarts only the VMs whose records still name this host (docs/cluster.md "Fencing").
 */
function fenceAndExit(hv: Hypervisor, host: string, reason: string, log: (line: string) => void): never {
  const pids = hv
    .list()
    .vms.map((v) => v.vmmPid)
    .filter((pid): pid is number => pid !== null);
  log(`fencing host '${host}': ${reason}; killing ${pids.length} VMMs (pids ${pids.join(", ") || "none"})`);
  const alive = killNow(pids);
  log(
    alive.length === 0
      ? `fenced: every VMM of host '${host}' is gone; the daemon exits (restart it to join again)`
      : `fencing could not end the VMMs with pids ${alive.join(", ")}; the daemon exits`,
  );
  process.exit(FENCED_EXIT_CODE);
}

/** Runs the daemon until SIGTERM/SIGINT; resolves after a clean shutdown (VMs keep running). */
export async function runDaemon(options: DaemonOptions): Promise<void> {
  const { home, log } = options;
  await mkdir(home, { recursive: true, mode: 0o700 });
  // Started in the background, the daemon's stderr is daemon.log: rotate it and rate-limit what goes there.
  boundStderr(daemonLogPath(home), { rateLines: 1000 });
  // Held until this process ends; a second daemon for the same home stops here with "already-running".
  const lock = takeDaemonLock(home);
  try {
    const config = await readConfig(home);
    const capacityCfg = capacityConfig(config.capacity);
    const capacity = await measureHostCapacity(capacityCfg, home);
    const cluster = options.cluster && (await joinCluster(options.cluster, capacity, log));
    const store = await VmStore.open(home, cluster?.storeOptions);
    const defaultEngine = config.defaultEngine ?? "riscv";
    const launcher = new ProcessVmmLauncher({
      vmmEntry: options.vmmEntry,
      nodeArgs: options.nodeArgs,
      typeScriptVmm: options.typeScriptVmm,
      engineModules: { ...options.engineModules, ...config.engines },
      spare: options.spareVmm && {
        engine: defaultEngine,
        logPath: join(home, "vmm-spare.log"),
        maxSpecPathBytes: Buffer.byteLength(join(store.paths(LONGEST_VM_NAME).dir, "vmm-spec.json")),
        codeStamp: options.spareVmm.codeStamp,
        log,
      },
      // Each VMM fences itself when no heartbeat tells it of a renewal (docs/cluster.md): on the daemon's own
      // deadline, plus two heartbeats, so that a renewal just in time for the daemon is in time for its VMMs.
      lease: cluster && {
        fenceAfterMs: cluster.membership.ttlSeconds * 1000 * FENCE_AFTER_TTL_SHARE + 2 * HEARTBEAT_EVERY_MS,
        leaseAgeMs: () => Date.now() - cluster.membership.renewedAt(),
      },
    });
    const hv = await Hypervisor.open({
      store,
      capacity,
      launcher,
      images: new ImageCacheCatalog(config.images ?? {}),
      defaultEngine,
      defaultImage: config.defaultImage ?? "default",
      stopTimeoutMs: config.stopTimeoutMs ?? 90_000,
      switchEntry: options.switchEntry && {
        ...options.switchEntry,
        ...(config.switchFloodRate === undefined ? {} : { floodRate: config.switchFloodRate }),
      },
      // Measured again at each create: the figure above is stale as soon as anything writes to the disk.
      measureDiskFreeBytes: async () => (await availableBytes(home)) - capacityCfg.diskReserveMiB * 1048576,
      moveTransport:
        cluster &&
        new ClusterMoveTransport(
          cluster.member.host,
          cluster.member.token,
          cluster.member.inventory,
          cluster.member.records,
        ),
    });
    const fence =
      cluster &&
      watchLease({
        ttlSeconds: cluster.membership.ttlSeconds,
        renewedAt: () => cluster.membership.renewedAt(),
        fence: (reason) => fenceAndExit(hv, cluster.member.host, reason, log),
      });
    const failover =
      cluster &&
      new HostFailover(cluster.member, {
        ttlSeconds: cluster.membership.ttlSeconds,
        log,
        // A DOWN host's VMs on shared storage restart here when this host wins them (docs/cluster.md).
        ...(cluster.sharedStorage
          ? {
              restarter: {
                hasRoom: (record) => hv.hasRoomFor(record),
                restart: (name, reason) => hv.restartFromDownHost(name, reason),
              },
            }
          : {}),
      });
    failover?.start();
    const clusterEvents =
      cluster && (await EtcdEventLog.open(cluster.member.plane, hv.events, hv.replayedSeq, log));
    const token = cluster ? cluster.member.token : await ensureApiToken(home);
    const webAssets = options.webAssets;
    const server: ApiServer = new ApiServer(hv, {
      token,
      ...(clusterEvents ? { events: clusterEvents.log } : {}),
      cluster:
        cluster &&
        new ClusterRouting(hv, { ...cluster.member, stopTimeoutMs: config.stopTimeoutMs ?? 90_000 }),
      ...(webAssets ? { openWebConsole: (request) => web.open(request) } : {}),
    });
    const web = new WebConsoleServer({
      hv,
      api: server,
      assets: webAssets ?? (() => Promise.reject(new Error("this daemon has no web console"))),
      sessionSeconds: config.webSessionSeconds,
      ...(webAssets ? { recordPath: webConsoleRecordPath(home) } : {}),
      log,
    });
    // Before the API answers (which is when a command that started the daemon goes on): a browser signed in
    // before a restart finds its console again as soon as the daemon is back.
    await web.reopen();
    const socketPath = apiSocketPath(home);
    await server.listenUnix(socketPath);
    const tcpPort = cluster
      ? await server.listenTcp(cluster.listen.port, cluster.listen.host)
      : config.tcpPort === undefined
        ? null
        : await server.listenTcp(config.tcpPort);
    const record: DaemonRecord = {
      pid: process.pid,
      socketPath,
      tcpPort,
      startedAt: new Date().toISOString(),
    };
    await writeFileAtomic(daemonRecordPath(home), `${JSON.stringify(record)}\n`);
    hv.events.subscribe((e) => log(`${e.vmName}: ${e.from ?? "-"} → ${e.to ?? "-"} (${e.message})`));
    launcher.spare?.replenish();
    log(
      `tsvm daemon (pid ${process.pid}) serving ${socketPath}${tcpPort === null ? "" : ` and ${cluster ? cluster.listen.host : "127.0.0.1"}:${tcpPort}`}; ` +
        (cluster ? `host '${cluster.member.host}' of the cluster at ${options.cluster!.url}; ` : "") +
        `${hv.list().vms.length} VMs; capacity ${capacity.vcpus} vCPUs, ${capacity.memoryMiB} MiB`,
    );

    await new Promise<void>((resolve) => {
      const stop = (signal: string) => {
        log(`received ${signal}: shutting down; running VMs keep running`);
        resolve();
      };
      process.once("SIGTERM", () => stop("SIGTERM"));
      process.once("SIGINT", () => stop("SIGINT"));
    });
    fence?.stop();
    await failover?.stop();
    await clusterEvents?.close();
    await web.close();
    await server.close();
    await hv.close();
    await launcher.close();
    await cluster?.leave();
    await rm(daemonRecordPath(home), { force: true });
    await rm(socketPath, { force: true });
  } finally {
    lock.release();
  }
}
