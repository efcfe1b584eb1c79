// One VMM process per VM (vmm-main.ts), and the daemon's side of its control socket: spawning, waiting
// until the guest runs, requests, exit detection, and re-attaching after a daemon restart.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile, rm } from "node:fs/promises";
import type { Socket } from "node:net";
import { join } from "node:path";
import { describeHolder, lockHolders } from "../engines/backends/file-lock.ts";
import { rotateIfLarger } from "./bounded-log.ts";
import { connectUnix } from "./control-socket.ts";
import { activeDiskOf, recoverActiveDisk } from "./disk-store.ts";
import { identityOf } from "./guest-identity.ts";
import { nicsSpecOf } from "./network-interfaces.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import {
  isSameProcess,
  type ProcessIdentity,
  processArguments,
  readProcessIdentity,
} from "./process-identity.ts";
import { type AdoptedVmm, SpareVmm, type SpareVmmOptions } from "./spare-vmm.ts";
import { replaceFile, type VmPaths } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";
import type {
  LaunchMode,
  LaunchOptions,
  VmmExecOptions,
  VmmExit,
  VmmHandle,
  VmmLauncher,
  VmmSession,
  VmmSessionOptions,
} from "./vmm.ts";
import { openVmmSession } from "./vmm-session-client.ts";
import { HEARTBEAT_EVERY_MS, type LeaseWitness } from "./vmm-watchdog.ts";
import {
  encodeMessage,
  type HelloResult,
  LineDecoder,
  parseExitRecord,
  parseRunRecord,
  VMM_PROTOCOL_VERSION,
  type MigrationFigures,
  type SuspendFigures,
  type VmmMethod,
  type VmmRequest,
  type VmmResponse,
  type VmmRunRecord,
  type VmmMigrateParams,
  type VmmSnapshotParams,
  type VmmSpec,
} from "./vmm-protocol.ts";

/** How long a re-attach waits for a VMM found starting (it holds its disk but has not yet recorded itself). */
const STARTING_VMM_WAIT_MS = 10_000;

export interface ProcessVmmLauncherConfig {
  /** Path of vmm-main.ts. */
  readonly vmmEntry: string;
  /** Arguments for node before the entry, e.g. the tsx loader: ["--import", "file:///…/loader.mjs"]. */
  readonly nodeArgs: readonly string[];
  /**
   * When vmmEntry is the start-up bundle's JavaScript: vmm-main.ts and node's arguments to run it through
   * tsx, for an engine module written in TypeScript (a daemon configuration's own engine), which a bundled
   * VMM cannot import.
   */
  readonly typeScriptVmm?: { readonly vmmEntry: string; readonly nodeArgs: readonly string[] };
  /** Engine name (VmRecord.engine) → module exporting createGuest. Set by the composition root. */
  readonly engineModules: Readonly<Record<string, string>>;
  /** How long a VMM may take to boot or restore before it is given up (ms). */
  readonly startTimeoutMs?: number;
  /** How long a running VMM may take to answer a request before it is taken for hung (see request()). */
  readonly requestDeadlines?: VmmRequestDeadlines;
  /**
   * Keep a spare VMM of this engine waiting (spare-vmm.ts), started by `spare.replenish()` and after each
   * launch; a launch adopts it instead of spawning. Absent: every launch spawns.
   */
  readonly spare?: SpareVmmOptions & { readonly engine: string };
  /** In a cluster: the host's lease, told to every VMM by heartbeats; each fences itself without them. */
  readonly lease?: LeaseWitness;
}

export class VmmStartError extends HypervisorError {
  constructor(vmName: string, problem: string) {
    super("vmm-start-failed", `the VM '${vmName}' could not be started: ${problem}`);
  }
}

/** The spec file a VMM of this VM runs with: on its command line, it tells this VM's VMM from any process. */
function specPathOf(paths: VmPaths): string {
  return join(paths.dir, "vmm-spec.json");
}

