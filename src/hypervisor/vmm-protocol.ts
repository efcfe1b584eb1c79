// The protocol between the daemon and a VMM process: the files a VMM leaves in its VM's directory (spec,
// pid + socket, exit record) and the newline-delimited JSON messages on its control socket.
//
//   daemon → vmm   {"id":1,"method":"hello"|"stop"|"reset"|"suspend"|"snapshot"|"stats"|"exec"|"migrateOut"|
//                  "migrateSettle"|"capabilities", "params":{…}}
//   vmm → daemon   {"id":1,"result":{…}}  or  {"id":1,"error":{"code":"…","message":"…"}}
//   vmm → daemon   {"id":0,"notice":"…"} unasked, on each connection that said hello: an event to record
//                  {"id":0,"agentHello":true} unasked, likewise: the guest agent (re)started (a guest boot)
//   exec only:     {"id":1,"output":{"stream":"stdout"|"stderr","data":"<base64>"}} for each chunk of the
//                  command's output, before its {"id":1,"result":{"exitCode":N}}; closing the connection
//                  kills the command (the daemon runs each exec on a connection of its own). When the
//                  daemon reads too slowly (its client does), output past EXEC_OUTPUT_QUEUE_BYTES is
//                  dropped and {"id":1,"dropped":N} says how many bytes, where they were.
//   session only:  an interactive session with the guest agent (version 2), on a connection of its own:
//                  {"id":1,"method":"session","params":{"command":"…" (absent: a login shell),
//                  "tty":{"cols":C,"rows":R} (absent: pipes), "agentWaitMs":N}}. The VMM answers
//                  {"id":1,"opened":true} once the agent runs it (or an error). Then, both ways, lines of that id:
//     daemon → vmm {"id":1,"input":"<base64>"}   stdin bytes (≤ SESSION_CHUNK_BYTES, as output chunks); the daemon keeps
//                                                at most SESSION_INPUT_WINDOW_BYTES of them unacknowledged
//                  {"id":1,"eof":true}           no more stdin (after the input before it)
//                  {"id":1,"resize":{"cols":C,"rows":R}}   the terminal's new size (tty sessions)
//                  {"id":1,"signal":N}           signal N to the session's foreground process group
//                  {"id":1,"ack":N}              the daemon's client took N more bytes of output
//     vmm → daemon {"id":1,"output":{"stream":"stdout"|"stderr","data":"<base64>"}}
//                                                the VMM sends no more once SESSION_OUTPUT_WINDOW_BYTES are
//                                                unacknowledged, and meanwhile does not acknowledge the guest
//                                                agent's output either: a slow client slows the guest, and
//                                                no byte is dropped anywhere
//                  {"id":1,"inputAck":N}         N more stdin bytes were handed to the guest
//                  {"id":1,"result":{"exitCode":N}} or {"id":1,"error":{…}}: the end; nothing follows.
//                  Closing the connection kills the session (SIGKILL to its processes in the guest).
//
// Exit detection does not depend on being the VMM's parent (a restarted daemon is not): the control
// socket closes when the VMM dies, and the VMM writes exit.json before it exits on purpose; a VMM gone
// without an exit record crashed.

import type { SnapshotLike } from "./snapshot-file.ts";
import type { GuestIdentity } from "./guest-identity.ts";
import type { MigrationSink } from "./migration-stream.ts";
import type { NicSpec } from "./network-interfaces.ts";
import type { GuestHost } from "./vmm-network.ts";
import type { LaunchMode, VmmExit, VmmSession } from "./vmm.ts";

export const VMM_PROTOCOL_VERSION = 1;
/** A control message is small; a longer line is a protocol error, not something to buffer. */
export const MAX_MESSAGE_BYTES = 64 * 1024;

