// What the hypervisor asks of a VM's VMM (virtual machine monitor): the process that hosts one guest.
// The hypervisor sees only these interfaces; vmm-process.ts implements them with one child process per VM.

import type { Duplex } from "node:stream";
import type { VmPaths } from "./store.ts";
import type { VmRecord } from "./vm-record.ts";
import type {
  IncomingMigration,
  MigrationFigures,
  SuspendFigures,
  TerminalSize,
  VmmMigrateParams,
  VmmSnapshotParams,
} from "./vmm-protocol.ts";

/** Why a VMM is gone. */
export type VmmExit =
  /** The guest powered itself off (or obeyed a stop request). */
  | { readonly reason: "poweroff"; readonly detail: string }
  /** A stop request's timeout passed and the guest was forced off. */
  | { readonly reason: "forced"; readonly detail: string }
  /** The guest's whole state was written to the state directory, then the VMM exited. */
  | { readonly reason: "suspended"; readonly detail: string }
  /** The engine reported an internal error, or the process died without saying why (signal, crash). */
  | { readonly reason: "crashed"; readonly detail: string }
  /** A live migration handed the guest over: it runs in the target's VMM now (migrateOut). */
  | { readonly reason: "migrated"; readonly detail: string };

export interface VmmExecOptions {
  /**
   * Each chunk of the command's output as it arrives. A returned promise is back-pressure: no more
   * output is read from the VMM until it settles (meanwhile the VMM queues, then drops, the output).
   */
  readonly onOutput: (bytes: Uint8Array, stream: "stdout" | "stderr") => void | Promise<void>;
  /** Bytes of output the VMM dropped at this point because they were not read in time. */
  readonly onDropped?: (bytes: number) => void;
  /** Kill the command after this long (ms); none when absent. */
  readonly timeoutMs?: number;
  /** How long to wait for the agent of a guest still booting. */
  readonly agentWaitMs: number;
  /** Kills the command (the caller went away). */
  readonly signal?: AbortSignal;
}

export interface VmmSessionOptions {
  /** `sh -c command` in the guest; a login shell when null. */
  readonly command: string | null;
  /** A pseudo-terminal of this size; pipes when absent. */
  readonly tty?: TerminalSize;
  /**
   * Each chunk of output. A returned promise is back-pressure: the chunk counts as unread until it settles,
   * and the guest is held back once a window of output is unread (nothing is dropped).
   */
  readonly onOutput: (bytes: Uint8Array, stream: "stdout" | "stderr") => void | Promise<void>;
  /** How long to wait for the agent of a guest still booting. */
  readonly agentWaitMs: number;
}

/** An interactive session in the guest (a shell, a command with stdin): the guest agent's, relayed. */
export interface VmmSession {
  /** Sends stdin bytes; resolves once they are within the window of unacknowledged input. */
  write(bytes: Uint8Array): Promise<void>;
  /** No more stdin (after what was written). */
  end(): void;
  /** The terminal's new size (tty sessions). */
  resize(cols: number, rows: number): void;
  /** Signal `n` to the session's foreground process group. */
  signal(n: number): void;
  /** Ends the session at once (its processes are killed). */
  kill(): void;
  /** The exit status (0-255; 128+N when signal N ended it); rejects with a HypervisorError. */
  readonly exit: Promise<number>;
}