/**
 * A process holding the VM's disk lock that is a VMM of this VM (its spec file on its command line), with
 * its identity read now: a VMM still starting, not yet in vmm.json, or one a dead daemon never recorded.
 */
function diskHolderOf(paths: VmPaths): ProcessIdentity | undefined {
  for (const pid of lockHolders(activeDiskOf(paths.dir))) {
    const id = readProcessIdentity(pid);
    if (id && processArguments(pid)?.includes(specPathOf(paths))) return id;
  }
  return undefined;
}

/**
 * The identity of the VMM a run record names, if that process still runs and is the VMM of the VM whose
 * spec file is `specPath`: same boot and start time as recorded (a record from before those were kept: its
 * spec file on the command line).
 */
export function verifiedVmm(run: VmmRunRecord, specPath: string): ProcessIdentity | undefined {
  const id =
    run.bootId !== undefined && run.startTime !== undefined
      ? { pid: run.pid, bootId: run.bootId, startTime: run.startTime }
      : readProcessIdentity(run.pid);
  return id && isSameProcess(id, specPath) ? id : undefined;
}

async function readRunRecord(paths: VmPaths, vmId: string): Promise<VmmRunRecord | undefined> {
  const text = await readFile(paths.vmm, "utf8").catch(() => undefined);
  const run = text === undefined ? undefined : parseRunRecord(text);
  return run?.vmId === vmId ? run : undefined;
}

