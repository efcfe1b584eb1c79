// The daemon's spare VMM: one VMM process started ahead of need (node started, the bundle loaded, the
// engine warmed up: most of the ~0.6 s of CPU a VMM spends before its guest's first instruction), idle
// until a VM starts or resumes, which then adopts it instead of waiting for a fresh process
// (spare-vmm-protocol.ts). A spare is adopted by one VM at most and never returns; the next one is
// started after the launch that took it. It dies with the daemon (stop, crash: its IPC channel closes),
// and one started from other code than a VMM would now run is killed instead of adopted.

import { type ChildProcess, spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { rotateIfLarger } from "./bounded-log.ts";
import { type AdoptMessage, type SpareToDaemon, spareArguments } from "./spare-vmm-protocol.ts";

export interface SpareVmmOptions {
  /** Where a spare's output goes until it is adopted (from then on it writes its VM's vmm.log). */
  readonly logPath: string;
  /** The longest spec path a VM can have (its directory's vmm-spec.json): a spare's command line must hold it. */
  readonly maxSpecPathBytes: number;
  /**
   * What identifies the code a VMM started now runs (the bundle, or the TypeScript sources' stamp): a spare
   * started when it was different is killed, never adopted.
   */
  readonly codeStamp: () => string;
  /** Lines for the daemon's log. */
  readonly log?: (line: string) => void;
  /** How long an adoption may take (a spare still preparing finishes first) before a fresh VMM is spawned. */
  readonly adoptTimeoutMs?: number;
}

/** How a VMM process is started: node's arguments, the entry, and the engine module it hosts. */
export interface VmmCommand {
  readonly vmmEntry: string;
  readonly nodeArgs: readonly string[];
  readonly engineModule: string;
}

/**
 * A spare that took its VM: `listen` attaches the launcher's listener for its IPC messages ("listening",
 * "ready", "failed"), first handing it those that came before it was attached.
 */
export interface AdoptedVmm {
  readonly child: ChildProcess;
  listen(listener: (msg: unknown) => void): void;
}

const DEFAULT_ADOPT_TIMEOUT_MS = 30_000;
/** How long after a launch the next spare is started (see replenishSoon). */
const REPLENISH_DELAY_MS = 1000;

/** One spare process, from its start until it is adopted, killed or gone. */
class SpareProcess {
  ready = false;
  exited = false;
  readonly gone: Promise<void>;

  constructor(
    readonly child: ChildProcess,
    readonly command: VmmCommand,
    readonly stamp: string,
  ) {
    this.gone = new Promise((resolve) => child.once("exit", () => resolve()));
    child.once("exit", () => {
      this.exited = true;
    });
    child.on("message", (msg: SpareToDaemon) => {
      if (msg?.type === "spare-ready") this.ready = true;
    });
    // A spawn failure (ENOENT…) is followed by "exit" or leaves no process: either way it is not adopted.
    child.on("error", () => {});
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  kill(): void {
    if (!this.exited) this.child.kill("SIGKILL");
  }
}

export class SpareVmm {
  private spare: SpareProcess | undefined;
  private closed = false;
  private replenishTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly command: VmmCommand,
    private readonly options: SpareVmmOptions,
  ) {}

  private log(line: string): void {
    this.options.log?.(line);
  }

  /** Starts a spare when none is waiting (after a daemon start, and after each launch). */
  replenish(): void {
    if (this.closed || (this.spare && !this.spare.exited)) return;
    const stamp = this.options.codeStamp();
    const { vmmEntry, nodeArgs, engineModule } = this.command;
    const args = [...nodeArgs, vmmEntry];
    const spareArgs = spareArguments({ engineModule, codeStamp: stamp }, 0);
    // libuv lets process.title fill exactly the bytes the command line had (every argument and its NUL).
    const length = [process.execPath, ...args, ...spareArgs].reduce(
      (n, a) => n + Buffer.byteLength(a) + 1,
      0,
    );
    const pad = Math.max(0, this.options.maxSpecPathBytes + 1 - length);
    rotateIfLarger(this.options.logPath);
    const logFd = openSync(this.options.logPath, "a", 0o600);
    let child: ChildProcess;
    try {
      // Detached and with an IPC channel, exactly as vmm-process.ts spawns a VMM.
      child = spawn(process.execPath, [...args, ...spareArguments({ engineModule, codeStamp: stamp }, pad)], {
        detached: true,
        stdio: ["ignore", logFd, logFd, "ipc"],
      });
    } finally {
      closeSync(logFd);
    }
    // A spare keeps nothing waiting for it (a test's process, a daemon shutting down): close() ends it.
    child.unref();
    child.channel?.unref();
    const spare = new SpareProcess(child, this.command, stamp);
    this.spare = spare;
    const t0 = Date.now();
    child.on("message", (msg: SpareToDaemon) => {
      if (msg?.type === "spare-ready")
        this.log(`spare VMM (pid ${child.pid}) ready after ${Date.now() - t0} ms`);
    });
    child.once("exit", (code, signal) => {
      if (this.spare === spare) {
        this.spare = undefined;
        // Not started again here: a spare that cannot start would be started again without end. The next
        // launch starts one (replenish).
        if (!this.closed)
          this.log(
            `spare VMM (pid ${child.pid}) ended before a VM adopted it (${signal ? `signal ${signal}` : `exit code ${code}`}); see ${this.options.logPath}`,
          );
      }
    });
  }

  /**
   * replenish() once the launch that took the spare has had time to finish (its records written): a burst
   * of launches starts one spare, after the burst.
   */
  replenishSoon(): void {
    clearTimeout(this.replenishTimer);
    this.replenishTimer = setTimeout(() => this.replenish(), REPLENISH_DELAY_MS);
    this.replenishTimer.unref();
  }

  /** The pid of the spare now waiting (ready or still preparing), if any. */
  get pid(): number | undefined {
    return this.spare && !this.spare.exited ? this.spare.pid : undefined;
  }

  /** Resolves once the waiting spare is ready (true), or gone / none (false). */
  async whenReady(): Promise<boolean> {
    const spare = this.spare;
    if (!spare || spare.exited) return false;
    if (spare.ready) return true;
    // The spare's handles are unreferenced; a caller waiting here must keep its process alive meanwhile.
    const keepAlive = setInterval(() => {}, 60_000);
    return new Promise<boolean>((resolve) => {
      spare.child.on("message", (msg: SpareToDaemon) => {
        if (msg?.type === "spare-ready") resolve(true);
      });
      void spare.gone.then(() => resolve(false));
    }).finally(() => clearInterval(keepAlive));
  }

  /**
   * Gives the waiting spare the VM whose spec is at `specPath`, when the spare runs `command` and was
   * started from the code a VMM would run now. Resolves the adopted process, whose next message is the
   * VMM's "ready" or "failed" (vmm-main.ts); undefined when there was no spare to adopt (then nothing of
   * the VM was touched, and the caller spawns a VMM). A spare is handed out once: it is no longer the
   * waiting one from here on, whatever happens.
   */
  async adopt(command: VmmCommand, specPath: string, logPath: string): Promise<AdoptedVmm | undefined> {
    const spare = this.spare;
    if (!spare || spare.exited || this.closed) return undefined;
    if (
      spare.command.vmmEntry !== command.vmmEntry ||
      spare.command.engineModule !== command.engineModule ||
      spare.command.nodeArgs.join("\0") !== command.nodeArgs.join("\0")
    )
      return undefined;
    this.spare = undefined;
    const stamp = this.options.codeStamp();
    if (spare.stamp !== stamp) {
      this.log(
        `spare VMM (pid ${spare.pid}) killed: it was started from other code (${spare.stamp}, now ${stamp})`,
      );
      spare.kill();
      return undefined;
    }
    const child = spare.child;
    // Messages after "adopted" may come in the same read of the channel, before the caller listens: kept.
    const early: unknown[] = [];
    let adopted = false;
    let onMessage: (msg: SpareToDaemon) => void = () => {};
    const outcome = await new Promise<{ adopted: true } | { adopted: false; why: string }>((resolve) => {
      const done = (result: { adopted: true } | { adopted: false; why: string }) => {
        clearTimeout(timer);
        if (!result.adopted) child.off("message", onMessage);
        child.off("exit", onExit);
        resolve(result);
      };
      const timeoutMs = this.options.adoptTimeoutMs ?? DEFAULT_ADOPT_TIMEOUT_MS;
      const timer = setTimeout(
        () => done({ adopted: false, why: `no answer within ${timeoutMs} ms` }),
        timeoutMs,
      );
      onMessage = (msg: SpareToDaemon) => {
        if (adopted) early.push(msg);
        else if (msg?.type === "adopted") {
          adopted = true;
          done({ adopted: true });
        } else if (msg?.type === "refused")
          done({ adopted: false, why: `it refused: ${String(msg.message)}` });
      };
      const onExit = (code: number | null, signal: NodeJS.Signals | null) =>
        done({ adopted: false, why: `it ended (${signal ? `signal ${signal}` : `exit code ${code}`})` });
      child.on("message", onMessage);
      child.once("exit", onExit);
      const msg: AdoptMessage = { type: "adopt", specPath, logPath, engineModule: command.engineModule };
      try {
        child.send(msg, (e) => {
          if (e) done({ adopted: false, why: `the adoption could not be sent (${e.message})` });
        });
      } catch (e) {
        done({ adopted: false, why: `the adoption could not be sent (${(e as Error).message})` });
      }
    });
    if (outcome.adopted) {
      // Referenced again, as a spawned VMM is until its launch lets go of it.
      child.ref();
      child.channel?.ref();
      return {
        child,
        listen: (listener) => {
          child.off("message", onMessage);
          for (const msg of early.splice(0)) listener(msg);
          child.on("message", listener);
        },
      };
    }
    this.log(`spare VMM (pid ${spare.pid}) not adopted (${outcome.why}); starting a VMM instead`);
    spare.kill();
    return undefined;
  }

  /** Kills the waiting spare and starts no other (the daemon is stopping). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.replenishTimer);
    const spare = this.spare;
    this.spare = undefined;
    if (!spare || spare.exited) return;
    spare.kill();
    await Promise.race([spare.gone, new Promise((r) => setTimeout(r, 5000))]);
  }
}