/** What a VMM runs, written by the daemon to vmm-spec.json before it spawns the VMM. */
export interface VmmSpec {
  readonly protocol: number;
  readonly mode: LaunchMode;
  readonly vmId: string;
  readonly name: string;
  readonly engine: string;
  /** Module exporting `createGuest(spec): Promise<VmmGuest>` for this engine (set by the composition root). */
  readonly engineModule: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly image: string;
  readonly cpuCapPercent: number | null;
  readonly cpuWeight: number;
  /** Who the guest is (guest-identity.ts): at boot on its kernel command line, after a restore through its agent. */
  readonly identity: GuestIdentity;
  readonly vmDir: string;
  readonly diskPath: string;
  readonly stateDir: string;
  readonly consoleLog: string;
  /** Where the VMM listens (mode 0600): `vmm.sock` in the VM's directory (control-socket.ts). */
  readonly socketPath: string;
  /**
   * The VM's network cards in order (eth0 first) and what each connects to: passt, which the VMM starts
   * and supervises (its socket in the VM's directory), or a private network's switch. Absent in specs
   * written before network cards: none.
   */
  readonly nics?: readonly NicSpec[];
  /**
   * A live migration's target (migration-stream.ts): instead of booting or reading `stateDir`, the VMM
   * listens on `host` (a free TCP port, told to its launcher as {type:"incoming", port}) for one stream
   * carrying `ticket`, and runs the guest from it in memory; it is ready once the guest runs, and fails its
   * start (nothing kept) when the stream is bad or none came within `waitMs`.
   */
  readonly incoming?: IncomingMigration;
  /**
   * In a cluster, the fence deadline (vmm-watchdog.ts): the VMM ends itself when no heartbeat told it of a
   * lease renewal for this long. Absent: no VMM-side fence (a single host).
   */
  readonly fenceAfterMs?: number;
}

/** Where and for what a live migration's target VMM waits (VmmSpec.incoming). */
export interface IncomingMigration {
  readonly host: string;
  readonly ticket: string;
  readonly waitMs: number;
  /**
   * The stream carries the guest's active disk (another host's storage): its virtual size, which the
   * machine is built with until the file arrives (and which the file must have). Absent: the disk is in
   * place already (the same storage).
   */
  readonly diskBytes?: number;
  /**
   * Once the whole stream is verified, tell the launcher ({type:"received"}) and run the guest only when it
   * answers {type:"incoming-run"} (it took the VM over); {type:"incoming-abort"} or its going away fails
   * the start. A daemon's move gates its VMM so that the VM never runs on two hosts.
   */
  readonly gated?: boolean;
}

/** "migrateOut": the target VMM to send the running guest to (VmmSpec.incoming on the target). */
export interface VmmMigrateParams {
  readonly host: string;
  readonly port: number;
  readonly ticket: string;
  /** Send the guest's active disk file in the stream, after the pause (the target has other storage). */
  readonly disk?: boolean;
}

/**
 * vmm.json: written by the VMM once it holds its disks and listens, before its guest runs; how a daemon
 * finds and re-attaches to it. `bootId` and `startTime` (ProcessIdentity) tell the VMM from a process that
 * reused its pid; records of VMMs older than them have neither.
 */
export interface VmmRunRecord {
  readonly protocol: number;
  readonly vmId: string;
  readonly pid: number;
  readonly socketPath: string;
  readonly startedAt: string;
  readonly bootId?: string;
  readonly startTime?: string;
}

/** exit.json: written by the VMM just before it exits on purpose. */
export type VmmExitRecord = VmmExit & { readonly vmId: string; readonly at: string };

/**
 * "attachConsole" turns its connection into a raw byte stream once answered: the guest's serial console
 * output goes to every attached connection, and what a connection sends is typed into the console.
 */
