// The VMM process: hosts one guest (through its engine's `createGuest`) and serves the control protocol of
// vmm-protocol.ts on a Unix socket, so that the VM lives on when the daemon stops, crashes or restarts.
// Started by vmm-process.ts as `node vmm-main.ts <vmm-spec.json>`, detached, with an IPC channel used only
// to report that it listens, then that the guest runs (or why it could not start); or started ahead of need as a spare
// (`vmm-main.ts --spare …`, spare-vmm.ts) that is given its spec later and goes on from there the same way.

import { randomBytes } from "node:crypto";
import { fdatasync, readdirSync, writeFileSync } from "node:fs";
import { mkdir, readFile, rename, rm, stat, unlink } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import { setPriority } from "node:os";
import { performance } from "node:perf_hooks";
import { dirname, join } from "node:path";
import { StringDecoder } from "node:string_decoder";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";
import { describeHolder, FileLock } from "../engines/backends/file-lock.ts";
import { boundStderr } from "./bounded-log.ts";
import { BoundedWriter } from "./bounded-writer.ts";
import { ConsoleLogWriter } from "./console-log.ts";
import { listenPrivate } from "./control-socket.ts";
import { CpuThrottle } from "./cpu-throttle.ts";
import { crashPoint } from "./crash-point.ts";
import {
  answerSource,
  MigrationUnconfirmedError,
  receiveMigration,
  sendOverTcp,
} from "./migration-stream.ts";
import { readDiskInfo } from "../engines/backends/qcow2/index.ts";
import { ACTIVE_DISK, freezeActiveDisk, VM_DISK_BACKING } from "./disk-store.ts";
import { readProcessIdentity } from "./process-identity.ts";
import { adoptedAt, waitForAdoption } from "./spare-adoption.ts";
import { SPARE_FLAG } from "./spare-vmm-protocol.ts";
import { agentFailure, relaySession } from "./session-relay.ts";
import type { SnapshotLike } from "./snapshot-file.ts";
import { replaceFile, writeFileAtomic } from "./store.ts";
import type { VmmExit } from "./vmm.ts";
import { VmmNetwork } from "./vmm-network.ts";
import { VmmWatchdog } from "./vmm-watchdog.ts";
import {
  CONSOLE_VIEWER_QUEUE_BYTES,
  EXEC_OUTPUT_QUEUE_BYTES,
  encodeMessage,
  type GuestFactory,
  type HelloResult,
  type IncomingGuest,
  type IncomingMigration,
  LineDecoder,
  MAX_AGENT_WAIT_MS,
  MAX_EXEC_COMMAND_BYTES,
  MAX_EXEC_TIMEOUT_MS,
  type MigrationFigures,
  VMM_PROTOCOL_VERSION,
  type PrewriteFigures,
  type SuspendFigures,
  type VmmExitRecord,
  type VmmGuest,
  type VmmRequest,
  type VmmResponse,
  type VmmRunRecord,
  type VmmSessionInput,
  type VmmSnapshotParams,
  type VmmSpec,
} from "./vmm-protocol.ts";

// A spare (spare-vmm.ts) was started before its VM existed: it learns its spec when it is adopted.
const specPath =
  process.argv[2] === SPARE_FLAG ? await waitForAdoption(process.argv.slice(2)) : process.argv[2];
if (!specPath) {
  process.stderr.write("usage: vmm-main.ts <vmm-spec.json>\n");
  process.exit(2);
}
const spec = JSON.parse(await readFile(specPath, "utf8")) as VmmSpec;
const runRecordPath = join(spec.vmDir, "vmm.json");
const exitRecordPath = join(spec.vmDir, "exit.json");
const startedAt = new Date().toISOString();
/** performance.now() when this process became the VM's VMM: its start, or a spare's adoption. */
const vmmStartMs = adoptedAt()?.atMs ?? 0;
let guest: VmmGuest | undefined;
/** The guest's network cards' backends (passt for the NAT card); closed after the guest. */
let network: VmmNetwork | undefined;
let exiting = false;
/** Connections that said hello (the daemon's): each gets the notices (VmmResponse.notice). */
const noticeListeners = new Set<Socket>();

/** Tells the daemon (every connection that said hello) about an event of the VM. */
function notice(message: string): void {
  tellListeners({ id: 0, notice: message });
}

/** Sends an unasked message (id 0) on every connection that said hello. */
function tellListeners(message: VmmResponse): void {
  for (const socket of noticeListeners) if (!socket.destroyed) socket.write(encodeMessage(message));
}