/** Sends `signal` to the VMM only while `id` still names it (never to a process that reused its pid). */
function signalVmm(id: ProcessIdentity | undefined, paths: VmPaths, signal: NodeJS.Signals): boolean {
  if (!id || !isSameProcess(id, specPathOf(paths))) return false;
  try {
    process.kill(id.pid, signal);
    return true;
  } catch {
    return false;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function readExit(paths: VmPaths, vmId: string): Promise<VmmExit | undefined> {
  const text = await readFile(join(paths.dir, "exit.json"), "utf8").catch(() => undefined);
  const record = text === undefined ? undefined : parseExitRecord(text);
  if (!record || record.vmId !== vmId) return undefined;
  return { reason: record.reason, detail: record.detail };
}

/** A spawned VMM's messages need no hand-over (see AdoptedVmm): they are listened to from its start. */
function spawnedVmm(child: ChildProcess): AdoptedVmm {
  return { child, listen: (listener) => child.on("message", listener) };
}

/** Spawns a VMM for the spec at `specPath`, its output appended to `logPath`. */
function spawnVmm(
  nodeArgs: readonly string[],
  vmmEntry: string,
  specPath: string,
  logPath: string,
): ChildProcess {
  const logFd = openSync(logPath, "a", 0o600);
  try {
    // detached: its own process group, so that a signal to the daemon's group (Ctrl-C) spares the VMs.
    return spawn(process.execPath, [...nodeArgs, vmmEntry, specPath], {
      detached: true,
      stdio: ["ignore", logFd, logFd, "ipc"],
    });
  } finally {
    closeSync(logFd);
  }
}

export class ProcessVmmLauncher implements VmmLauncher {
  /** A Map, not the config's object: an engine named `constructor` must not find Object's. */
  private readonly engineModules: ReadonlyMap<string, string>;
  /** The spare VMM that a launch adopts before it spawns one; none without config.spare. */
  readonly spare: SpareVmm | undefined;

  constructor(private readonly config: ProcessVmmLauncherConfig) {
    this.engineModules = new Map(Object.entries(config.engineModules));
    const spareModule = config.spare && this.engineModules.get(config.spare.engine);
    this.spare =
      config.spare && spareModule
        ? new SpareVmm(
            { vmmEntry: config.vmmEntry, nodeArgs: config.nodeArgs, engineModule: spareModule },
            config.spare,
          )
        : undefined;
  }

  /** Ends the spare VMM, if any (the daemon stops; its VMs' VMMs run on). */
  async close(): Promise<void> {
    await this.spare?.close();
  }

  engines(): readonly string[] {
    return [...this.engineModules.keys()];
  }

  async launch(
    vm: VmRecord,
    paths: VmPaths,
    mode: LaunchMode,
    options: LaunchOptions = {},
  ): Promise<VmmHandle> {
    const engineModule = this.engineModules.get(vm.engine);
    if (!engineModule)
      throw new VmmStartError(vm.name, `the engine '${vm.engine}' is not available in this build of tsvm`);
    // Never beside a VMM that still has the disk: it would lose its run record and socket to this one.
    const holders = lockHolders(activeDiskOf(paths.dir));
    if (holders.length > 0)
      throw new VmmStartError(
        vm.name,
        `its disk ${activeDiskOf(paths.dir)} is in use by another VMM (${describeHolder(activeDiskOf(paths.dir))})`,
      );
    // A VMM that died while freezing its disk for a snapshot left it for the next one to settle.
    await recoverActiveDisk(paths.dir);
    // Inside the VM's directory whatever its length (control-socket.ts), mode 0600.
    const socketPath = join(paths.dir, "vmm.sock");
    const spec: VmmSpec = {
      protocol: VMM_PROTOCOL_VERSION,
      mode,
      vmId: vm.id,
      name: vm.name,
      engine: vm.engine,
      engineModule,
      cpus: vm.cpus,
      memoryMiB: vm.memoryMiB,
      image: vm.image,
      cpuCapPercent: vm.cpuCapPercent,
      cpuWeight: vm.cpuWeight,
      identity: identityOf(vm),
      vmDir: paths.dir,
      diskPath: activeDiskOf(paths.dir),
      stateDir: paths.stateDir,
      consoleLog: paths.consoleLog,
      socketPath,
      nics: nicsSpecOf(vm, paths.dir),
      ...(options.incoming
        ? {
            incoming: {
              host: options.incoming.host ?? "127.0.0.1",
              ticket: options.incoming.ticket,
              waitMs: options.incoming.waitMs,
              ...(options.incoming.diskBytes === undefined ? {} : { diskBytes: options.incoming.diskBytes }),
              ...(options.incoming.onReceived ? { gated: true } : {}),
            },
          }
        : {}),
      // Only a VM on shared storage may be restarted by another host, so only its VMM must fence itself; any
      // other VMM outlives its daemon (a restart may take long) as on a single host.
      ...(this.config.lease && vm.sharedStorage ? { fenceAfterMs: this.config.lease.fenceAfterMs } : {}),
    };
    await rm(join(paths.dir, "exit.json"), { force: true });
    await rm(paths.vmm, { force: true });
    const specPath = specPathOf(paths);
    // Read at once by the VMM, and rewritten by every launch: it need not survive a host crash.
    await replaceFile(specPath, `${JSON.stringify(spec, null, 2)}\n`);

    // The VMM bounds vmm.log itself (bounded-log.ts); what it inherits from earlier VMMs is rotated here.
    const logPath = join(paths.dir, "vmm.log");
    rotateIfLarger(logPath);
    const { vmmEntry, nodeArgs } =
      this.config.typeScriptVmm && /\.[cm]?ts$/.test(engineModule) ? this.config.typeScriptVmm : this.config;
    try {
      const vmm: AdoptedVmm =
        (await this.spare?.adopt({ vmmEntry, nodeArgs, engineModule }, specPath, logPath)) ??
        spawnedVmm(spawnVmm(nodeArgs, vmmEntry, specPath, logPath));
      return await this.started(vm, paths, vmm, socketPath, options.incoming);
    } finally {
      // The next spare starts once this VM's start is done, not beside it: spawning it would hold up the
      // daemon's event loop (fork) and its start would take CPU from this one.
      this.spare?.replenishSoon();
    }
  }

  /** Waits until the VMM `child` runs its guest, and connects to its control socket. */
  private async started(
    vm: VmRecord,
    paths: VmPaths,
    { child, listen }: AdoptedVmm,
    socketPath: string,
    incoming?: LaunchOptions["incoming"],
  ): Promise<VmmHandle> {
    // A migration's target starts once the source has sent the guest, which may take its wait.
    const timeoutMs = (this.config.startTimeoutMs ?? 120_000) + (incoming?.waitMs ?? 0);
    const pid = child.pid!;
    // The control connection is made (and checked with hello) as soon as the VMM listens, while its guest
    // is still being built, rather than after: a resume is RUNNING that much sooner.
    let connecting: Promise<SocketVmmHandle | undefined> | undefined;
    const connect = () =>
      (connecting ??= SocketVmmHandle.connect(
        vm,
        paths,
        readProcessIdentity(pid) ?? { pid, bootId: "", startTime: "" },
        socketPath,
        child,
        this.config.requestDeadlines ?? DEFAULT_REQUEST_DEADLINES,
        this.config.lease,
      ));
    const outcome = await new Promise<{ ok: true } | { ok: false; problem: string }>((resolve) => {
      const timer = setTimeout(() => {
        child.kill("SIGKILL");
        resolve({ ok: false, problem: `its VMM did not start within ${timeoutMs} ms` });
      }, timeoutMs);
      listen((raw) => {
        const msg = raw as { type?: string; message?: string; port?: unknown } | null;
        if (msg?.type === "listening") {
          void connect();
          return;
        }
        if (msg?.type === "incoming" && incoming && typeof msg.port === "number") {
          incoming.onListening(msg.port);
          return;
        }
        if (msg?.type === "received" && incoming?.onReceived) {
          // The launcher's word decides whether the guest runs (a move's takeover of the VM's record).
          void incoming.onReceived().then(
            () => child.send({ type: "incoming-run" }, () => {}),
            (e: Error) => child.send({ type: "incoming-abort", message: e.message }, () => {}),
          );
          return;
        }
        clearTimeout(timer);
        if (msg?.type === "ready") resolve({ ok: true });
        else resolve({ ok: false, problem: String(msg?.message ?? "the VMM reported a failure") });
      });
      child.on("error", (e) => {
        clearTimeout(timer);
        resolve({ ok: false, problem: `its VMM process could not be spawned (${e.message})` });
      });
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        resolve({
          ok: false,
          problem: `its VMM exited during start (${signal ? `signal ${signal}` : `exit code ${code}`}); see ${join(paths.dir, "vmm.log")}`,
        });
      });
    });
    if (!outcome.ok) {
      // A connection made while it started is let go (its close is not this VM's exit).
      void connecting?.then((h) => h?.detach());
      if (child.exitCode === null && child.signalCode === null) {
        await new Promise((resolve) => {
          child.once("exit", resolve);
          setTimeout(resolve, 5000);
        });
      }
      throw new VmmStartError(vm.name, outcome.problem);
    }
    if (child.connected) child.disconnect();
    child.unref();
    const handle = await connect();
    if (!handle) {
      child.kill("SIGKILL");
      throw new VmmStartError(vm.name, "its VMM started but does not answer on its control socket");
    }
    return handle;
  }

  async reattach(vm: VmRecord, paths: VmPaths): Promise<VmmHandle | { exit: VmmExit }> {
    let run = await readRunRecord(paths, vm.id);
    let id = run && verifiedVmm(run, specPathOf(paths));
    // A VMM of this VM that holds the disk but has not recorded itself yet is starting: wait for it.
    for (let t0 = Date.now(); !id && Date.now() - t0 < STARTING_VMM_WAIT_MS; ) {
      const holder = diskHolderOf(paths);
      if (!holder) break;
      await sleep(100);
      run = await readRunRecord(paths, vm.id);
      if (run?.pid === holder.pid) id = verifiedVmm(run, specPathOf(paths));
      else if (!isSameProcess(holder, specPathOf(paths))) break;
    }
    if (run && id) {
      const handle = await SocketVmmHandle.connect(
        vm,
        paths,
        id,
        run.socketPath,
        undefined,
        this.config.requestDeadlines ?? DEFAULT_REQUEST_DEADLINES,
        this.config.lease,
      );
      if (handle) return handle;
      // Alive but deaf: a hung VMM cannot be controlled, so it is ended and repaired like a crashed one.
      signalVmm(id, paths, "SIGKILL");
      return {
        exit: { reason: "crashed", detail: `the VMM (pid ${run.pid}) did not answer on its control socket` },
      };
    }
    // A record whose pid no longer names this VM's VMM (a reboot, a reused pid) is never signalled.
    return {
      exit: (await readExit(paths, vm.id)) ?? {
        reason: "crashed",
        detail: run
          ? `the VMM (pid ${run.pid}) is gone and left no exit record`
          : "no VMM is recorded for the VM",
      },
    };
  }
}

