// The engine adapter a VMM hosts for engine "riscv": a RiscvEngine booting the VM's image (OpenSBI, kernel,
// initrd) with the VM's own disk, its serial console handed to the VMM (which writes console.log), the guest agent
// (docs/guest-agent.md) on virtio-console port org.tsvm.agent.0 for graceful power-off, exec and sessions.

import { randomBytes } from "node:crypto";
import { readdir, readFile, rm } from "node:fs/promises";
import { join } from "node:path";
import { performance } from "node:perf_hooks";
import type { ExitReason } from "../engines/engine.ts";
import {
  GUEST_AGENT_PORT_NAME,
  GuestAgentClient,
  GuestAgentError,
} from "../engines/riscv/guest-agent-client.ts";
import { RiscvEngine, type RiscvEngineOptions, VIRT_MIN_MEMORY } from "../engines/riscv/riscv-engine.ts";
import { openActiveDisk } from "./disk-store.ts";
import {
  identityBootArgs,
  parseRestoredIdentityOutput,
  RESEED_BYTES,
  restoredIdentityCommand,
} from "./guest-identity.ts";
import {
  type MigrationSink,
  MigrationStreamWriter,
  MigrationUnconfirmedError,
  TargetRefusal,
} from "./migration-stream.ts";
import { readSnapshot, type SnapshotLike, writeRamPages, writeSnapshot } from "./snapshot-file.ts";
import { adoptedAt } from "./spare-adoption.ts";
import { bootFilesOf } from "./vm-boot-files.ts";
import type { LaunchMode } from "./vmm.ts";
import type { GuestHost } from "./vmm-network.ts";
import type { IncomingGuest, SaveStateOptions, VmmGuest, VmmSpec } from "./vmm-protocol.ts";

/** The machine's disk port, as the engine takes it (the hypervisor does not import the machine itself). */
type BlockBackend = NonNullable<RiscvEngineOptions["disks"]>[number];
type Completion = Parameters<BlockBackend["flush"]>[0];
type DiskBackend = Awaited<ReturnType<typeof openActiveDisk>>;

/**
 * A live migration's disk until its stream brought it (createGuest): its size for the machine's devices,
 * nothing to read or write (the guest does not run before start() replaced it).
 */
function diskToCome(path: string, sizeBytes: number): DiskBackend {
  const refuse = (done: Completion) => done("the migrated disk has not arrived yet");
  return {
    path,
    sizeBytes,
    readOnly: false,
    read: (_offset, _dst, done) => refuse(done),
    write: (_offset, _src, done) => refuse(done),
    flush: (done) => done(null),
    discard: (_offset, _length, done) => refuse(done),
    writeZeroes: (_offset, _length, _unmap, done) => refuse(done),
    close: async () => {},
  };
}

const ARCH = "riscv64";

/**
 * The kernel command line of a VM booted from an image (the serial console is where console.log reads),
 * before the VM's identity (guest-identity.ts: identityBootArgs).
 */
export const BOOTARGS = "console=ttyS0 earlycon=sbi";

/** The agent's virtio-console port: port 0 is the console itself, the named ports follow in order. */
const AGENT_PORT = 1;
/** How long a power-off request may take to be refused (agent busy, gone) before it counts as asked. */
const POWER_OFF_REFUSAL_MS = 1000;
/** After a restore the agent runs on but says nothing: ping it for this long so a stop can ask it. */
const RESTORE_AGENT_WAIT_MS = 60_000;
/** How long the identity command after a restore may run (a few forks, on an emulated and loaded guest). */
const RESTORE_IDENTITY_TIMEOUT_MS = 60_000;
/** The most of that command's output kept for vmm.log. */
const RESTORE_IDENTITY_OUTPUT_BYTES = 4096;

type GuestExit = { reason: "poweroff" | "crashed"; detail: string };

/**
 * How a restore gets guest RAM (TSVM_RESTORE_RAM in the VMM's environment): "map" (default) maps the saved
 * RAM from its file copy-on-write and runs the guest on it, so pages are read when the guest first touches
 * them and the resume does not wait for all of RAM; "read" is the way before mapping existed, kept so
 * bench/resume.ts can measure both: read every byte, check its SHA-256, copy it into the machine's RAM.
 */