// vmm.log (our stderr) is bounded: rotated, and what else writes to stderr (the engine, e.g. about a guest
// agent breaking its protocol: a guest can do that millions of times) is rate-limited (bounded-log.ts).
const vmmLog = boundStderr(join(spec.vmDir, "vmm.log"));

function log(message: string): void {
  const line = `${new Date().toISOString()} vmm[${process.pid}] ${spec.name}: ${message}\n`;
  if (vmmLog) vmmLog.write(line);
  else process.stderr.write(line);
}

// Fencing (vmm-watchdog.ts): in a cluster, a VMM whose daemon has told it of no lease renewal for the fence
// deadline ends at once, guest and all, without flushing anything (its storage may hang): another host may
// soon restart the VM from its disk. SIGKILL, so that nothing of ours runs after the decision.
const watchdog =
  spec.fenceAfterMs === undefined
    ? undefined
    : new VmmWatchdog(spec.fenceAfterMs, (reason) => {
        log(`fenced: ${reason}; the VMM kills itself`);
        process.kill(process.pid, "SIGKILL");
      });
watchdog?.start();

/** Exclusive locks on the VM's disks, held for the VMM's life: no second VMM may open them meanwhile. */
const diskLocks: FileLock[] = [];

/** The active disk: the spec's, until a snapshot freezes it and a new overlay takes its place. */
let diskPath = spec.diskPath;

/** Takes the exclusive lock of the VM's disk; refuses to start, naming the holder, when another VMM has it. */
function lockDisks(): void {
  let lock: FileLock | undefined;
  try {
    lock = FileLock.tryTake(diskPath, { write: true });
  } catch (e) {
    // A VM without a disk file (an engine that needs none) has nothing to guard.
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return;
    throw e;
  }
  if (!lock)
    throw new Error(
      `its disk ${diskPath} is in use by another VMM (${describeHolder(diskPath)}); two writers would corrupt it`,
    );
  diskLocks.push(lock);
}

/** Sends one message on the IPC channel (when there is one), resolving once it is flushed. */
function sendToLauncher(msg: {
  type: "listening" | "ready" | "failed" | "incoming" | "received";
  message?: string;
  port?: number;
}): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

// First of all, before any file of the VM is touched: no other VMM may have its disk. A VMM refused here
// leaves everything (console.log, vmm.json, the socket) to the one that holds it.
try {
  lockDisks();
} catch (e) {
  log(`could not start: ${(e as Error).message}`);
  await sendToLauncher({ type: "failed", message: (e as Error).message });
  process.exit(1);
}

// The VMM alone writes console.log (rotated, see console-log.ts): every byte the guest prints goes there
// and to the attached viewers.
const consoleLog = ConsoleLogWriter.open(spec.consoleLog, { onError: log });

/**
 * Makes every disk write so far durable: the guest's (which waits for its writes in flight), then an
 * fdatasync of each disk through its lock's descriptor, which covers whatever an engine did not flush.
 */
async function flushDisks(g: VmmGuest | undefined): Promise<void> {
  await g?.flushDisks();
  for (const lock of diskLocks) await promisify(fdatasync)(lock.fd);
}

/** Records why we exit, removes the run record, and ends the process. Runs once. */
async function exitVmm(exit: VmmExit, code = 0): Promise<never> {
  if (!exiting) {
    exiting = true;
    log(`exiting: ${exit.reason} (${exit.detail})`);
    const record: VmmExitRecord = { ...exit, vmId: spec.vmId, at: new Date().toISOString() };
    try {
      await guest?.flushDisks();
    } catch (e) {
      log(`flushing the guest's disks failed: ${(e as Error).message}`);
    }
    try {
      await guest?.close();
    } catch (e) {
      log(`closing the guest failed: ${(e as Error).message}`);
    }
    try {
      await network?.close();
    } catch (e) {
      log(`stopping the network failed: ${(e as Error).message}`);
    }
    try {
      await flushDisks(undefined);
    } catch (e) {
      log(`flushing the disks failed: ${(e as Error).message}`);
    }
    consoleLog.close();
    try {
      crashPoint("vmm:before-exit-record");
      await writeFileAtomic(exitRecordPath, `${JSON.stringify(record)}\n`);
      crashPoint("vmm:after-exit-record");
      await rm(runRecordPath, { force: true });
    } catch (e) {
      log(`could not record the exit: ${(e as Error).message}`);
    }
    await unlink(spec.socketPath).catch(() => {});
  }
  vmmLog?.close();
  process.exit(code);
}