export interface VmmRequestDeadlines {
  /** reset and stats: answered at once by a VMM whose event loop runs. */
  readonly controlMs: number;
  /** suspend: answered once the whole state is written and flushed (guest RAM up to 2 GiB). */
  readonly suspendMs: number;
}

const DEFAULT_REQUEST_DEADLINES: VmmRequestDeadlines = { controlMs: 30_000, suspendMs: 600_000 };

/** The daemon's end of one VMM's control socket. */
class SocketVmmHandle implements VmmHandle {
  readonly exited: Promise<VmmExit>;
  private resolveExit!: (exit: VmmExit) => void;
  private readonly pending = new Map<number, { resolve: (r: unknown) => void; reject: (e: Error) => void }>();
  private nextId = 1;
  private noticeListener: ((message: string) => void) | undefined;
  private agentHelloListener: (() => void) | undefined;
  private detached = false;
  private forced = false;
  private childExit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** Settles when the daemon's own child (if this VMM is one) has been reaped and its status is known. */
  private readonly childReaped: Promise<void> | undefined;
  /** The heartbeats that keep the VMM's fence away (cluster only, vmm-watchdog.ts). */
  private heartbeat: NodeJS.Timeout | undefined;

  readonly pid: number;

  private constructor(
    private readonly vm: VmRecord,
    private readonly paths: VmPaths,
    private readonly identity: ProcessIdentity,
    private readonly socket: Socket,
    private readonly socketPath: string,
    child: ChildProcess | undefined,
    private readonly deadlines: VmmRequestDeadlines,
  ) {
    this.pid = identity.pid;
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
    this.childReaped = child
      ? new Promise((resolve) => {
          child.on("exit", (code, signal) => {
            this.childExit = { code, signal };
            resolve();
          });
        })
      : undefined;
    socket.setEncoding("utf8");
    const decoder = new LineDecoder(
      (msg) => this.onResponse(msg as VmmResponse),
      () => socket.destroy(),
    );
    socket.on("data", (chunk: string) => decoder.push(chunk));
    socket.on("error", () => {});
    socket.on("close", () => void this.onClose());
  }