export interface VmmHandle {
  readonly pid: number;
  /** Settles once, when the VMM process is gone. Never rejects. */
  readonly exited: Promise<VmmExit>;
  /** Asks the guest to power off; forces it after `timeoutMs`. Resolves when the process has exited. */
  stop(timeoutMs: number): Promise<VmmExit>;
  /** A hard reset of the machine (the guest reboots; the VMM stays). */
  reset(): Promise<void>;
  /**
   * Pauses the guest and writes its whole state (memory, CPUs, devices) to the state directory, then the
   * VMM exits. Rejects, with the guest still running, when the state could not be written. Resolves with
   * the VMM's figures (how long the guest was paused; its RAM rounds written while it ran), or undefined
   * from a VMM that gave none.
   */
  suspend(): Promise<SuspendFigures | undefined>;
  /**
   * Live migration, the source side: sends the running guest to a target VMM waiting for it (launched
   * with `incoming`), RAM in rounds while it runs, then paused the rest; resolves once the guest runs
   * there, this VMM having exited ("migrated"). Rejects, with the guest running on here, when anything
   * failed (the target refused the stream or died). Absent on handles of VMMs that cannot.
   */
  migrateOut?(target: VmmMigrateParams): Promise<MigrationFigures>;
  /**
   * After a migrateOut rejected with code "migration-unconfirmed" (the whole guest went, the target's
   * answer did not come; the guest waits paused): `resume` once the VM is sure to be this host's still,
   * else the VMM exits "migrated" (the guest runs elsewhere). Resolves once done.
   */
  migrateSettle?(resume: boolean): Promise<void>;
  /** Whether this VMM's guest can be sent live (migrateOut): false from VMMs that cannot or do not say. */
  canMigrateLive?(): Promise<boolean>;
  /**
   * Saves the guest's memory into `stateDir` and freezes its disk into node `nodeId` of `disksDir` while
   * it is briefly paused; the guest runs on. Rejects, with nothing committed, when that failed.
   */
  snapshot(params: VmmSnapshotParams): Promise<{ pausedMs: number }>;
  /** Live figures from the engine (instructions retired, CPU time, …). */
  stats(): Promise<Record<string, number>>;
  /**
   * A new connection to the guest's serial console: output from now on arrives on it, what is written to
   * it is typed into the console. Several may be open at once.
   */
  attachConsole(): Promise<Duplex>;
  /**
   * Runs `sh -c command` in the guest through its agent; resolves with its exit status. Rejects with a
   * HypervisorError (e.g. `agent-not-connected`, `agent-unavailable`, `exec-timeout`).
   */
  exec(command: string, options: VmmExecOptions): Promise<{ exitCode: number }>;
  /**
   * Opens an interactive session through the guest agent on a connection of its own; resolves once the
   * guest runs it. Rejects with a HypervisorError (`agent-not-connected`, `agent-unsupported`, …).
   */
  openSession(options: VmmSessionOptions): Promise<VmmSession>;
  /** Ends the VMM at once (SIGKILL). */
  kill(): void;
  /**
   * Registers the receiver of what the VMM reports unasked, for the VM's events (e.g. it restarted the NAT
   * card's passt). Absent on handles of VMMs that report nothing.
   */
  onNotice?(callback: (message: string) => void): void;
  /** Registers the receiver of the guest agent's HELLOs (the guest booted: VmmResponse.agentHello). */
  onAgentHello?(callback: () => void): void;
  /** Lets go of the VMM without stopping it (daemon shutdown); a later daemon re-attaches. */
  detach(): void;
}

export type LaunchMode = "boot" | "restore";

export interface LaunchOptions {
  /**
   * A live migration's target (mode "restore"): the VMM waits for the guest's stream instead of reading
   * the state directory; `onListening` gets its port once it listens (give it to the source), and the
   * launch resolves once the guest runs from the stream.
   */
  readonly incoming?: Omit<IncomingMigration, "host" | "gated"> & {
    readonly host?: string;
    readonly onListening: (port: number) => void;
    /**
     * Gates the guest (IncomingMigration.gated): called once the whole stream is verified, before the guest
     * runs; the guest runs when it resolves, and the launch fails when it rejects.
     */
    readonly onReceived?: () => Promise<void>;
  };
}

export interface VmmLauncher {
  /** The engines this launcher can run (VmRecord.engine values). */
  engines(): readonly string[];
  /**
   * Starts a VMM for `vm` and resolves once its guest runs: booted fresh, or restored from the state
   * directory. Rejects with a HypervisorError saying what went wrong (the state files are left untouched).
   */
  launch(vm: VmRecord, paths: VmPaths, mode: LaunchMode, options?: LaunchOptions): Promise<VmmHandle>;
  /**
   * Re-attaches to the VMM recorded in the VM's directory, when it still runs. Otherwise resolves
   * `{ exit }`: how it ended (from the VMM's exit record, or "crashed" when it left none).
   */
  reattach(vm: VmRecord, paths: VmPaths): Promise<VmmHandle | { readonly exit: VmmExit }>;
}