process.on("uncaughtException", (e) => {
  log(`internal error: ${e.stack ?? e.message}`);
  void exitVmm({ reason: "crashed", detail: `internal error in the VMM: ${e.message}` }, 70);
});
process.on("SIGTERM", () => void exitVmm({ reason: "forced", detail: "the VMM received SIGTERM" }));
process.on("SIGINT", () => void exitVmm({ reason: "forced", detail: "the VMM received SIGINT" }));
// A VMM must survive the daemon: when the IPC channel to a dead daemon closes, nothing happens.
process.on("disconnect", () => {});

/**
 * The CPU weight as the process's nice value: the Linux scheduler gives each nice step about 1.25× the
 * share of the next (weight 100 = nice 0, as cgroup v2 cpu.weight's default). Without privileges a process
 * can only lower its priority, so weights above 100 stay at nice 0.
 */
function applyCpuWeight(weight: number): void {
  const nice = Math.min(19, Math.max(0, Math.round(Math.log(100 / weight) / Math.log(1.25))));
  if (nice === 0) return;
  try {
    // Linux keeps a nice value per thread, and Node's helper threads (GC, compiler, I/O) already run.
    for (const tid of readdirSync("/proc/self/task")) setPriority(Number(tid), nice);
  } catch (e) {
    log(`could not apply CPU weight ${weight} (nice ${nice}): ${(e as Error).message}`);
  }
  // With autogroup scheduling (kernel.sched_autogroup_enabled) the CPU is first shared between sessions,
  // and a VMM is spawned detached, in a session of its own: against other VMMs only its autogroup's nice
  // counts (measured: two pinned hogs split a core 50/50 at nice 0 and 6 until the autogroup's is set).
  try {
    writeFileSync("/proc/self/autogroup", String(nice));
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT")
      log(`could not set the autogroup's nice to ${nice}: ${(e as Error).message}`);
  }
}

let stopTimer: NodeJS.Timeout | undefined;
let throttle: CpuThrottle | undefined;
/**
 * Connections attached to the serial console; each gets all output from its attachment on, except what it
 * is too slow to take: the guest is not held up for a viewer, so past CONSOLE_VIEWER_QUEUE_BYTES queued
 * for one, its output is dropped and a notice in its byte stream later says how much.
 */
const consoleViewers = new Map<Socket, BoundedWriter>();
/** Writers of the exec connections open now (their queued bytes count in `stats`). */
const execWriters = new Set<BoundedWriter>();
/** Console bytes dropped for viewers already gone. */
let goneViewersDroppedBytes = 0;

function consoleDropNotice(dropped: number): string {
  return `\r\n[tsvm: ${dropped} bytes of console output dropped: this viewer read too slowly; \`tsvm logs ${spec.name}\` has them]\r\n`;
}

/** Bytes queued in this process for readers that have not taken them yet (bounded per reader). */
function queuedBytes(): number {
  let total = 0;
  for (const w of consoleViewers.values()) total += w.buffered;
  for (const w of execWriters) total += w.buffered;
  return total;
}

/** Console bytes dropped for slow viewers over the VMM's life. */
function consoleDroppedBytes(): number {
  let total = goneViewersDroppedBytes;
  for (const w of consoleViewers.values()) total += w.dropped;
  return total;
}

/**
 * Writes the guest's state to a fresh directory, then swaps it in place of the old state directory. Its RAM
 * is written first in rounds while the guest runs on (when the engine can), so that the guest is paused
 * only for the pages written after them, its devices and CPU. Resolves with what the suspend came to.
 */
