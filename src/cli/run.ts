// `tsvm run`: boots a guest on the emulator engine in this process, attached to the terminal (or, with
// --exec, runs one command in the guest shell and exits with its status).

import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import {
  PASST_MTU,
  PasstMissingError,
  PasstProcess,
  PasstStartError,
} from "../engines/backends/passt-process.ts";
import { openProbedDisk } from "../engines/backends/probed-disk.ts";
import { StreamFrameSocket } from "../engines/backends/stream-frame-socket.ts";
import { Qcow2Error } from "../engines/backends/qcow2/index.ts";
import type { ExitReason } from "../engines/engine.ts";
import {
  type BootFile,
  MachineError,
  RiscvEngine,
  VIRT_MAX_HARTS,
  VIRT_MAX_MEMORY,
  VIRT_MIN_MEMORY,
} from "../engines/riscv/riscv-engine.ts";
import { buildImage } from "../images/build.ts";
import { copyDiskFor, findImage, type ImageInfo } from "../images/image-store.ts";
import { parseCommandLine, UsageError } from "./parse-command-line.ts";

const HELP = `Usage: tsvm run [options]

Boots a RISC-V guest (QEMU virt board, RV64GC) on this terminal. Without --kernel it boots the default
image (built on first use).

Options:
  --kernel FILE    Linux Image or ELF executable (default: the default image's kernel)
  --initrd FILE    initial ramdisk (default: the default image's, when booting it)
  --disk FILE      disk image, raw or qcow2 (with its backing files, which stay unchanged), used in
                   place (default: a private copy of the image's disk)
  --append TEXT    kernel command line (default: "${defaultAppend()}")
  --bios FILE|none firmware loaded at 0x80000000 (default: OpenSBI fw_dynamic); "none" starts the kernel
                   in M-mode, with HTIF for bare-metal test programs
  --memory SIZE    RAM, e.g. 256M or 1G (default 256M)
  --cpus N         harts, 1 to ${VIRT_MAX_HARTS} (default 1)
  --exec CMD       boot, run CMD in the guest shell, print only its output, power off, and exit
                   with CMD's exit status
  --net            a network card (eth0, a new MAC each run) with NAT to the host's network through
                   passt (Debian package passt): DHCP gives the guest 192.0.2.2-style addresses, and the
                   gateway's address reaches the host's own 127.0.0.1
  -h, --help       show this help

On the console: Ctrl-A x quits, Ctrl-A h shows these keys, Ctrl-A Ctrl-A sends Ctrl-A.
`;

function defaultAppend(): string {
  return "console=ttyS0 earlycon=sbi";
}

/** Debian's OpenSBI (package opensbi), used when a kernel is given without an image or --bios. */
const DEBIAN_OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";

/** "256M", "1G", "512K", "1048576B"; a bare number means MiB as in QEMU's -m. */
export function parseMemorySize(text: string): number {
  const m = /^(\d+)([KMGkmg]?)(i?B)?$/.exec(text.trim());
  if (!m) throw new UsageError(`--memory '${text}' is not a size such as 256M or 1G`);
  const n = Number(m[1]);
  const unit = (m[2] || (m[3] ? "B" : "M")).toUpperCase();
  const bytes = n * ({ B: 1, K: 1024, M: 1024 ** 2, G: 1024 ** 3 } as Record<string, number>)[unit]!;
  if (bytes < VIRT_MIN_MEMORY || bytes > VIRT_MAX_MEMORY || bytes % (1024 * 1024) !== 0)
    throw new UsageError(
      `--memory '${text}' must be a whole number of MiB from ${VIRT_MIN_MEMORY / 2 ** 20}M to ${VIRT_MAX_MEMORY / 2 ** 20}M`,
    );
  return bytes;
}

function parseCpus(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > VIRT_MAX_HARTS)
    throw new UsageError(`--cpus '${text}' must be a whole number from 1 to ${VIRT_MAX_HARTS}`);
  return Number(text);
}