function restoreRamMode(): "map" | "read" {
  return process.env.TSVM_RESTORE_RAM === "read" ? "read" : "map";
}

/**
 * Whether a multi-vCPU guest runs its harts after the first on worker threads of their own, in parallel
 * (TSVM_HART_THREADS=1 in the VMM's environment; RiscvEngine's hartThreads). Opt-in while it is new: by
 * default every hart takes turns on the VMM's main thread.
 */
function hartThreads(): boolean {
  return process.env.TSVM_HART_THREADS === "1";
}

/** Reads the VM's saved state (everything checked but, when mapped, RAM's checksum: snapshot-file.ts). */
function readState(spec: VmmSpec, mode: "map" | "read"): Promise<SnapshotLike> {
  return readSnapshot(spec.stateDir, { arch: ARCH, largeSections: mode });
}

function guestExitOf(reason: ExitReason): GuestExit | undefined {
  switch (reason.kind) {
    case "poweroff":
      return { reason: "poweroff", detail: `the guest powered off (code ${reason.code})` };
    case "htif-exit":
      return { reason: "poweroff", detail: `the guest exited through HTIF (code ${reason.code})` };
    case "reset":
      return { reason: "poweroff", detail: "the guest asked for a reset and the engine ended the run" };
    case "error":
      return { reason: "crashed", detail: `engine error: ${reason.message}` };
    case "stopped":
      return undefined; // we stopped it: the VMM already knows why
  }
}

/**
 * What each network card itself dropped (the VMM counts what passes its backend, vmm-network.ts): frames
 * for the guest it had no buffer for or that were malformed, and malformed frames the guest sent.
 */
function nicDeviceStats(engine: RiscvEngine): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [i, nic] of engine.board.nics.entries()) {
    out[`nic${i}RxDropped`] = nic.stats.rxDropped;
    out[`nic${i}TxInvalid`] = nic.stats.txDropped;
  }
  return out;
}

/**
 * What a spare VMM (spare-vmm.ts) does before it has a VM, so that no VM's start waits for it: a scratch
 * machine is built and dropped, which runs the interpreter's warm-up (the first hart of a process does,
 * hart.ts: ~170 ms that keep V8 from recompiling the run loop while the guest runs) and compiles the
 * board's construction.
 */
export async function prepareGuest(): Promise<void> {
  new RiscvEngine({
    config: {
      harts: 1,
      memoryBytes: VIRT_MIN_MEMORY,
      firmware: null,
      kernel: null,
      initrd: null,
      bootargs: "",
    },
    console: { write: () => {} },
    disks: [],
    virtioConsole: {
      sink: { write: () => {} },
      ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: () => {} } }],
    },
  });
}