async function suspendGuest(g: VmmGuest): Promise<SuspendFigures> {
  const temp = join(spec.vmDir, `.tmp-state-${randomBytes(6).toString("hex")}`);
  const ramFile = join(spec.vmDir, `.tmp-ram-${randomBytes(6).toString("hex")}`);
  // First, so that a daemon restarted meanwhile sees a state being written (awaitSuspendInFlight).
  await mkdir(temp);
  let pre: PrewriteFigures | undefined;
  try {
    pre = await g.prewriteRam?.(ramFile);
  } catch (e) {
    // Nothing lost: the state is then written the whole way, paused.
    log(`writing RAM while the guest runs failed (${(e as Error).message}); suspending without it`);
  }
  let pausedMs: number;
  try {
    crashPoint("vmm:before-state-write");
    ({ pausedMs } = await g.saveState(temp));
    log(
      `state written to ${temp} (the guest paused ${pausedMs.toFixed(0)} ms` +
        (pre ? `, after ${pre.rounds} rounds of RAM, ${pre.bytes} bytes, written while it ran)` : ")"),
    );
    crashPoint("vmm:after-state-write");
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  } finally {
    await rm(ramFile, { force: true });
  }
  // The state must never be newer than the disk it expects: the disk is durable before the state is in place.
  try {
    await flushDisks(g);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  const old = join(spec.vmDir, `.tmp-old-state-${randomBytes(6).toString("hex")}`);
  await rename(spec.stateDir, old).catch((e: NodeJS.ErrnoException) => {
    if (e.code !== "ENOENT") throw e;
  });
  await rename(temp, spec.stateDir);
  crashPoint("vmm:after-state-swap");
  await rm(old, { recursive: true, force: true });
  return {
    pausedMs: Math.round(pausedMs),
    rounds: pre?.rounds ?? 0,
    bytes: pre?.bytes ?? 0,
    runningMs: Math.round(pre?.runningMs ?? 0),
  };
}

/**
 * A snapshot of the running guest: its memory saved into `stateDir` while, paused, its disk is frozen into a
 * node (the active file renamed there, a new overlay in its place, disk-store.ts), the lock moved to the
 * new active disk and the guest's disk reopened; the guest runs on. The files are written after it resumes.
 */
async function snapshotGuest(g: VmmGuest, params: VmmSnapshotParams): Promise<{ pausedMs: number }> {
  await mkdir(params.stateDir);
  const next = join(spec.vmDir, ACTIVE_DISK);
  let frozen = false;
  const freeze = async () => {
    crashPoint("vmm:before-freeze");
    await freezeActiveDisk(spec.vmDir, params.disksDir, params.nodeId);
    frozen = true;
    crashPoint("vmm:after-freeze");
    // The lock follows the active disk (the old file is a node now, read-only for every VMM).
    const previous = diskLocks.splice(0);
    diskPath = next;
    try {
      lockDisks();
    } finally {
      for (const lock of previous) lock.release();
    }
  };
  const { pausedMs } = await g.saveState(params.stateDir, {
    keepRunning: true,
    whilePaused: async () => {
      // saveState drained and flushed the guest's writes; this makes the file durable as a whole.
      await flushDisks(undefined);
      try {
        if (g.reopenDisk) await g.reopenDisk(next, freeze);
        else await freeze();
      } catch (e) {
        // Not frozen (the active disk is where it was, and reopened): the guest runs on unchanged. Frozen
        // but not reopened: a guest without its disk must not run on; the next VMM boots from the new one.
        if (!frozen) throw e;
        const detail = `the disk frozen for a snapshot could not be reopened: ${(e as Error).message}`;
        log(detail);
        await exitVmm({ reason: "crashed", detail }, 70);
      }
    },
  });
  return { pausedMs: Math.round(pausedMs) };
}

// Live migration (migration-stream.ts; docs/cluster.md "Live migration"): the source VMM sends its running
// guest to a target VMM started with `spec.incoming`, which runs it from memory.

/**
 * migrateOut: the guest to the target VMM at `params` over TCP, RAM in rounds while it runs, then paused
 * the rest; resolves once it runs there (the guest here stays paused: the VMM then exits "migrated").
 */
async function migrateGuest(
  g: VmmGuest,
  params: { readonly host: string; readonly port: number; readonly ticket: string; readonly disk: boolean },
): Promise<MigrationFigures> {
  if (!g.migrateOut) throw new Error(`the ${spec.engine} engine cannot migrate a running guest`);
  const figures = await sendOverTcp(params, (sink, ticket, confirmed) =>
    g.migrateOut!(sink, ticket, confirmed, { disk: params.disk }),
  );
  log(
    `migrated to ${params.host}:${params.port}: ${figures.rounds} rounds of RAM while the guest ran ` +
      `(${figures.runningMs.toFixed(0)} ms), paused ${figures.pausedMs.toFixed(0)} ms, ${figures.bytes} bytes`,
  );
  return figures;
}

/** The connection a target VMM took its guest from (to answer the source on), and when the stream ended. */
let incomingSocket: Socket | undefined;
let receivedAt = 0;
/** A migrateOut whose target did not confirm: the guest waits paused for migrateSettle. */
let migrationUnsettled = false;
/**
 * A gated target asked its launcher to take the VM over: from then on it never tells the source "failed"
 * (the launcher may own the VM already); it only closes, and the source asks who owns the VM.
 */
let askedLauncher = false;

/**
 * A gated target (IncomingMigration.gated): tells the launcher that the whole guest arrived and waits for
 * its word. Resolves when it says run (it owns the VM now); rejects when it says not to, or is gone.
 */
function launcherSaysRun(): Promise<void> {
  return new Promise((resolve, reject) => {
    const done = (error?: Error) => {
      process.off("message", onMessage);
      process.off("disconnect", onGone);
      if (error) reject(error);
      else resolve();
    };
    const onMessage = (msg: unknown) => {
      const type = (msg as { type?: unknown } | null)?.type;
      if (type === "incoming-run") done();
      else if (type === "incoming-abort")
        done(
          new Error(`its host refused it: ${String((msg as { message?: unknown }).message).slice(0, 300)}`),
        );
    };
    const onGone = () => done(new Error("the daemon that launched this VMM is gone"));
    if (!process.send || !process.connected) return onGone();
    process.on("message", onMessage);
    process.once("disconnect", onGone);
    askedLauncher = true;
    void sendToLauncher({ type: "received" });
  });
}

/**
 * A target VMM's guest: listens on `incoming.host` (its port told to the launcher) for one connection,
 * whose stream must be whole and carry the ticket, and fills the guest's RAM from it meanwhile. Resolves
 * at once, with that RAM and the state the stream ends with; a bad stream, or none within
 * `incoming.waitMs`, rejects that state: the VMM's start then fails and nothing is kept.
 */
async function awaitIncoming(incoming: IncomingMigration): Promise<IncomingGuest> {
  const server: Server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, incoming.host, resolve);
  });
  const { port } = server.address() as { port: number };
  log(`waiting for a live migration on ${incoming.host}:${port}`);
  void sendToLauncher({ type: "incoming", port });
  const memoryBytes = spec.memoryMiB * 1048576;
  const ram = new ArrayBuffer(memoryBytes);
  /** A gated migration's word from the launcher, asked for once the stream is verified. */
  let launcherWord: Promise<void> | undefined;
  const state = new Promise<SnapshotLike>((resolve, reject) => {
    const timer = setTimeout(() => {
      server.close();
      reject(new Error(`no live migration came within ${incoming.waitMs} ms`));
    }, incoming.waitMs);
    server.once("connection", (socket) => {
      // One stream only: whatever comes first decides.
      server.close();
      clearTimeout(timer);
      incomingSocket = socket;
      socket.on("error", () => {});
      const disk =
        incoming.diskBytes === undefined
          ? undefined
          : { path: diskPath, maxBytes: maxDiskFileBytes(incoming.diskBytes) };
      receiveMigration(socket, { engine: spec.engine, memoryBytes, ticket: incoming.ticket }, ram, disk)
        .then(async (got) => {
          receivedAt = performance.now();
          log(
            `received the guest: ${got.bytes} bytes, ${got.ramBytes} of them RAM pages, ${got.diskBytes} its disk`,
          );
          if (disk) {
            await checkMigratedDisk(diskPath);
            lockDisks();
          }
          if (incoming.gated) {
            const word = launcherSaysRun().then(() =>
              log(`told to run it, ${(performance.now() - receivedAt).toFixed(0)} ms after its stream ended`),
            );
            // Awaited by the guest's start before it runs (IncomingGuest.mayRun).
            word.catch(() => {});
            launcherWord = word;
          }
          return got.snapshot;
        })
        .then(resolve, reject);
    });
  });
  // Awaited by the guest's start; a failure before that is its start's failure too.
  state.catch(() => {});
  return {
    ram,
    state,
    ...(incoming.diskBytes === undefined ? {} : { diskBytes: incoming.diskBytes }),
    ...(incoming.gated ? { mayRun: () => launcherWord ?? Promise.reject(new Error("no word yet")) } : {}),
  };
}