export type VmmMethod =
  | "hello"
  | "stop"
  | "reset"
  | "suspend"
  | "snapshot"
  | "stats"
  | "attachConsole"
  | "exec"
  | "session"
  | "migrateOut"
  // After a migrateOut answered "migration-unconfirmed": {"resume": true} runs the guest on here, else the
  // VMM exits "migrated".
  | "migrateSettle"
  // {"liveMigration": boolean}: whether the guest can be sent live (migrateOut).
  | "capabilities"
  // {"id":0,"method":"heartbeat","params":{"leaseAgeMs":N}}: not answered (vmm-watchdog.ts).
  | "heartbeat";

/**
 * "snapshot": the guest's memory is saved into `stateDir` (created by the VMM) while its disk is frozen into
 * node `nodeId` of `disksDir` (disk-store.ts), and the guest runs on; answered `{ pausedMs }` once written.
 */
export interface VmmSnapshotParams {
  readonly stateDir: string;
  readonly nodeId: string;
  readonly disksDir: string;
}

export interface VmmRequest {
  readonly id: number;
  readonly method: VmmMethod;
  /**
   * stop: timeoutMs; exec: command, timeoutMs (optional) and agentWaitMs; session: command (absent: a login
   * shell), tty and agentWaitMs; snapshot: VmmSnapshotParams; migrateOut: VmmMigrateParams.
   */
  readonly params?: {
    readonly timeoutMs?: number;
    readonly command?: string;
    readonly tty?: TerminalSize;
    readonly agentWaitMs?: number;
    readonly stateDir?: string;
    readonly nodeId?: string;
    readonly disksDir?: string;
    readonly host?: string;
    readonly port?: number;
    readonly ticket?: string;
    readonly disk?: boolean;
    readonly resume?: boolean;
    readonly leaseAgeMs?: number;
  };
}

export interface VmmResponse {
  readonly id: number;
  readonly result?: unknown;
  readonly error?: { readonly code: string; readonly message: string };
  /** exec: a chunk of the command's output (base64), before the result. */
  readonly output?: { readonly stream: GuestOutputStream; readonly data: string };
  /** exec: this many bytes of the command's output were dropped here (the reader was too slow). */
  readonly dropped?: number;
  /**
   * Not an answer (id 0): something the daemon should record as an event of the VM (e.g. passt was
   * restarted). Sent on every connection that said hello.
   */
  readonly notice?: string;
  /**
   * Not an answer (id 0): the guest's agent said HELLO, so the guest booted (also a reboot of its own,
   * which changes no status). Sent on every connection that said hello.
   */
  readonly agentHello?: true;
  /** session: the guest agent runs the session; input may follow. */
  readonly opened?: true;
  /** session: this many more stdin bytes were handed to the guest. */
  readonly inputAck?: number;
}

/** What the daemon sends on a session's connection after the VMM answered `opened`. */
export interface VmmSessionInput {
  readonly id: number;
  readonly input?: string;
  readonly eof?: true;
  readonly resize?: TerminalSize;
  readonly signal?: number;
  readonly ack?: number;
}

/** A terminal's size in character cells. */
export interface TerminalSize {
  readonly cols: number;
  readonly rows: number;
}

/** Largest chunk of stdin or output in one `input` or `output` line (its base64 stays under MAX_MESSAGE_BYTES). */
export const SESSION_CHUNK_BYTES = 32 * 1024;
/** Stdin the daemon may have sent a session that the VMM has not yet acknowledged. */
export const SESSION_INPUT_WINDOW_BYTES = 64 * 1024;
/** Output the VMM may have sent the daemon for one session that the daemon has not acknowledged. */
export const SESSION_OUTPUT_WINDOW_BYTES = 256 * 1024;
/** Largest terminal (cells per side) a session may ask for; the kernel's winsize fields are 16-bit. */
export const MAX_TERMINAL_CELLS = 65535;

/**
 * What the VMM queues for one console viewer before it drops that viewer's output (and later says how
 * much in its byte stream): the guest is never held up for a slow viewer.
 */