function readBootFile(path: string, option: string): BootFile {
  try {
    // A view of the Buffer's own memory: copying a kernel and initramfs of tens of MiB cost ~0.1 s at start.
    const buf = readFileSync(path);
    return { name: basename(path), bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === "ENOENT" ? "no such file" : (e as Error).message;
    throw new UsageError(`${option} ${path}: cannot read it (${why})`);
  }
}

export interface RunOptions {
  kernel?: string;
  initrd?: string;
  disk?: string;
  append: string;
  bios?: string;
  memoryBytes: number;
  cpus: number;
  exec?: string;
  net: boolean;
}

/** Parses `tsvm run` arguments; throws UsageError with the line to print. Returns null for --help. */
export function parseRunArgs(argv: string[]): RunOptions | null {
  const parsed = parseCommandLine("run", argv, {
    allowPositionals: true,
    options: {
      kernel: { type: "string" },
      initrd: { type: "string" },
      disk: { type: "string" },
      append: { type: "string" },
      bios: { type: "string" },
      memory: { type: "string", short: "m" },
      cpus: { type: "string" },
      exec: { type: "string" },
      net: { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });
  const v = parsed.values;
  if (v.help) return null;
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
  return {
    kernel: v.kernel,
    initrd: v.initrd,
    disk: v.disk,
    append: v.append ?? defaultAppend(),
    bios: v.bios,
    memoryBytes: parseMemorySize(v.memory ?? "256M"),
    cpus: parseCpus(v.cpus ?? "1"),
    exec: v.exec,
    net: v.net === true,
  };
}

/** Finds the default image, building it (with progress on stderr) when the cache has none. */
async function defaultImage(): Promise<ImageInfo> {
  const found = findImage("default");
  if (found) return found;
  process.stderr.write("tsvm run: no default image yet; building it (this takes a while, once)\n");
  return buildImage("default", { onProgress: (line) => process.stderr.write(`  ${line}\n`) });
}

/** Runs `tsvm run`; resolves with the process exit code. */
export async function runCommand(argv: string[]): Promise<number> {
  let options: RunOptions | null;
  try {
    options = parseRunArgs(argv);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`tsvm run: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (options === null) {
    process.stdout.write(HELP);
    return 0;
  }
  const cleanups: Array<() => void | Promise<void>> = [];
  try {
    return await runWith(options, cleanups);
  } catch (e) {
    if (e instanceof UsageError) {
      process.stderr.write(`tsvm run: ${e.message}\n`);
      return 2;
    }
    if (
      e instanceof MachineError ||
      e instanceof Qcow2Error ||
      e instanceof PasstMissingError ||
      e instanceof PasstStartError
    ) {
      process.stderr.write(`tsvm run: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    for (const c of cleanups.reverse()) await c();
  }
}

async function runWith(options: RunOptions, cleanups: Array<() => void | Promise<void>>): Promise<number> {
  // Read every given file first, so a typo fails before any image is built.
  const kernelFile = options.kernel ? readBootFile(options.kernel, "--kernel") : null;
  const initrdFile = options.initrd ? readBootFile(options.initrd, "--initrd") : null;
  const biosNone = options.bios === "none";
  let firmwareFile = options.bios && !biosNone ? readBootFile(options.bios, "--bios") : null;
  if (options.disk && !existsSync(options.disk))
    throw new UsageError(`--disk ${options.disk}: cannot read it (no such file)`);

  let kernel = kernelFile;
  let initrd = initrdFile;
  let diskPath = options.disk;
  if (!kernel) {
    const image = await defaultImage();
    kernel = readBootFile(image.kernel, "the image's kernel");
    initrd ??= readBootFile(image.initrd, "the image's initrd");
    if (!firmwareFile && !biosNone) firmwareFile = readBootFile(image.firmware, "the image's firmware");
    if (!diskPath) {
      const dir = mkdtempSync(join(tmpdir(), "tsvm-run-"));
      cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
      diskPath = copyDiskFor(image, join(dir, "disk.img"));
    }
  } else if (!firmwareFile && !biosNone) {
    const image = findImage("default");
    firmwareFile = readBootFile(image ? image.firmware : DEBIAN_OPENSBI, "the default firmware");
  }

  const disks = [];
  if (diskPath) {
    const disk = await openProbedDisk(diskPath);
    cleanups.push(() => disk.close());
    disks.push(disk);
  }

  const nics = options.net ? await startNat(cleanups) : [];

  const exec = options.exec !== undefined ? new ExecSession(options.exec) : null;
  const engine = new RiscvEngine({
    config: {
      harts: options.cpus,
      memoryBytes: options.memoryBytes,
      firmware: biosNone ? null : firmwareFile,
      kernel,
      initrd,
      bootargs: options.append,
    },
    console: exec ?? { write: (bytes) => process.stdout.write(bytes) },
    disks,
    nics,
    onReboot: () => exec?.rebooted(),
    trace: process.env.TSVM_TRACE ? (line) => process.stderr.write(`${line}\n`) : undefined,
    // Harts after the first on worker threads of their own, as the VMM does (docs/architecture.md).
    hartThreads: process.env.TSVM_HART_THREADS === "1",
  });

  const terminal = exec ? null : new TerminalAttachment(engine);
  if (terminal) cleanups.push(() => terminal.detach());
  // With --exec the terminal stays cooked: Ctrl-C (SIGINT) or SIGTERM stop the machine, and the cleanups
  // (the private disk copy) still run.
  let execSignal: NodeJS.Signals | null = null;
  let onExecSignal: (signal: NodeJS.Signals) => void = () => {};
  const execInterrupted = new Promise<ExitReason>((resolve) => {
    onExecSignal = (signal) => {
      execSignal = signal;
      resolve({ kind: "stopped" });
    };
  });
  if (exec) {
    exec.attach(engine);
    process.on("SIGINT", onExecSignal);
    process.on("SIGTERM", onExecSignal);
    cleanups.push(() => {
      process.off("SIGINT", onExecSignal);
      process.off("SIGTERM", onExecSignal);
    });
  }
  await engine.start();
  const reason = await Promise.race([engine.exited, terminal ? terminal.quit : execInterrupted]);
  if (engine.state !== "exited") await engine.stop();
  if (execSignal) {
    process.stderr.write(`tsvm run: ${execSignal}, stopped the machine\n`);
    return execSignal === "SIGINT" ? 130 : 143;
  }
  if (exec) return exec.finish(reason);
  return terminal?.signalExitCode ?? exitCodeOf(reason);
}

/** A locally administered unicast MAC (02:…), new for each run. */
export function randomMac(): Uint8Array {
  const mac = crypto.getRandomValues(new Uint8Array(6));
  mac[0] = 0x02;
  return mac;
}

/** --net: passt on a socket in a private directory, and the card's connection to it. */
async function startNat(
  cleanups: Array<() => void | Promise<void>>,
): Promise<{ mac: Uint8Array; mtu: number; backend: StreamFrameSocket }[]> {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-run-net-"));
  cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const passt = new PasstProcess({
    socketPath: join(dir, "passt", "passt.sock"),
    onRestart: (reason) => process.stderr.write(`tsvm run: ${reason}; restarted it\n`),
  });
  cleanups.push(() => passt.stop());
  await passt.start();
  const backend = new StreamFrameSocket(passt.socketPath);
  cleanups.push(() => backend.close());
  return [{ mac: randomMac(), mtu: PASST_MTU, backend }];
}

function exitCodeOf(reason: ExitReason): number {
  switch (reason.kind) {
    case "poweroff":
      // PASS powers off with 0, FAIL with its code (never 0); a code whose low byte is 0 would read as
      // success to the shell, so it becomes 1.
      return reason.code === 0 ? 0 : reason.code & 0xff || 1;
    case "stopped":
    case "reset":
      return 0;
    case "htif-exit":
      return reason.code & 0xff;
    case "error":
      process.stderr.write(`tsvm run: ${reason.message}\n`);
      return 1;
  }
}

/** Connects stdin to the guest console: raw mode on a TTY, the Ctrl-A escape, restoring the terminal. */
class TerminalAttachment {
  readonly quit: Promise<ExitReason>;
  private resolveQuit!: (r: ExitReason) => void;
  private escape = false;
  private readonly tty = process.stdin.isTTY === true;
  private detached = false;
  /** 128 + the signal's number when a signal ended the run (the shell convention), else null. */
  signalExitCode: number | null = null;

  constructor(private readonly engine: RiscvEngine) {
    this.quit = new Promise((resolve) => {
      this.resolveQuit = resolve;
    });
    if (this.tty) process.stdin.setRawMode(true);
    process.stdin.on("data", this.onData);
    process.stdin.resume();
    // The terminal is restored on every way out: normal exit, signals, uncaught errors.
    process.on("exit", this.restore);
    process.on("SIGINT", this.onSignal);
    process.on("SIGTERM", this.onSignal);
    process.on("SIGHUP", this.onSignal);
    process.on("uncaughtException", this.onUncaught);
  }

  private readonly onData = (chunk: Buffer): void => {
    if (!this.tty) {
      this.engine.sendConsole(chunk);
      return;
    }
    const out: number[] = [];
    for (const b of chunk) {
      if (this.escape) {
        this.escape = false;
        if (b === 0x78 || b === 0x58) {
          this.engine.sendConsole(Uint8Array.from(out));
          this.resolveQuit({ kind: "stopped" });
          return;
        }
        if (b === 0x01) out.push(0x01);
        else if (b === 0x68 || b === 0x48)
          process.stdout.write("\nC-a h    print this help\nC-a x    exit tsvm\nC-a C-a  send C-a\n");
      } else if (b === 0x01) this.escape = true;
      else out.push(b);
    }
    if (out.length) this.engine.sendConsole(Uint8Array.from(out));
  };

  private readonly restore = (): void => {
    if (this.tty && process.stdin.isTTY) process.stdin.setRawMode(false);
  };

  private readonly onSignal = (signal: NodeJS.Signals): void => {
    this.restore();
    this.signalExitCode = 128 + (signal === "SIGINT" ? 2 : signal === "SIGTERM" ? 15 : 1);
    process.stderr.write(`\ntsvm run: ${signal}, stopping the machine\n`);
    this.resolveQuit({ kind: "stopped" });
  };

  private readonly onUncaught = (error: Error): void => {
    this.restore();
    process.stderr.write(`tsvm run: internal error: ${error.stack ?? error.message}\n`);
    process.exit(1);
  };

  detach(): void {
    if (this.detached) return;
    this.detached = true;
    this.restore();
    process.stdin.off("data", this.onData);
    process.stdin.pause();
    process.off("exit", this.restore);
    process.off("SIGINT", this.onSignal);
    process.off("SIGTERM", this.onSignal);
    process.off("SIGHUP", this.onSignal);
    process.off("uncaughtException", this.onUncaught);
  }
}

// The markers are printed with octal escapes (\137 is "_"), so the echoed command line never contains them.
const BEGIN_MARKER = "__TSVM_BEGIN__\n";
const END_MARKER = /__TSVM_END_(\d+)__\n/;
const PROMPT = /[#$] $/;
/** Host time a guest that is shutting down gets to reboot or power off on its own. */
const SHUTDOWN_GRACE_MS = 20_000;

/**
 * `--exec`: waits for the shell prompt, turns echo off, runs the command between two markers, prints only
 * what lies between them, and powers the guest off. Receives the UART's output as a CharSink.
 */
export class ExecSession {
  private phase: "boot" | "stty" | "run" | "output" | "grace" | "done" = "boot";
  private graceTimer: ReturnType<typeof setTimeout> | null = null;
  private text = "";
  private engine: { sendConsole(bytes: Uint8Array): void } | null = null;
  private status: number | null = null;
  /** Everything the guest printed, for the error message when it stops early. */
  private log = "";
  private readonly decoder = new TextDecoder();

  /** @param out where the command's output goes (stdout) */
  constructor(
    private readonly command: string,
    private readonly out: (text: string) => void = (text) => process.stdout.write(text),
  ) {}

  attach(engine: { sendConsole(bytes: Uint8Array): void }): void {
    this.engine = engine;
  }

  write(bytes: Uint8Array): void {
    const s = this.decoder.decode(bytes, { stream: true }).replace(/\r/g, "");
    this.log = (this.log + s).slice(-4000);
    this.text += s;
    for (;;) {
      if (this.phase === "boot" || this.phase === "stty") {
        if (!PROMPT.test(this.text)) {
          this.text = this.text.slice(-100);
          return;
        }
        this.text = "";
        if (this.phase === "boot") {
          this.phase = "stty";
          this.send("stty -echo\n");
        } else {
          this.phase = "run";
          this.send(
            "printf '\\137\\137TSVM\\137BEGIN\\137\\137\\n'; (\n" +
              `${this.command}\n` +
              ") ; printf '\\137\\137TSVM\\137END\\137%d\\137\\137\\n' $?\n",
          );
        }
        return;
      }
      if (this.phase === "run") {
        const i = this.text.indexOf(BEGIN_MARKER);
        if (i < 0) {
          this.text = this.text.slice(-BEGIN_MARKER.length);
          return;
        }
        this.text = this.text.slice(i + BEGIN_MARKER.length);
        this.phase = "output";
        continue;
      }
      if (this.phase === "output") {
        const m = END_MARKER.exec(this.text);
        if (m) {
          this.out(this.text.slice(0, m.index));
          const status = Number(m[1]);
          this.text = "";
          // Power off only now: a `poweroff -f` on the command line could cut the marker short while the
          // guest's tty is still draining it. A command killed by SIGTERM may be init shutting the guest
          // down (CMD ran `reboot` or `poweroff`): give init time to finish before forcing the poweroff.
          if (status === 128 + 15) {
            this.phase = "grace";
            this.graceTimer = setTimeout(() => this.complete(status), SHUTDOWN_GRACE_MS);
          } else this.complete(status);
          return;
        }
        // Keep back what could be the start of the end marker (it may arrive in pieces).
        let cut = this.text.length;
        for (let i = Math.max(0, this.text.length - 40); i < this.text.length; i++) {
          const tail = this.text.slice(i);
          if ("__TSVM_END_".startsWith(tail) || /^__TSVM_END_\d*_{0,2}$/.test(tail)) {
            cut = i;
            break;
          }
        }
        this.out(this.text.slice(0, cut));
        this.text = this.text.slice(cut);
      }
      return;
    }
  }

  private complete(status: number): void {
    this.graceTimer = null;
    this.status = status;
    this.phase = "done";
    this.send("sync; poweroff -f\n");
  }

  /** The guest rebooted (e.g. CMD ran `reboot`): wait for the prompt again and run CMD once more. */
  rebooted(): void {
    if (this.phase === "done") return;
    this.cancelGrace();
    this.phase = "boot";
    this.text = "";
  }

  private cancelGrace(): void {
    if (this.graceTimer !== null) clearTimeout(this.graceTimer);
    this.graceTimer = null;
  }

  private send(text: string): void {
    this.engine?.sendConsole(new TextEncoder().encode(text));
  }

  /** The run's exit code once the machine stopped. */
  finish(reason: ExitReason): number {
    this.cancelGrace();
    if (this.status !== null) return this.status;
    // CMD itself powered the guest off (e.g. `poweroff`): a clean end.
    if (reason.kind === "poweroff" && (this.phase === "output" || this.phase === "grace")) return 0;
    const what =
      reason.kind === "error"
        ? reason.message
        : `the guest stopped (${reason.kind}) before the command finished (${this.phase === "boot" ? "no shell prompt seen" : this.phase})`;
    process.stderr.write(`tsvm run: ${what}; last console output:\n${this.log.slice(-1500)}\n`);
    return 1;
  }
}