/**
 * The most a migrated disk file of `virtualBytes` may take: its data, qcow2's tables (an L2 entry and a
 * refcount per 64 KiB cluster) and the writer's preallocation, with room to spare.
 */
function maxDiskFileBytes(virtualBytes: number): number {
  return virtualBytes + Math.ceil(virtualBytes / 16) + (64 << 20);
}

/**
 * A migrated disk is the VM's top layer over its nodes, which its host already holds: backed by a node of
 * disks/ and nothing else (a forged stream cannot make the guest read a host file through a backing name).
 */
async function checkMigratedDisk(path: string): Promise<void> {
  const info = await readDiskInfo(path).catch((e: Error) => {
    throw new Error(`the migrated disk is not a usable disk: ${e.message}`);
  });
  if (info.format !== "qcow2") throw new Error(`the migrated disk is ${info.format}, not qcow2`);
  if (info.backing && !VM_DISK_BACKING.test(info.backing.name))
    throw new Error(
      `the migrated disk is backed by ${JSON.stringify(info.backing.name).slice(0, 100)}, not by a disk node`,
    );
}

/** exec: streams the command's output as `output` messages, then its exit status; a closed connection kills it. */
async function execCommand(
  g: VmmGuest,
  req: VmmRequest,
  socket: Socket,
  reply: (msg: Omit<VmmResponse, "id">) => void,
): Promise<void> {
  if (!g.exec) {
    reply({
      error: {
        code: "agent-unavailable",
        message: `the ${spec.engine} engine has no guest agent to run commands in the guest`,
      },
    });
    return;
  }
  const command = req.params?.command;
  if (
    typeof command !== "string" ||
    command.length === 0 ||
    Buffer.byteLength(command) > MAX_EXEC_COMMAND_BYTES
  ) {
    reply({
      error: {
        code: "invalid-argument",
        message: `the command must be text of 1 to ${MAX_EXEC_COMMAND_BYTES} bytes`,
      },
    });
    return;
  }
  const bound = (v: unknown, max: number): number | undefined =>
    typeof v === "number" && Number.isFinite(v) && v > 0 ? Math.min(v, max) : undefined;
  const abort = new AbortController();
  const onClose = () => abort.abort();
  socket.once("close", onClose);
  // The agent cannot be held up (the guest has no flow control on its port), so output the daemon is too
  // slow to take (its client is) is dropped past a bound, and a `dropped` line says how many bytes.
  const output = new BoundedWriter(socket, {
    limit: EXEC_OUTPUT_QUEUE_BYTES,
    notice: (dropped) => encodeMessage({ id: req.id, dropped }),
  });
  execWriters.add(output);
  try {
    const { exitCode } = await g.exec(command, {
      onOutput: (bytes, stream) =>
        output.write(
          encodeMessage({
            id: req.id,
            output: {
              stream,
              data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64"),
            },
          }),
          bytes.length,
        ),
      timeoutMs: bound(req.params?.timeoutMs, MAX_EXEC_TIMEOUT_MS),
      agentWaitMs: bound(req.params?.agentWaitMs, MAX_AGENT_WAIT_MS) ?? 0,
      signal: abort.signal,
    });
    output.flush();
    reply({ result: { exitCode } });
  } catch (e) {
    output.flush();
    reply({ error: agentFailure(e) });
  } finally {
    socket.off("close", onClose);
    execWriters.delete(output);
  }
}