export const CONSOLE_VIEWER_QUEUE_BYTES = 1024 * 1024;
/** What the VMM queues of one exec's output for the daemon before it drops output (with a `dropped` line). */
export const EXEC_OUTPUT_QUEUE_BYTES = 1024 * 1024;

/** Longest command an exec takes (UTF-8 bytes), as the guest agent does. */
export const MAX_EXEC_COMMAND_BYTES = 16384;
/** Longest wait for a booting guest's agent that an exec may ask for. */
export const MAX_AGENT_WAIT_MS = 600_000;
/** Longest run an exec may ask for (a day); none at all when not asked. */
export const MAX_EXEC_TIMEOUT_MS = 86_400_000;

export interface HelloResult {
  readonly protocol: number;
  readonly vmId: string;
  readonly pid: number;
  readonly startedAt: string;
}

export type GuestOutputStream = "stdout" | "stderr";

export interface GuestExecOptions {
  /** Each chunk of the command's output as it arrives. */
  readonly onOutput: (bytes: Uint8Array, stream: GuestOutputStream) => void;
  /** Kill the command after this long (ms); none when absent. */
  readonly timeoutMs?: number;
  /** How long to wait for the guest's agent to answer when it has not yet (a guest still booting). */
  readonly agentWaitMs: number;
  /** Kills the command (the caller went away). */
  readonly signal: AbortSignal;
}

/**
 * What a VMM hosts: one guest, behind an engine. An engine adapter (for the RiscvEngine, later the KVM
 * engine) implements it; `createGuest` in the engine module builds one from the spec.
 */
