// Debian's passt (user-mode networking: NAT to the host's network, DHCP, port forwards) run as a child
// process on a Unix socket that a StreamFrameSocket connects to; restarted when it dies.

import { type ChildProcess, spawn } from "node:child_process";
import { accessSync, chmodSync, chownSync, constants, mkdirSync, rmSync } from "node:fs";
import { stat } from "node:fs/promises";
import { basename, dirname } from "node:path";

export const PASST_PATH = "/usr/bin/passt";
/**
 * The MTU passt is told to use (its own default): the largest IPv4 packet that, with the stream protocol's
 * 4-byte length and an Ethernet header, fits 64 KiB. The NAT card gets the same MTU, which Linux takes from
 * it (VIRTIO_NET_F_MTU): 64 KiB frames carry a bulk transfer in a 43rd of the frames 1500 bytes would, and
 * the emulated guest's cost is mostly per frame (docs/performance.md).
 */
export const PASST_MTU = 65520;
/** The account passt changes to when started as root (it refuses to keep root). */
const NOBODY_UID = 65534;
const NOBODY_GID = 65534;
/** How long passt may take to create its socket. */
const START_TIMEOUT_MS = 10_000;
/** The last bytes of passt's output kept for error messages. */
const LOG_TAIL_BYTES = 4096;
const RESTART_FIRST_MS = 200;
const RESTART_MAX_MS = 10_000;
/** A run longer than this resets the restart delay. */
const STABLE_MS = 30_000;

export class PasstMissingError extends Error {
  readonly code = "passt-missing";
  constructor(path = PASST_PATH) {
    super(
      `passt is not installed (${path} is missing): install Debian's passt package (apt-get install passt)`,
    );
  }
}

export class PasstStartError extends Error {
  readonly code = "passt-failed";
}

/** One forward from the host into the guest. */
export interface PasstForward {
  readonly protocol: "tcp" | "udp";
  /** The host address passt listens on (default 127.0.0.1). */
  readonly hostAddress?: string;
  readonly hostPort: number;
  readonly guestPort: number;
}

export interface PasstOptions {
  /** The socket passt listens on. Its directory should hold nothing else: when this process is root,
   *  passt runs as nobody and the directory is handed to nobody (mode 0700) so it can create the socket. */
  readonly socketPath: string;
  readonly forwards?: readonly PasstForward[];
  /** passt died and was started again (or could not be): `reason` says how it ended. */
  readonly onRestart?: (reason: string) => void;
  /** The executable (default /usr/bin/passt); for tests. */
  readonly executable?: string;
}

/** passt's -t/-u argument for one forward: `[addr/]hostport:guestport`. */
export function passtForwardSpec(f: PasstForward): string {
  return `${f.hostAddress ?? "127.0.0.1"}/${f.hostPort}:${f.guestPort}`;
}

export class PasstProcess {
  private child: ChildProcess | null = null;
  private stopped = false;
  private log = "";
  private restartDelay = RESTART_FIRST_MS;
  private restartTimer: ReturnType<typeof setTimeout> | null = null;
  private startedAt = 0;
  private restartCount = 0;

  constructor(private readonly options: PasstOptions) {}

  get socketPath(): string {
    return this.options.socketPath;
  }

  /** How many times passt was started again after dying. */
  get restarts(): number {
    return this.restartCount;
  }

  /** The running passt's pid, or undefined. */
  get pid(): number | undefined {
    return this.child?.pid;
  }

  /** The command line for these options (without the executable). */
  args(): string[] {
    // The socket is named relative to passt's working directory (its directory): as root, passt binds it
    // after changing to nobody, who may not be allowed to traverse the directories above.
    const a = ["--foreground", "--quiet", "--stderr", "--socket", basename(this.options.socketPath)];
    // The NAT card's MTU is the same (its frames are at most PASST_MTU + 14 bytes), and passt's DHCP
    // announces it (option 26).
    a.push("--mtu", String(PASST_MTU));
    // passt quits when its client goes: a VMM killed outright leaves no passt behind (a parent-death
    // signal would not do, as the change to nobody clears it). The next client finds it restarted.
    a.push("--one-off");
    for (const f of this.options.forwards ?? [])
      a.push(f.protocol === "tcp" ? "-t" : "-u", passtForwardSpec(f));
    return a;
  }