async function handle(g: VmmGuest, req: VmmRequest, socket: Socket): Promise<void> {
  const reply = (msg: Omit<VmmResponse, "id">) => {
    if (!socket.destroyed) socket.write(encodeMessage({ id: req.id, ...msg }));
  };
  try {
    switch (req.method) {
      case "hello":
        reply({ result: helloResult() });
        return;
      case "stop": {
        const timeoutMs = Math.min(Math.max(Number(req.params?.timeoutMs) || 0, 0), 3_600_000);
        const asked = await g.requestPowerOff();
        if (!asked) {
          // Waiting would only delay the same forced stop.
          reply({ result: {} });
          await exitVmm({
            reason: "forced",
            detail: `the ${spec.engine} engine cannot ask its guest to power off`,
          });
          return;
        }
        clearTimeout(stopTimer);
        stopTimer = setTimeout(
          () =>
            void exitVmm({ reason: "forced", detail: `the guest did not power off within ${timeoutMs} ms` }),
          timeoutMs,
        );
        reply({ result: {} });
        return;
      }
      case "reset":
        await g.reset();
        reply({ result: {} });
        return;
      case "suspend": {
        // The throttle must not resume a guest that is being saved.
        throttle?.stop();
        await g.resume();
        let figures: SuspendFigures;
        try {
          figures = await suspendGuest(g);
        } catch (e) {
          // Nothing was committed: the guest runs on.
          await g.resume().catch(() => {});
          throttle?.start();
          throw e;
        }
        reply({ result: figures });
        await exitVmm({ reason: "suspended", detail: `state written to ${spec.stateDir}` });
        return;
      }
      case "migrateOut": {
        const p = req.params;
        if (
          typeof p?.host !== "string" ||
          !Number.isInteger(p.port) ||
          (p.port as number) < 1 ||
          (p.port as number) > 65535 ||
          typeof p.ticket !== "string"
        ) {
          reply({ error: { code: "bad-request", message: "migrateOut needs host, port and ticket" } });
          return;
        }
        // The throttle must not resume a guest being handed over.
        throttle?.stop();
        await g.resume();
        let figures: MigrationFigures;
        try {
          figures = await migrateGuest(g, {
            host: p.host,
            port: p.port as number,
            ticket: p.ticket,
            disk: p.disk === true,
          });
        } catch (e) {
          if (e instanceof MigrationUnconfirmedError) {
            // Held paused: the launcher settles it (migrateSettle) once it knows who owns the VM.
            migrationUnsettled = true;
            log(e.message);
            reply({ error: { code: e.code, message: e.message } });
            return;
          }
          // The target did not take it: the guest runs on here.
          await g.resume().catch(() => {});
          throttle?.start();
          throw e;
        }
        reply({ result: figures });
        await exitVmm({ reason: "migrated", detail: `the guest runs on at ${p.host}:${p.port} now` });
        return;
      }
      case "migrateSettle": {
        // After an unconfirmed migrateOut: `resume` when the VM is still this host's (its launcher made
        // sure the target can no longer take it over), else the guest runs elsewhere and this VMM ends.
        if (!migrationUnsettled) {
          reply({ error: { code: "bad-request", message: "no live migration waits to be settled" } });
          return;
        }
        migrationUnsettled = false;
        if (req.params?.resume === true) {
          await g.resume();
          throttle?.start();
          log("the migration did not happen: the guest runs on here");
          reply({ result: {} });
          return;
        }
        reply({ result: {} });
        await exitVmm({ reason: "migrated", detail: "the guest runs on another host now" });
        return;
      }
      case "capabilities":
        reply({
          result: { liveMigration: typeof g.migrateOut === "function" && g.canMigrateLive?.() === true },
        });
        return;
      case "snapshot": {
        const p = req.params;
        if (
          typeof p?.stateDir !== "string" ||
          typeof p.disksDir !== "string" ||
          typeof p.nodeId !== "string" ||
          !/^[a-z0-9-]{1,80}$/.test(p.nodeId)
        ) {
          reply({ error: { code: "bad-request", message: "snapshot needs stateDir, disksDir and nodeId" } });
          return;
        }
        // The throttle must not resume a guest that is being saved; the guest runs on afterwards.
        throttle?.stop();
        await g.resume();
        try {
          reply({
            result: await snapshotGuest(g, { stateDir: p.stateDir, disksDir: p.disksDir, nodeId: p.nodeId }),
          });
        } finally {
          await g.resume().catch(() => {});
          throttle?.start();
        }
        return;
      }
      case "attachConsole": {
        reply({ result: {} });
        // From here on the connection carries raw console bytes both ways.
        socket.removeAllListeners("data");
        const viewer = new BoundedWriter(socket, {
          limit: CONSOLE_VIEWER_QUEUE_BYTES,
          notice: consoleDropNotice,
        });
        consoleViewers.set(socket, viewer);
        socket.on("data", (chunk: Buffer) => g.consoleInput(chunk));
        socket.on("close", () => {
          consoleViewers.delete(socket);
          goneViewersDroppedBytes += viewer.dropped;
        });
        return;
      }
      case "exec":
        await execCommand(g, req, socket, reply);
        return;
      case "session":
        await relaySession(g, req, socket, (handler) => sessionInputs.set(socket, handler), spec.engine);
        return;
      case "stats": {
        // The VMM process's own figures beside the engine's: what `top` shows and a cap is measured by.
        const cpu = process.cpuUsage();
        reply({
          result: {
            ...g.stats(),
            ...network?.stats(),
            vmmCpuMs: (cpu.user + cpu.system) / 1000,
            vmmRssBytes: process.memoryUsage.rss(),
            vmmUptimeMs: Math.round(performance.now() - vmmStartMs),
            vmmQueuedBytes: queuedBytes(),
            consoleDroppedBytes: consoleDroppedBytes(),
          },
        });
        return;
      }
      default:
        reply({ error: { code: "bad-request", message: `unknown method '${String(req.method)}'` } });
    }
  } catch (e) {
    reply({ error: { code: "vmm-error", message: (e as Error).message } });
  }
}