export interface VmmGuest {
  /** Boots the guest fresh, or restores it from `spec.stateDir`; rejects with a message a user can read. */
  start(mode: LaunchMode): Promise<void>;
  /**
   * Asks the guest to power off (it may take its time or ignore the request). Resolves false when this
   * engine has no way to ask; the VMM then forces the guest off at once.
   */
  requestPowerOff(): Promise<boolean>;
  /** Hard reset: the machine reboots. */
  reset(): Promise<void>;
  /** Parks every vCPU (the CPU cap's off-time); the guest notices nothing but time passing. */
  pause(): Promise<void>;
  /** Runs the vCPUs again after pause(). */
  resume(): Promise<void>;
  /**
   * Writes the guest's whole state into `dir` (an empty directory); resolves when it is written. It pauses
   * the guest, waits for its disk writes in flight and makes them durable, copies the state (RAM too, in
   * memory), runs `whilePaused` (e.g. switching the guest's disk to a new overlay), resumes the guest when
   * `keepRunning`, and only then writes the files: a snapshot of a running VM pauses it for the copy, not
   * for the write. Without `keepRunning` the guest stays paused (suspend). When anything fails the guest
   * runs on as it was, and the error is thrown. `pausedMs`: how long the guest was paused (without
   * `keepRunning`: until the state was written).
   */
  saveState(dir: string, options?: SaveStateOptions): Promise<{ pausedMs: number }>;
  /**
   * A suspend's first part, while the guest runs: writes its RAM to `path` (a new file) in rounds — all of
   * it, then the pages written meanwhile, until they are few — with dirty-page tracking on, so that the
   * next saveState without keepRunning writes only the pages dirtied since and takes the file over.
   * Resolves undefined when this engine cannot (no dirty-page tracking, or the guest is not running).
   */
  prewriteRam?(path: string): Promise<PrewriteFigures | undefined>;
  /**
   * Live migration's source side (migration-stream.ts): sends the guest's RAM to `sink` in rounds while it
   * runs (dirty-page tracking on), then pauses it, makes its disk writes durable and sends the last dirty
   * pages, its machine state and END; then waits for `confirmed` (the target runs the guest) and resolves
   * with the guest left paused. When anything fails (the sink, the target's answer) the guest runs on
   * here and the error is thrown — but once the whole stream went, a missing confirmation leaves the guest
   * paused and throws MigrationUnconfirmedError (the target may run it). With `disk`, the active disk
   * file goes too, after the pause. Rejects at once when this engine cannot track dirty pages.
   */
  /** Whether migrateOut can send this guest now (its engine tracks dirty pages); absent: it cannot. */
  canMigrateLive?(): boolean;
  migrateOut?(
    sink: MigrationSink,
    ticket: string,
    confirmed: () => Promise<void>,
    options?: { readonly disk?: boolean },
  ): Promise<MigrationFigures>;
  /**
   * Closes the guest's disk (its writes flushed), runs `between` (which may move the file: a snapshot's
   * freeze), then opens `path` (with its chain) in its place; the guest, paused, sees nothing. When
   * `between` fails the disk is opened again where it was.
   */
  reopenDisk?(path: string, between: () => Promise<void>): Promise<void>;
  /**
   * Waits for the guest's disk writes in flight and makes every write so far durable (fdatasync). The VMM
   * calls it before a suspend's state is committed and before it exits.
   */
  flushDisks(): Promise<void>;
  /** Ends the guest (after a poweroff or before exiting); releases host resources. */
  close(): Promise<void>;
  /** Registers the callback for a guest that stops by itself: power-off, or an engine error. */
  onExit(callback: (exit: { reason: "poweroff" | "crashed"; detail: string }) => void): void;
  stats(): Record<string, number>;
  /** Bytes typed into the guest's serial console. */
  consoleInput(bytes: Uint8Array): void;
  /** Registers the receiver of the guest's serial console output (besides console.log). */
  onConsoleOutput(callback: (bytes: Uint8Array) => void): void;
  /** Registers the receiver of each HELLO of the guest's agent (its boots); absent without an agent. */
  onAgentHello?(callback: () => void): void;
  /**
   * Runs `sh -c command` in the guest through its agent and resolves with its exit status. Absent when
   * the engine has no guest agent. Rejects with an error whose `code` says why (e.g. AGENT_NOT_CONNECTED).
   */
  exec?(command: string, options: GuestExecOptions): Promise<{ exitCode: number }>;
  /**
   * Opens an interactive session with the guest agent (version 2): `command` with `sh -c`, or a login
   * shell when null; in a pseudo-terminal of `tty`'s size, or on pipes. Absent when the engine has no guest
   * agent. Rejects with an error whose `code` says why (AGENT_NOT_CONNECTED, AGENT_UNSUPPORTED, …).
   */
  openSession?(command: string | null, options: GuestSessionOptions): Promise<VmmSession>;
}

/**
 * The answer to "suspend": how long the guest was paused (until its state was written), and the rounds of
 * RAM written before that while it ran (0 when the engine cannot).
 */
export interface SuspendFigures {
  readonly pausedMs: number;
  readonly rounds: number;
  readonly bytes: number;
  /** How long the guest ran on, during the rounds, after the suspend was asked for. */
  readonly runningMs: number;
}

/** What a suspend's rounds while the guest ran came to. */
export interface PrewriteFigures {
  readonly rounds: number;
  readonly bytes: number;
  /** How long the guest ran on while they were written. */
  readonly runningMs: number;
}

/** What a live migration's source side came to (VmmGuest.migrateOut). */
export interface MigrationFigures {
  /** Rounds of RAM sent while the guest ran. */
  readonly rounds: number;
  /** Bytes of the stream. */
  readonly bytes: number;
  /** How long the guest ran on while the rounds were sent. */
  readonly runningMs: number;
  /** From the pause to the target's confirmation: the guest-visible pause. */
  readonly pausedMs: number;
}

export interface GuestSessionOptions {
  /** A pseudo-terminal of this size; pipes when absent. */
  readonly tty?: TerminalSize;
  /** Each chunk of output; the guest is held back (the chunk unacknowledged) until a returned promise settles. */
  readonly onOutput: (bytes: Uint8Array, stream: GuestOutputStream) => void | Promise<void>;
  /** How long to wait for the guest's agent to answer when it has not yet (a guest still booting). */
  readonly agentWaitMs: number;
}