  /** Starts passt and resolves once its socket accepts connections. Throws PasstMissingError when passt is
   *  not installed, PasstStartError when it exits or does not listen in time. */
  async start(): Promise<void> {
    const exe = this.options.executable ?? PASST_PATH;
    try {
      accessSync(exe, constants.X_OK);
    } catch {
      throw new PasstMissingError(exe);
    }
    this.stopped = false;
    this.prepareDirectory();
    await this.spawnAndWait(exe);
  }

  /** Stops passt (SIGTERM, then SIGKILL) and removes its socket. */
  async stop(): Promise<void> {
    this.stopped = true;
    if (this.restartTimer !== null) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    const c = this.child;
    this.child = null;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise<void>((resolve) => c.once("exit", () => resolve()));
      c.kill("SIGTERM");
      const timer = setTimeout(() => c.kill("SIGKILL"), 2000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(this.options.socketPath, { force: true });
  }

  private prepareDirectory(): void {
    const dir = dirname(this.options.socketPath);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    rmSync(this.options.socketPath, { force: true });
    if (process.getuid?.() === 0) {
      // passt binds its socket after changing to nobody: the directory must be nobody's. Root (this VMM)
      // still connects to it; no other user can.
      chownSync(dir, NOBODY_UID, NOBODY_GID);
      chmodSync(dir, 0o700);
    }
  }

  private async spawnAndWait(exe: string): Promise<void> {
    this.log = "";
    const child = spawn(exe, this.args(), {
      cwd: dirname(this.options.socketPath),
      stdio: ["ignore", "pipe", "pipe"],
    });
    this.child = child;
    this.startedAt = Date.now();
    const keep = (b: Buffer): void => {
      this.log = (this.log + b.toString("utf8")).slice(-LOG_TAIL_BYTES);
    };
    child.stdout!.on("data", keep);
    child.stderr!.on("data", keep);
    let exitReason: string | null = null;
    child.on("error", (e) => {
      exitReason = e.message;
    });
    child.once("exit", (code, signal) => {
      exitReason = signal ? `killed by ${signal}` : `exited with status ${code}`;
      if (this.child === child) {
        this.child = null;
        this.died(`passt ${exitReason}${this.lastLogLine()}`);
      }
    });
    const deadline = Date.now() + START_TIMEOUT_MS;
    for (;;) {
      if (exitReason !== null) throw new PasstStartError(`passt ${exitReason}${this.lastLogLine()}`);
      if (await socketExists(this.options.socketPath)) return;
      if (Date.now() > deadline) {
        if (this.child === child) this.child = null;
        child.kill("SIGKILL");
        throw new PasstStartError(`passt did not listen on ${this.options.socketPath} within 10 s`);
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  private lastLogLine(): string {
    const lines = this.log
      .split("\n")
      .map((l) => l.trim())
      // Without a system logger passt complains about each line it could not send there.
      .filter((l) => l !== "" && !l.startsWith("Failed to send"));
    const last = lines.at(-1);
    return last ? `: ${last}` : "";
  }

  private died(reason: string): void {
    if (this.stopped) return;
    if (Date.now() - this.startedAt > STABLE_MS) this.restartDelay = RESTART_FIRST_MS;
    const delay = this.restartDelay;
    this.restartDelay = Math.min(RESTART_MAX_MS, this.restartDelay * 2);
    this.restartTimer = setTimeout(() => {
      this.restartTimer = null;
      if (this.stopped) return;
      this.restartCount++;
      const exe = this.options.executable ?? PASST_PATH;
      try {
        this.prepareDirectory();
      } catch (e) {
        this.options.onRestart?.(`${reason}; restart failed: ${(e as Error).message}`);
        this.died(reason);
        return;
      }
      this.spawnAndWait(exe).then(
        () => this.options.onRestart?.(reason),
        (e: Error) => {
          this.options.onRestart?.(`${reason}; restart failed: ${e.message}`);
          if (this.child === null) this.died(reason);
        },
      );
    }, delay);
  }
}

/** Whether passt has bound its socket. Not probed by connecting: passt serves one client at a time, and a
 *  probe's connection would race the real one. A connect before its listen() is retried by the client. */
async function socketExists(path: string): Promise<boolean> {
  try {
    return (await stat(path)).isSocket();
  } catch {
    return false;
  }
}