export async function createGuest(
  spec: VmmSpec,
  host?: GuestHost,
  incoming?: IncomingGuest,
): Promise<VmmGuest> {
  // An imported VM boots from the copies that came with it, any other from its image.
  const image = await bootFilesOf(spec.vmDir, spec.image);
  // A restore reads its state before the machine is built: with RAM mapped, it is built on the state's RAM.
  // A live migration's machine is built on the RAM its stream fills, before the stream ends (start waits).
  const ramMode = restoreRamMode();
  const [firmware, kernel, initrd, restoring] = await Promise.all([
    readFile(image.firmware),
    readFile(image.kernel),
    readFile(image.initrd),
    spec.mode === "restore" && !incoming ? readState(spec, ramMode) : undefined,
  ]);
  let saved = restoring;
  // The active disk with its chain (qcow2 over its nodes, or an older VM's raw disk.img); replaced by
  // reopenDisk when a snapshot freezes it. A live migration's disk arrives at the end of its stream: the
  // machine is built on a stand-in of its size meanwhile, which start() replaces before the guest runs.
  let disk: DiskBackend =
    incoming?.diskBytes === undefined
      ? await openActiveDisk(spec.diskPath)
      : diskToCome(spec.diskPath, incoming.diskBytes);
  const io = { readBytes: 0, writeBytes: 0 };
  /** Writes (and discards) handed to the file but not completed: a flush must wait for them to be worth
   *  anything. */
  let writesInFlight = 0;
  let writesDrained: Array<() => void> = [];
  const tracked = (done: Completion): Completion => {
    writesInFlight++;
    return (error) => {
      if (--writesInFlight === 0) {
        const waiting = writesDrained;
        writesDrained = [];
        for (const w of waiting) w();
      }
      done(error);
    };
  };
  // Counts what the guest moves through its disk, for `top`, and the writes in flight. Discard and
  // write-zeroes move no bytes; they are passed on as the file has them (it does), so the guest is offered
  // them.
  const countedDisk: BlockBackend = {
    get sizeBytes() {
      return disk.sizeBytes;
    },
    get readOnly() {
      return disk.readOnly;
    },
    read(offset, dst, done) {
      io.readBytes += dst.length;
      disk.read(offset, dst, done);
    },
    write(offset, src, done) {
      io.writeBytes += src.length;
      disk.write(offset, src, tracked(done));
    },
    flush(done) {
      disk.flush(done);
    },
    discard(offset, length, done) {
      disk.discard(offset, length, tracked(done));
    },
    writeZeroes(offset, length, unmap, done) {
      disk.writeZeroes(offset, length, unmap, tracked(done));
    },
  };
  let output: ((bytes: Uint8Array) => void) | undefined;
  let engine: RiscvEngine;
  let agent: GuestAgentClient | undefined;
  let agentWasConnected = false;
  let agentHello: (() => void) | undefined;
  // vmm.log says when the agent shows itself: the moment a graceful stop or an exec becomes possible.
  const agentInput = (bytes: Uint8Array) => {
    agent?.receive(bytes);
    const connected = agent?.connected ?? false;
    if (connected && !agentWasConnected)
      process.stderr.write(`${new Date().toISOString()} guest agent connected\n`);
    agentWasConnected = connected;
  };
  try {
    const options: RiscvEngineOptions = {
      config: {
        harts: spec.cpus,
        memoryBytes: spec.memoryMiB * 1048576,
        firmware: { name: image.firmware, bytes: firmware },
        kernel: { name: image.kernel, bytes: kernel },
        initrd: initrd.length > 0 ? { name: image.initrd, bytes: initrd } : null,
        bootargs: `${BOOTARGS} ${identityBootArgs(spec.identity)}`,
      },
      // The board reuses its buffer: copy what the viewers' sockets keep. The VMM writes console.log.
      console: {
        write: (bytes) => {
          output?.(Buffer.from(bytes));
        },
      },
      disks: [countedDisk],
      virtioConsole: {
        // Port 0 (hvc0) has no reader on the host; the kernel uses the serial console.
        sink: { write: () => {} },
        ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: (bytes) => agentInput(bytes) } }],
      },
      ram: incoming?.ram ?? (saved && ramMode === "map" ? RiscvEngine.ramOf(saved) : undefined),
      hartThreads: hartThreads(),
      // The VM's network cards (eth0 first), their backends made by the VMM (vmm-network.ts).
      nics: host?.nics ?? [],
    };
    engine = new RiscvEngine(options);
  } catch (e) {
    await disk.close();
    throw e;
  }
  const running = engine;
  agent = new GuestAgentClient(
    (bytes) => {
      const taken = running.sendVirtioConsole(AGENT_PORT, bytes);
      // The device queues up to 1 MiB for a port; a guest that reads none of it is not serving its agent.
      if (taken !== bytes.length)
        throw new GuestAgentError("AGENT_BUSY", "the guest is not reading its agent's virtio-console port");
    },
    {
      onProtocolError: (m) => process.stderr.write(`guest agent protocol error: ${m}\n`),
      onHello: () => agentHello?.(),
    },
  );
  const agentClient = agent;
  /** The exec in flight, so that a stop can cancel it: the agent runs one command at a time. */
  let execAbort: AbortController | undefined;
  const log = (line: string) => process.stderr.write(`${new Date().toISOString()} ${line}\n`);
  /**
   * After a restore from memory the guest is whoever was saved, with the saved kernel's random state: the
   * first time its agent answers, it gets this VM's identity and fresh randomness (docs/guest-agent.md),
   * before any other command runs. Its failure is logged; the VM runs on.
   */
  let identityDue = false;
  /** When the restored guest began to run (performance.now()), for how long it ran with the saved identity. */
  let resumedAt = 0;
  let identityRun: Promise<void> | undefined;
  const applyRestoredIdentity = async (): Promise<void> => {
    const seed = randomBytes(RESEED_BYTES);
    let stdout = "";
    let stderr = "";
    // Cancelled like a user's exec by a stop: a guest powering off needs no new identity.
    const abort = new AbortController();
    execAbort = abort;
    const keep = (text: string, bytes: Uint8Array) =>
      text.length < RESTORE_IDENTITY_OUTPUT_BYTES ? text + Buffer.from(bytes).toString("latin1") : text;
    try {
      const macs = (spec.nics ?? []).map((nic) => nic.mac);
      const { exitCode } = await agentClient.exec(restoredIdentityCommand(spec.identity, seed, macs), {
        timeoutMs: RESTORE_IDENTITY_TIMEOUT_MS,
        signal: abort.signal,
        onOutput: (bytes, stream) => {
          if (stream === "stdout") stdout = keep(stdout, bytes);
          else stderr = keep(stderr, bytes);
        },
      });
      const { reseedStatus, identityStatus, networkStatuses } = parseRestoredIdentityOutput(
        stdout,
        macs.length,
      );
      const said = stderr
        .replace(/[^\x20-\x7e]+/g, " ")
        .trim()
        .slice(0, 400);
      const outcome = (what: string, status: number | null) =>
        status === 0
          ? null
          : `${what} failed (${status === null ? `no status; exit ${exitCode}` : `exit ${status}`})`;
      const failures = [
        outcome("reseeding the kernel's random number generator", reseedStatus),
        outcome("setting the hostname and machine id", identityStatus),
        ...networkStatuses.map((status, i) =>
          outcome(`setting eth${i}'s MAC ${macs[i]} and restarting its DHCP client`, status),
        ),
      ].filter((f) => f !== null);
      if (failures.length === 0)
        log(
          `after the restore: hostname ${spec.identity.hostname}, machine id ${spec.identity.machineId}, ${macs.length > 0 ? `MACs ${macs.join(", ")} with DHCP restarted, ` : ""}kernel random number generator reseeded (${Math.round(performance.now() - resumedAt)} ms after the guest resumed)`,
        );
      else log(`after the restore: ${failures.join("; ")}${said ? `: ${said}` : ""}; the VM runs on`);
    } catch (e) {
      log(
        `after the restore: giving the guest its identity and fresh randomness failed: ${(e as Error).message}; the VM runs on`,
      );
    } finally {
      if (execAbort === abort) execAbort = undefined;
    }
  };
  /** Runs applyRestoredIdentity once, when due; every caller waits for that one run. */
  const restoredIdentity = (): Promise<void> => {
    if (!identityDue) return Promise.resolve();
    identityRun ??= applyRestoredIdentity().finally(() => {
      identityDue = false;
    });
    return identityRun;
  };
  let onExit: ((exit: GuestExit) => void) | undefined;
  let closed = false;

  /** RAM written in rounds while the guest ran, for the next suspend (prewriteRam). */
  let prewritten: { readonly path: string; readonly ram: Uint8Array } | undefined;

  /** Whether anything wrote guest RAM since dirty-page tracking started (the harts are paused: a device). */
  const sharedRamChanged = (): boolean => engine.takeDirtyPages().length > 0;

  const flushDisks = async (): Promise<void> => {
    if (writesInFlight > 0) await new Promise<void>((resolve) => writesDrained.push(resolve));
    await new Promise<void>((resolve, reject) =>
      disk.flush((error) => (error === null ? resolve() : reject(new Error(error)))),
    );
  };

  return {
    async start(mode: LaunchMode) {
      if (mode === "restore") {
        if (!engine.capabilities.snapshot)
          throw new Error("the riscv engine cannot restore a saved state yet");
        // Everything is checked (sizes, checksums, format) before the engine sees any of it.
        const state = saved ?? (await (incoming?.state ?? readState(spec, ramMode)));
        if (incoming?.diskBytes !== undefined) {
          // The stream put the disk in place before its state resolved.
          disk = await openActiveDisk(spec.diskPath);
          if (disk.sizeBytes !== incoming.diskBytes)
            throw new Error(
              `the migrated disk holds ${disk.sizeBytes} bytes, not the ${incoming.diskBytes} the guest was built for`,
            );
        }
        const restoring = performance.now();
        await engine.restoreState(state);
        if (incoming) {
          const restored = performance.now();
          // A gated migration's guest runs only once its host owns the VM (asked for meanwhile).
          await incoming.mayRun?.();
          log(
            `the migrated guest: disk opened and state restored in ${(restored - restoring).toFixed(0)} ms, then waited ${(performance.now() - restored).toFixed(0)} ms for its host's word`,
          );
        }
        // Held no longer than needed: with RAM read (not mapped), this is a second copy of it.
        saved = undefined;
        // vmm.log says when the guest ran again, in wall-clock ms, for bench/resume.ts.
        // The VMM's CPU time until then too: what the wait would be on an idle host, however busy this one.
        void engine.firstTurn.then((at) => {
          const epochMs = performance.timeOrigin + at;
          const cpu = process.cpuUsage();
          const cpuMs = (cpu.user + cpu.system) / 1000;
          // A spare's CPU before it was given this VM (spare-vmm.ts) was spent before the resume was asked.
          const adopted = adoptedAt();
          const since = adopted
            ? `, ${(at - adopted.atMs).toFixed(1)} ms and cpu ${(cpuMs - adopted.cpuMs).toFixed(0)} ms after it was adopted as a spare`
            : "";
          process.stderr.write(
            `${new Date(epochMs).toISOString()} first guest instruction after restore (RAM ${ramMode}): epoch ${epochMs.toFixed(1)} ms, ${at.toFixed(1)} ms after the VMM started, cpu ${cpuMs.toFixed(0)} ms${since}\n`,
          );
        });
      }
      void engine.exited.then((reason) => {
        agentClient.close("the guest stopped");
        const exit = guestExitOf(reason);
        if (exit && !closed) onExit?.(exit);
      });
      await engine.start();
      // A booting guest's agent says HELLO; a restored one is already up and only answers pings.
      if (mode === "restore") {
        identityDue = true;
        resumedAt = performance.now();
        void agentClient
          .waitForAgent(RESTORE_AGENT_WAIT_MS)
          .then(restoredIdentity, () =>
            log(
              `after the restore no guest agent answered within ${RESTORE_AGENT_WAIT_MS / 1000} s: the guest keeps the saved hostname, machine id and random state until it does`,
            ),
          );
      }
    },
    async requestPowerOff() {
      if (!agentClient.connected) return false;
      execAbort?.abort();
      // `poweroff` usually ends the guest before its EXIT can arrive: what matters is that it was sent.
      // A refusal comes at once (busy, not connected, closed); then the VMM forces the guest off.
      const asked = agentClient.exec("poweroff").then(
        () => true,
        (e: Error) => e instanceof GuestAgentError && e.code === "AGENT_CLOSED",
      );
      return Promise.race([
        asked,
        new Promise<boolean>((resolve) => setTimeout(resolve, POWER_OFF_REFUSAL_MS, true).unref()),
      ]);
    },
    async exec(command, options) {
      if (!agentClient.connected) await agentClient.waitForAgent(options.agentWaitMs);
      await restoredIdentity();
      const abort = new AbortController();
      const onCancel = () => abort.abort();
      options.signal.addEventListener("abort", onCancel);
      if (options.signal.aborted) abort.abort();
      execAbort = abort;
      try {
        return await agentClient.exec(command, {
          onOutput: options.onOutput,
          timeoutMs: options.timeoutMs,
          signal: abort.signal,
        });
      } finally {
        options.signal.removeEventListener("abort", onCancel);
        if (execAbort === abort) execAbort = undefined;
      }
    },
    async openSession(command, options) {
      if (!agentClient.connected) {
        try {
          await agentClient.waitForAgent(options.agentWaitMs);
        } catch (e) {
          if (e instanceof GuestAgentError && e.code === "AGENT_NOT_CONNECTED")
            throw new GuestAgentError(
              "AGENT_NOT_CONNECTED",
              "the guest agent is not connected yet (the VM is still booting?)",
            );
          throw e;
        }
      }
      await restoredIdentity();
      return agentClient.open(command, { tty: options.tty, onOutput: options.onOutput });
    },
    async pause() {
      if (engine.state === "running") await engine.pause();
    },
    async resume() {
      if (engine.state === "paused") await engine.resume();
    },
    async reset() {
      await engine.reset();
    },
    async prewriteRam(path: string) {
      if (!engine.capabilities.dirtyPageTracking || engine.state !== "running") return undefined;
      const started = performance.now();
      const ram = engine.board.ram.u8;
      const bytes = Buffer.from(ram.buffer, ram.byteOffset, ram.byteLength);
      engine.startDirtyPageTracking();
      try {
        // Round 0: every non-zero page; then the pages written meanwhile, until they are few.
        let written = await writeRamPages(path, bytes, null);
        let rounds = 1;
        while (rounds < PREWRITE_MAX_ROUNDS) {
          const pages = engine.takeDirtyPages();
          written += await writeRamPages(path, bytes, pages);
          rounds++;
          if (pages.length <= PREWRITE_FEW_PAGES) break;
        }
        prewritten = { path, ram };
        return { rounds, bytes: written, runningMs: performance.now() - started };
      } catch (e) {
        engine.stopDirtyPageTracking();
        await rm(path, { force: true });
        throw e;
      }
    },
    canMigrateLive: () => engine.capabilities.dirtyPageTracking,
    async migrateOut(
      sink: MigrationSink,
      ticket: string,
      confirmed: () => Promise<void>,
      options: { readonly disk?: boolean } = {},
    ) {
      if (!engine.capabilities.dirtyPageTracking || engine.state !== "running")
        throw new Error("a live migration needs a running guest whose engine tracks dirty pages");
      const started = performance.now();
      const ram = engine.board.ram.u8;
      const out = new MigrationStreamWriter(sink);
      let pausedAt = 0;
      let paused = false;
      let streamEnded = false;
      let rounds = 0;
      engine.startDirtyPageTracking();
      try {
        await out.hello({ engine: spec.engine, memoryBytes: ram.byteLength, ticket });
        // Round 0: every non-zero page (the target's RAM starts zeroed); then the pages written meanwhile.
        let dirty: Uint32Array | null = null;
        for (;;) {
          await out.pages(ram, dirty);
          rounds++;
          if (rounds > 1 && dirty!.length <= PREWRITE_FEW_PAGES) break;
          if (rounds === PREWRITE_MAX_ROUNDS) break;
          dirty = engine.takeDirtyPages();
        }
        pausedAt = performance.now();
        await engine.pause();
        paused = true;
        // The target's disk must hold every write the state expects.
        await flushDisks();
        // Its active layer too, when the target has none of its own (another host's storage).
        if (options.disk) await out.disk(disk.path);
        // A device may write RAM while the guest is paused (a disk read completing): its pages then go
        // again, with a state saved after them (the target keeps the last STATE).
        let last = engine.takeDirtyPages();
        for (let tries = 0; ; tries++) {
          await out.pages(ram, last);
          await out.state(await engine.saveState({ shareRam: true }), ram);
          last = engine.takeDirtyPages();
          if (last.length === 0) break;
          if (tries === 3) throw new Error("devices kept writing guest RAM while it was paused");
        }
        await out.end();
        streamEnded = true;
        await confirmed();
      } catch (e) {
        engine.stopDirtyPageTracking();
        // Once the whole stream went, the target may run the guest already (its answer lost): only the
        // launcher, who knows who owns the VM now, may let it run here again.
        if (streamEnded && !(e instanceof TargetRefusal))
          throw new MigrationUnconfirmedError((e as Error).message);
        if (paused) await engine.resume();
        throw e;
      }
      engine.stopDirtyPageTracking();
      const ended = performance.now();
      return { rounds, bytes: out.bytes, runningMs: pausedAt - started, pausedMs: ended - pausedAt };
    },
    async saveState(dir: string, options: SaveStateOptions = {}) {
      if (!engine.capabilities.snapshot)
        throw new Error("the riscv engine cannot save a VM's state yet (no snapshot capability)");
      const pausedAt = performance.now();
      const shareRam = options.keepRunning !== true && engine.capabilities.dirtyPageTracking;
      // RAM rounds written while the guest ran (prewriteRam) serve a suspend only, and only once.
      const pre = shareRam ? prewritten : undefined;
      prewritten = undefined;
      const wasRunning = engine.state === "running";
      if (wasRunning) await engine.pause();
      let snapshot: SnapshotLike;
      let lastDirty: Uint32Array | undefined;
      try {
        // The state must not be newer than its disk: every write the guest made so far is durable first.
        await flushDisks();
        // A copy of everything, RAM too (in memory), so the guest can run on while it is written. A guest
        // that stays paused until it is written (a suspend) lends its live RAM instead, sparing a copy of
        // all RAM (1-2 s of a 256 MiB guest's suspend on a loaded host); sharedRamChanged says below whether that
        // RAM stayed as saved.
        // Tracking from here on also tells whether a device wrote RAM while it was being written (below).
        if (pre) lastDirty = engine.takeDirtyPages();
        else if (shareRam) engine.startDirtyPageTracking();
        snapshot = await engine.saveState({ shareRam });
        await options.whilePaused?.();
      } catch (e) {
        if (shareRam) engine.stopDirtyPageTracking();
        if (pre) await rm(pre.path, { force: true });
        if (wasRunning) await engine.resume();
        throw e;
      }
      const resumeNow = wasRunning && options.keepRunning === true;
      if (resumeNow) await engine.resume();
      let pausedMs = performance.now() - pausedAt;
      try {
        await writeSnapshot(
          dir,
          snapshot,
          { arch: ARCH, writer: "tsvm" },
          pre && lastDirty ? { path: pre.path, array: pre.ram, dirty: lastDirty } : undefined,
        );
        if (shareRam && sharedRamChanged()) {
          // A device wrote RAM while it was being written (a disk read or console input completing while
          // the guest is paused): the file may hold part of it while the devices' saved state does not.
          // The machine, still paused, is saved again whole, with a copy of RAM this time.
          await emptyDirectory(dir);
          await writeSnapshot(dir, await engine.saveState(), { arch: ARCH, writer: "tsvm" });
        }
      } catch (e) {
        if (shareRam) engine.stopDirtyPageTracking();
        if (pre) await rm(pre.path, { force: true });
        // The state could not be written: the guest runs on, as if nothing had been asked.
        if (wasRunning && !resumeNow) await engine.resume();
        throw e;
      }
      if (shareRam) engine.stopDirtyPageTracking();
      // A guest left paused was paused until its state was written.
      if (!resumeNow) pausedMs = performance.now() - pausedAt;
      return { pausedMs };
    },
    async reopenDisk(path: string, between: () => Promise<void>) {
      await flushDisks();
      const previous = disk.path;
      await disk.close();
      try {
        await between();
      } catch (e) {
        disk = await openActiveDisk(previous);
        throw e;
      }
      disk = await openActiveDisk(path);
    },
    flushDisks,
    async close() {
      closed = true;
      agentClient.close("the VM stopped");
      if (engine.state !== "exited") await engine.stop();
      // Every exit leaves the disk durable, whatever the guest last asked for.
      try {
        await flushDisks();
      } finally {
        await disk.close();
      }
    },
    onExit(callback) {
      onExit = callback;
    },
    consoleInput(bytes: Uint8Array) {
      engine.sendConsole(bytes);
    },
    onConsoleOutput(callback) {
      output = callback;
    },
    onAgentHello(callback) {
      agentHello = callback;
    },
    stats() {
      const s = engine.stats();
      return {
        instret: s.instret.reduce((a, b) => a + b, 0),
        instructionsPerSecond: s.instructionsPerSecond,
        busyMs: s.busyMs,
        uptimeMs: s.uptimeMs,
        resets: s.resets,
        diskReadBytes: io.readBytes,
        diskWriteBytes: io.writeBytes,
        ...nicDeviceStats(engine),
      };
    },
  };
}

/** Most rounds of RAM a suspend writes while its guest runs, before it pauses the guest for the rest. */
const PREWRITE_MAX_ROUNDS = 4;
/** A round with at most this many dirty pages (1 MiB) is the last one while the guest runs. */
const PREWRITE_FEW_PAGES = 256;

/** Removes every file in `dir` (a state directory being written again). */
async function emptyDirectory(dir: string): Promise<void> {
  for (const name of await readdir(dir)) await rm(join(dir, name), { recursive: true, force: true });
}