export interface SaveStateOptions {
  /** Resume the guest once its state is copied, before the files are written (a snapshot of a running VM). */
  readonly keepRunning?: boolean;
  /** Runs while the guest is paused, after its disk is flushed and its state copied. */
  readonly whilePaused?: () => Promise<void>;
}

/**
 * `host`: what the VMM made for the guest (its network cards' backends); absent for a VMM without any.
 * `incoming`: a live migration's guest (mode "restore"), restored instead of the state directory's.
 */
export type GuestFactory = (spec: VmmSpec, host?: GuestHost, incoming?: IncomingGuest) => Promise<VmmGuest>;

/**
 * A live migration's guest as its target VMM takes it in: the machine is built on `ram` while the stream
 * still fills it (receiveMigration), and its start waits for `state`, the stream's verified end, whose RAM
 * section is that same buffer: the guest runs as soon as the stream ended, without a copy.
 */
export interface IncomingGuest {
  readonly ram: ArrayBuffer;
  readonly state: Promise<SnapshotLike>;
  /** The stream brings the active disk (IncomingMigration.diskBytes): in place once `state` resolved. */
  readonly diskBytes?: number;
  /**
   * A gated migration (IncomingMigration.gated): the restored guest runs only once this resolves (its
   * launcher took the VM over); a rejection fails the start. Asked for as soon as the stream is verified,
   * so that the takeover and the restore overlap.
   */
  readonly mayRun?: () => Promise<void>;
}

/** Splits a byte stream into JSON lines; calls `onError` (once) for an oversized or unparsable line. */
export class LineDecoder {
  private buffer = "";
  constructor(
    private readonly onMessage: (msg: unknown) => void,
    private readonly onError: (problem: string) => void,
  ) {}

  push(chunk: string): void {
    this.buffer += chunk;
    for (;;) {
      const nl = this.buffer.indexOf("\n");
      if (nl < 0) break;
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      if (line.trim() === "") continue;
      let msg: unknown;
      try {
        msg = JSON.parse(line);
      } catch {
        this.onError("a control message is not valid JSON");
        return;
      }
      this.onMessage(msg);
    }
    if (this.buffer.length > MAX_MESSAGE_BYTES) {
      this.buffer = "";
      this.onError(`a control message is longer than ${MAX_MESSAGE_BYTES} bytes`);
    }
  }
}

export function encodeMessage(msg: VmmRequest | VmmResponse | VmmSessionInput): string {
  return `${JSON.stringify(msg)}\n`;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

export function parseRunRecord(text: string): VmmRunRecord | undefined {
  try {
    const r: unknown = JSON.parse(text);
    if (
      isObject(r) &&
      r.protocol === VMM_PROTOCOL_VERSION &&
      typeof r.vmId === "string" &&
      typeof r.pid === "number" &&
      Number.isInteger(r.pid) &&
      r.pid > 1 &&
      typeof r.socketPath === "string" &&
      typeof r.startedAt === "string" &&
      (r.bootId === undefined || typeof r.bootId === "string") &&
      (r.startTime === undefined || (typeof r.startTime === "string" && /^\d+$/.test(r.startTime)))
    )
      return r as unknown as VmmRunRecord;
  } catch {}
  return undefined;
}

const EXIT_REASONS = new Set(["poweroff", "forced", "suspended", "crashed", "migrated"]);

export function parseExitRecord(text: string): VmmExitRecord | undefined {
  try {
    const r: unknown = JSON.parse(text);
    if (
      isObject(r) &&
      typeof r.reason === "string" &&
      EXIT_REASONS.has(r.reason) &&
      typeof r.detail === "string" &&
      typeof r.vmId === "string" &&
      typeof r.at === "string"
    )
      return r as unknown as VmmExitRecord;
  } catch {}
  return undefined;
}