  /** Connects and checks (hello) that the VMM at `socketPath` is the one of `vm` with `identity`. */
  static async connect(
    vm: VmRecord,
    paths: VmPaths,
    identity: ProcessIdentity,
    socketPath: string,
    child: ChildProcess | undefined,
    deadlines: VmmRequestDeadlines,
    lease?: LeaseWitness,
  ): Promise<SocketVmmHandle | undefined> {
    const pid = identity.pid;
    const socket = await new Promise<Socket | undefined>((resolve) => {
      const s = connectUnix(socketPath);
      const timer = setTimeout(() => {
        s.destroy();
        resolve(undefined);
      }, 3000);
      s.once("connect", () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once("error", () => {
        clearTimeout(timer);
        resolve(undefined);
      });
    });
    if (!socket) return undefined;
    const handle = new SocketVmmHandle(vm, paths, identity, socket, socketPath, child, deadlines);
    try {
      const hello = (await Promise.race([
        handle.request("hello"),
        sleep(3000).then(() => Promise.reject(new Error("timeout"))),
      ])) as HelloResult;
      if (hello.vmId === vm.id && hello.pid === pid && hello.protocol === VMM_PROTOCOL_VERSION) {
        if (lease) handle.keepAlive(lease);
        return handle;
      }
    } catch {}
    handle.detach();
    return undefined;
  }

  /** Sends a heartbeat with the lease's age now and every HEARTBEAT_EVERY_MS, until the connection ends. */
  private keepAlive(lease: LeaseWitness): void {
    const beat = () => {
      if (this.socket.destroyed) return clearInterval(this.heartbeat);
      this.socket.write(
        encodeMessage({
          id: 0,
          method: "heartbeat",
          params: { leaseAgeMs: Math.max(0, lease.leaseAgeMs()) },
        }),
      );
    };
    beat();
    this.heartbeat = setInterval(beat, HEARTBEAT_EVERY_MS);
    this.heartbeat.unref();
  }

  onNotice(callback: (message: string) => void): void {
    this.noticeListener = callback;
  }

  onAgentHello(callback: () => void): void {
    this.agentHelloListener = callback;
  }

  private onResponse(msg: VmmResponse): void {
    if (msg.id === 0 && typeof msg.notice === "string") {
      // Bounded and printable: a VMM hosts a guest, and the message goes into the event stream.
      this.noticeListener?.(msg.notice.replace(/[^\x20-\x7e]+/g, " ").slice(0, 1000));
      return;
    }
    if (msg.id === 0 && msg.agentHello === true) {
      this.agentHelloListener?.();
      return;
    }
    const waiter = this.pending.get(msg.id);
    if (!waiter) return;
    this.pending.delete(msg.id);
    if (msg.error) waiter.reject(new HypervisorError(msg.error.code, msg.error.message));
    else waiter.resolve(msg.result);
  }

  private async onClose(): Promise<void> {
    clearInterval(this.heartbeat);
    for (const waiter of this.pending.values())
      waiter.reject(
        new HypervisorError("vmm-gone", `the VMM of '${this.vm.name}' closed its control socket`),
      );
    this.pending.clear();
    if (this.detached) return;
    // The socket closes as the process exits; give the process a moment to be gone for good. A child of
    // this daemon is a zombie (not alive) before Node reaps it and reports how it ended, so wait for that.
    if (this.childReaped && !this.childExit) await Promise.race([this.childReaped, sleep(5000)]);
    for (let i = 0; i < 50 && this.running(); i++) await sleep(100);
    if (this.running() && signalVmm(this.identity, this.paths, "SIGKILL")) this.forced = true;
    const recorded = await readExit(this.paths, this.vm.id);
    if (recorded) return this.resolveExit(recorded);
    if (this.forced)
      return this.resolveExit({ reason: "forced", detail: "the VMM was killed after a stop timeout" });
    const how = this.childExit?.signal
      ? `killed by ${this.childExit.signal}`
      : this.childExit
        ? `exit code ${this.childExit.code}`
        : "no exit record";
    this.resolveExit({
      reason: "crashed",
      detail: `the VMM process (pid ${this.pid}) ended unexpectedly (${how})`,
    });
  }

  /**
   * One request and its answer. A VMM that has not answered within `deadlineMs` is alive but deaf (hung,
   * or stopped with SIGSTOP): it cannot be controlled, and without a deadline the operation — and every one
   * queued behind it on the VM — would wait for ever. It is ended, as a re-attach ends a deaf VMM, and its
   * exit is repaired like a crash.
   */
  private request(method: VmmMethod, params?: VmmRequest["params"], deadlineMs?: number): Promise<unknown> {
    if (this.socket.destroyed)
      return Promise.reject(new HypervisorError("vmm-gone", `the VMM of '${this.vm.name}' is not running`));
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer =
        deadlineMs === undefined
          ? undefined
          : setTimeout(() => {
              if (!this.pending.delete(id)) return;
              reject(
                new HypervisorError(
                  "vmm-unresponsive",
                  `the VMM of '${this.vm.name}' (pid ${this.pid}) did not answer '${method}' within ${deadlineMs / 1000} s and was ended; the VM is repaired`,
                ),
              );
              this.kill();
            }, deadlineMs);
      this.pending.set(id, {
        resolve: (r) => {
          clearTimeout(timer);
          resolve(r);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.socket.write(encodeMessage({ id, method, params }));
    });
  }

  async stop(timeoutMs: number): Promise<VmmExit> {
    try {
      await this.request("stop", { timeoutMs });
    } catch {
      // Gone already, or not listening: the watchdog below ends it either way.
    }
    // The VMM forces its guest off at timeoutMs; this watchdog covers a VMM too hung to do so.
    const watchdog = setTimeout(() => {
      this.forced = true;
      this.kill();
    }, timeoutMs + 5000);
    const exit = await this.exited;
    clearTimeout(watchdog);
    return exit;
  }

  async reset(): Promise<void> {
    await this.request("reset", undefined, this.deadlines.controlMs);
  }

  async suspend(): Promise<SuspendFigures | undefined> {
    const result = (await this.request("suspend", undefined, this.deadlines.suspendMs)) as Partial<
      Record<keyof SuspendFigures, unknown>
    > | null;
    const exit = await this.exited;
    if (exit.reason !== "suspended")
      throw new HypervisorError(
        "suspend-failed",
        `the VMM of '${this.vm.name}' ended while suspending: ${exit.detail}`,
      );
    const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : undefined);
    const pausedMs = n(result?.pausedMs);
    if (pausedMs === undefined) return undefined;
    return {
      pausedMs,
      rounds: n(result?.rounds) ?? 0,
      bytes: n(result?.bytes) ?? 0,
      runningMs: n(result?.runningMs) ?? 0,
    };
  }

  async migrateOut(target: VmmMigrateParams): Promise<MigrationFigures> {
    const result = (await this.request("migrateOut", { ...target }, this.deadlines.suspendMs)) as Partial<
      Record<keyof MigrationFigures, unknown>
    > | null;
    const exit = await this.exited;
    if (exit.reason !== "migrated")
      throw new HypervisorError(
        "move-failed",
        `the VMM of '${this.vm.name}' ended while migrating: ${exit.detail}`,
      );
    const n = (v: unknown) => (typeof v === "number" && Number.isFinite(v) && v >= 0 ? v : 0);
    return {
      rounds: n(result?.rounds),
      bytes: n(result?.bytes),
      runningMs: n(result?.runningMs),
      pausedMs: n(result?.pausedMs),
    };
  }

  async migrateSettle(resume: boolean): Promise<void> {
    await this.request("migrateSettle", { resume }, this.deadlines.controlMs);
    if (resume) return;
    const exit = await this.exited;
    if (exit.reason !== "migrated")
      throw new HypervisorError("move-failed", `the VMM of '${this.vm.name}' ended: ${exit.detail}`);
  }

  async canMigrateLive(): Promise<boolean> {
    try {
      const result = (await this.request("capabilities", undefined, this.deadlines.controlMs)) as {
        liveMigration?: unknown;
      } | null;
      return result?.liveMigration === true;
    } catch {
      // A VMM from before the method: it answers "unknown method".
      return false;
    }
  }

  async snapshot(params: VmmSnapshotParams): Promise<{ pausedMs: number }> {
    const result = (await this.request("snapshot", params, this.deadlines.suspendMs)) as {
      pausedMs?: unknown;
    };
    return { pausedMs: typeof result?.pausedMs === "number" ? result.pausedMs : Number.NaN };
  }

  async stats(): Promise<Record<string, number>> {
    return (await this.request("stats", undefined, this.deadlines.controlMs)) as Record<string, number>;
  }

  async attachConsole(): Promise<Socket> {
    const gone = () => new HypervisorError("not-running", `the VM '${this.vm.name}' has no running VMM`);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connectUnix(this.socketPath);
      s.once("connect", () => resolve(s));
      s.once("error", () => reject(gone()));
    });
    // One request line, one answer line; after it the connection is raw console bytes.
    socket.write(encodeMessage({ id: 1, method: "attachConsole" }));
    await new Promise<void>((resolve, reject) => {
      let answer = "";
      const onData = (chunk: Buffer) => {
        answer += chunk.toString("utf8");
        const nl = answer.indexOf("\n");
        if (nl < 0) return;
        socket.off("data", onData);
        const rest = Buffer.from(answer.slice(nl + 1), "utf8");
        if (rest.length > 0) socket.unshift(rest);
        const response = JSON.parse(answer.slice(0, nl)) as VmmResponse;
        if (response.error) reject(new HypervisorError(response.error.code, response.error.message));
        else resolve();
      };
      socket.on("data", onData);
      socket.once("close", () => reject(gone()));
    });
    return socket;
  }

  async exec(command: string, options: VmmExecOptions): Promise<{ exitCode: number }> {
    const gone = () =>
      new HypervisorError("not-running", `the VM '${this.vm.name}' stopped while the command ran`);
    // A connection of its own: closing it is how a caller that went away kills the command.
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connectUnix(this.socketPath);
      s.once("connect", () => resolve(s));
      s.once("error", () =>
        reject(new HypervisorError("not-running", `the VM '${this.vm.name}' has no running VMM`)),
      );
    });
    socket.on("error", () => {});
    const onAbort = () => socket.destroy();
    options.signal?.addEventListener("abort", onAbort);
    if (options.signal?.aborted) socket.destroy();
    try {
      return await new Promise<{ exitCode: number }>((resolve, reject) => {
        let settled = false;
        const settle = (fn: () => void) => {
          if (settled) return;
          settled = true;
          fn();
          socket.destroy();
        };
        socket.setEncoding("utf8");
        /** Back-pressure promises from onOutput not yet settled; the socket is paused while any is. */
        let waits = 0;
        const decoder = new LineDecoder(
          (raw) => {
            const msg = raw as VmmResponse;
            if (msg.output) {
              const stream = msg.output.stream === "stderr" ? "stderr" : "stdout";
              const wait = options.onOutput(
                new Uint8Array(Buffer.from(String(msg.output.data), "base64")),
                stream,
              );
              // The caller's reader is behind: read nothing more until it catches up, so that what is
              // queued for it stays bounded here; the VMM bounds (and reports) what queues there.
              if (wait) {
                if (waits++ === 0) socket.pause();
                void wait.finally(() => {
                  if (--waits === 0) socket.resume();
                });
              }
            } else if (typeof msg.dropped === "number") {
              options.onDropped?.(msg.dropped);
            } else if (msg.error) {
              settle(() => reject(new HypervisorError(msg.error!.code, msg.error!.message)));
            } else {
              const exitCode = (msg.result as { exitCode?: unknown } | undefined)?.exitCode;
              settle(() =>
                typeof exitCode === "number"
                  ? resolve({ exitCode })
                  : reject(
                      new HypervisorError("vmm-error", "the VMM answered an exec without an exit status"),
                    ),
              );
            }
          },
          (problem) => settle(() => reject(new HypervisorError("vmm-error", problem))),
        );
        socket.on("data", (chunk: string) => decoder.push(chunk));
        socket.once("close", () =>
          settle(() =>
            reject(
              options.signal?.aborted
                ? new HypervisorError("exec-cancelled", "the command was cancelled")
                : gone(),
            ),
          ),
        );
        socket.write(
          encodeMessage({
            id: 1,
            method: "exec",
            params: { command, timeoutMs: options.timeoutMs, agentWaitMs: options.agentWaitMs },
          }),
        );
      });
    } finally {
      options.signal?.removeEventListener("abort", onAbort);
    }
  }

  openSession(options: VmmSessionOptions): Promise<VmmSession> {
    return openVmmSession(this.socketPath, this.vm.name, options);
  }

  /** True while the VMM process is still the one this handle was made for. */
  private running(): boolean {
    return isSameProcess(this.identity, specPathOf(this.paths));
  }

  kill(): void {
    signalVmm(this.identity, this.paths, "SIGKILL");
  }

  detach(): void {
    this.detached = true;
    this.socket.destroy();
  }
}