/** The session served on a connection (method "session"): where that connection's later lines go. */
const sessionInputs = new WeakMap<Socket, (msg: VmmSessionInput) => void>();

/** Settles once the guest runs: control requests (but hello) wait for it; a failed start ends the VMM. */
let resolveStarted!: (g: VmmGuest) => void;
const started = new Promise<VmmGuest>((resolve) => {
  resolveStarted = resolve;
});

function helloResult(): HelloResult {
  return { protocol: VMM_PROTOCOL_VERSION, vmId: spec.vmId, pid: process.pid, startedAt };
}

try {
  // A launcher (daemon) that died before we could record ourselves may already have settled the VM as
  // not running; a guest started now would be an orphan writing behind its back.
  if (process.send && !process.connected) throw new Error("the daemon that launched this VMM is gone");

  await mkdir(dirname(spec.socketPath), { recursive: true });
  await unlink(spec.socketPath).catch(() => {});
  const server = createServer((socket) => {
    // No setEncoding: a connection may turn into a raw console stream (attachConsole).
    const text = new StringDecoder("utf8");
    const decoder = new LineDecoder(
      (msg) => {
        const req = msg as VmmRequest;
        const session = sessionInputs.get(socket);
        if (session) return session(msg as VmmSessionInput);
        if (req.method === "heartbeat") return watchdog?.heard(req.params?.leaseAgeMs);
        if (req.method === "hello") {
          noticeListeners.add(socket);
          socket.once("close", () => noticeListeners.delete(socket));
          if (!socket.destroyed) socket.write(encodeMessage({ id: req.id, result: helloResult() }));
          return;
        }
        void started.then((g) => handle(g, req, socket));
      },
      (problem) => {
        log(`dropping a control connection: ${problem}`);
        socket.destroy();
      },
    );
    socket.on("data", (chunk: Buffer) => decoder.push(text.write(chunk)));
    socket.on("error", () => {});
  });
  await listenPrivate(server, spec.socketPath);

  // Recorded before the guest runs (and may write its disk), so that a daemon restarted meanwhile finds,
  // and re-attaches to, this VMM instead of starting a second one (the disk lock would refuse it anyway).
  const self = readProcessIdentity(process.pid);
  const run: VmmRunRecord = {
    protocol: VMM_PROTOCOL_VERSION,
    vmId: spec.vmId,
    pid: process.pid,
    socketPath: spec.socketPath,
    startedAt,
    ...(self ? { bootId: self.bootId, startTime: self.startTime } : {}),
  };
  crashPoint("vmm:before-run-record");
  // Not fsynced: it names this process, which a host crash ends (replaceFile).
  await replaceFile(runRecordPath, `${JSON.stringify(run)}\n`);
  crashPoint("vmm:after-run-record");
  // The launcher may connect now (hello is answered at once), while the guest is built.
  void sendToLauncher({ type: "listening" });

  const mod = (await import(pathToFileURL(spec.engineModule).href)) as { createGuest?: GuestFactory };
  if (typeof mod.createGuest !== "function")
    throw new Error(`the engine module ${spec.engineModule} has no createGuest function`);
  // The cards' backends first: passt missing or failing is a start failure in one line, before the guest runs.
  if (spec.nics && spec.nics.length > 0)
    network = await VmmNetwork.open(spec.nics, spec.vmDir, { log, notice });
  // A live migration's target builds its guest from the stream, in memory, instead of a state file.
  const incoming = spec.incoming ? await awaitIncoming(spec.incoming) : undefined;
  guest = await mod.createGuest(spec, network ? { nics: network.nics } : undefined, incoming);
  const g = guest;
  g.onConsoleOutput((bytes) => {
    consoleLog.write(bytes);
    for (const viewer of consoleViewers.values()) viewer.write(bytes);
  });
  g.onExit((exit) => {
    void exitVmm(exit, exit.reason === "crashed" ? 70 : 0);
  });
  // The daemon rewrites what it keeps in the guest (its private networks' hosts block) after each boot.
  g.onAgentHello?.(() => tellListeners({ id: 0, agentHello: true }));

  await g.start(spec.mode);
  // The source lets go of its guest once told that it runs here.
  if (incomingSocket) {
    void answerSource(incomingSocket);
    log(`the migrated guest runs, ${(performance.now() - receivedAt).toFixed(0)} ms after its stream ended`);
  }
  if (spec.cpuCapPercent !== null) {
    throttle = new CpuThrottle(g, spec.cpuCapPercent);
    throttle.start();
  }
  applyCpuWeight(spec.cpuWeight);
  resolveStarted(g);
  log(`guest running (${spec.mode})`);
  // A VM whose directory is gone was deleted behind our back (or its test cleaned up): nothing may outlive it.
  setInterval(() => {
    stat(spec.vmDir).catch((e: NodeJS.ErrnoException) => {
      if (e.code === "ENOENT") void exitVmm({ reason: "forced", detail: "the VM's directory was removed" });
    });
  }, 5000).unref();
  await sendToLauncher({ type: "ready" });
  process.disconnect?.();
} catch (e) {
  const message = (e as Error).message;
  log(`could not start: ${message}`);
  // Told before this process ends, so that the source knows why (it runs its guest on either way).
  if (incomingSocket && askedLauncher) incomingSocket.destroy();
  else if (incomingSocket)
    await Promise.race([answerSource(incomingSocket, e as Error), new Promise((r) => setTimeout(r, 1000))]);
  await guest?.flushDisks().catch(() => {});
  await guest?.close().catch(() => {});
  await network?.close().catch(() => {});
  await flushDisks(undefined).catch(() => {});
  consoleLog.close();
  await rm(runRecordPath, { force: true }).catch(() => {});
  await unlink(spec.socketPath).catch(() => {});
  await sendToLauncher({ type: "failed", message });
  process.exit(1);
}
