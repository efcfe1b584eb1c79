// The emulator engine: runs a riscv-virt board in this Node process, in slices of about a millisecond with the
// event loop turning between them, and sleeping on a timer while every hart waits in WFI. With `hartThreads`,
// harts 1… run in parallel on worker threads of their own (hart-threads.ts) over RAM in a SharedArrayBuffer.

import { performance } from "node:perf_hooks";
import {
  BOARD_SNAPSHOT,
  type BlockBackend,
  BoardTurn,
  type CharSink,
  type Clock,
  type Completion,
  type EntropySource,
  MachineError,
  type PowerEvent,
  RiscvVirtBoard,
  type RiscvVirtBoardState,
  type RiscvVirtConfig,
  type VirtioConsolePortConfig,
  type VirtioNet,
} from "../../machine/index.ts";
import type { FrameBackend } from "../backends/frame-backend.ts";
import {
  type Engine,
  type EngineCapabilities,
  type EngineSnapshot,
  type EngineState,
  EngineStateError,
  type EngineStats,
  type ExitReason,
} from "../engine.ts";
import { HartThreads } from "./hart-threads.ts";
import { sharedMonotonicClock } from "./shared-monotonic-clock.ts";

// What a host (the CLI, the hypervisor) needs of the machine to configure this engine and to store its
// states (the state file format, shared with the machine in a browser tab), without reaching into the
// machine layer itself.
export {
  type BootFile,
  checkTabUploadHeader,
  decodeStateTree,
  encodeStateTree,
  MAX_STATE_MANIFEST_BYTES,
  MAX_STATE_TREE_BYTES,
  MAX_TAB_UPLOAD_HEADER_BYTES,
  MachineError,
  parseStateManifest,
  STATE_FORMAT,
  STATE_MAGIC,
  STATE_TYPED_ARRAYS,
  type SnapshotLike,
  type StateArray,
  type StateArrayType,
  StateFormatError,
  type StateSectionEntry,
  sectionFileName,
  stateManifest,
  TAB_UPLOAD_MAGIC,
  type TabUploadHeader,
  type RiscvVirtConfig,
  VIRT_MAX_HARTS,
  VIRT_MAX_MEMORY,
  VIRT_MIN_MEMORY,
} from "../../machine/index.ts";

const SNAPSHOT_ENGINE = BOARD_SNAPSHOT.engine;
const SNAPSHOT_VERSION = BOARD_SNAPSHOT.version;

/** Host time one turn of the loop may run guest code before yielding to I/O callbacks. */
const TURN_MS = 4;
/** Longest sleep without a deadline (nothing armed): wake up now and then anyway. */
const MAX_SLEEP_MS = 1_000;

export interface RiscvEngineOptions {
  readonly config: RiscvVirtConfig;
  /** The serial console's output. */
  readonly console: CharSink;
  /** Opened disks, in slot order. */
  readonly disks?: readonly BlockBackend[];
  /** Adds a virtio-console: port 0's output goes to `sink`; named ports (e.g. a guest agent) after it. */
  readonly virtioConsole?: { readonly sink: CharSink; readonly ports?: readonly VirtioConsolePortConfig[] };
  /** Network cards (virtio-net, eth0 first) and where their frames go. The engine sets each backend's
   *  onFrame; closing the backends is the caller's. `mtu` is the card's (default 1500): what its backend
   *  carries. */
  readonly nics?: readonly {
    readonly mac: Uint8Array;
    readonly mtu?: number;
    readonly backend: FrameBackend;
  }[];
  /** A guest reset reboots the machine in place (default) or ends the run with exit reason "reset". */
  readonly onReset?: "reboot" | "exit";
  /** Called after each in-place reboot (the guest asked for a reset). */
  readonly onReboot?: () => void;
  /** Writes one line per 100 ms of guest running: each hart's pc, privilege and instret (TSVM_TRACE). */
  readonly trace?: (line: string) => void;
  /**
   * Guest RAM's memory, exactly `config.memoryBytes` (default: a new ArrayBuffer). To restore without
   * copying RAM, pass the buffer of a saved state's RAM (`RiscvEngine.ramOf(snapshot)`, e.g. mapped from
   * its file) and then restoreState that snapshot. Until restoreState or start, the machine has not
   * booted: its RAM is the buffer's contents.
   */
  readonly ram?: ArrayBuffer;
  /**
   * Runs each hart after the first on a worker thread of its own, in parallel (default false: every hart
   * takes turns on this thread). Guest RAM is then a SharedArrayBuffer: a `ram` given is copied into one.
   */
  readonly hartThreads?: boolean;
}

const performanceClock: Clock = { nowMs: () => performance.now() };

const cryptoEntropy: EntropySource = {
  fill(dst: Uint8Array): void {
    // getRandomValues fills at most 65536 bytes per call.
    for (let off = 0; off < dst.length; off += 65536)
      crypto.getRandomValues(dst.subarray(off, Math.min(dst.length, off + 65536)));
  },
};

/** A BlockBackend whose completions also wake the engine, so a sleeping machine sees its I/O finish. */
class WakingBlockBackend implements BlockBackend {
  /** Present only when the inner disk has them: VirtioBlk offers discard and write-zeroes by their presence. */
  readonly discard?: BlockBackend["discard"];
  readonly writeZeroes?: BlockBackend["writeZeroes"];

  constructor(
    private readonly inner: BlockBackend,
    private readonly wake: () => void,
  ) {
    if (inner.discard)
      this.discard = (offset, length, done) =>
        inner.discard!(offset, length, (e) => {
          done(e);
          wake();
        });
    if (inner.writeZeroes)
      this.writeZeroes = (offset, length, unmap, done) =>
        inner.writeZeroes!(offset, length, unmap, (e) => {
          done(e);
          wake();
        });
  }
  get sizeBytes(): number {
    return this.inner.sizeBytes;
  }
  get readOnly(): boolean {
    return this.inner.readOnly;
  }
  read(offset: number, dst: Uint8Array, done: Completion): void {
    this.inner.read(offset, dst, (e) => {
      done(e);
      this.wake();
    });
  }
  write(offset: number, src: Uint8Array, done: Completion): void {
    this.inner.write(offset, src, (e) => {
      done(e);
      this.wake();
    });
  }
  flush(done: Completion): void {
    this.inner.flush((e) => {
      done(e);
      this.wake();
    });
  }
}

export class RiscvEngine implements Engine {
  /** Dirty-page tracking with harts on worker threads too: they mark a shared map (bus/guest-ram.ts). */
  readonly capabilities: EngineCapabilities;
  readonly board: RiscvVirtBoard;
  readonly exited: Promise<ExitReason>;
  private resolveExit!: (reason: ExitReason) => void;
  private current: EngineState = "created";
  private readonly turns: BoardTurn;
  /** The board's clock: performance.now(), or one every thread reads alike when harts run on threads. */
  private readonly clock: Clock;
  /** The worker threads of harts 1…, or null when every hart runs on this thread. */
  private readonly threads: HartThreads | null = null;
  private scheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private startedAt = 0;
  private resets = 0;
  private readonly onReset: "reboot" | "exit";
  private readonly onReboot: () => void;
  private readonly trace: ((line: string) => void) | null;
  private lastTraceMs = 0;
  private readonly backends: FrameBackend[];
  private resolveFirstTurn!: (atMs: number) => void;
  /**
   * Resolves with the host time (performance.now()) at which the guest began running after start: the
   * first slice of guest instructions. For measuring resume latency (bench/resume.ts).
   */
  readonly firstTurn: Promise<number>;

  /** Throws MachineError (bad configuration, images that do not fit) with a message for the user. */
  constructor(options: RiscvEngineOptions) {
    this.onReset = options.onReset ?? "reboot";
    this.onReboot = options.onReboot ?? (() => {});
    this.trace = options.trace ?? null;
    this.exited = new Promise((resolve) => {
      this.resolveExit = resolve;
    });
    this.firstTurn = new Promise((resolve) => {
      this.resolveFirstTurn = resolve;
    });
    const wake = (): void => this.wake();
    const threaded = options.hartThreads === true && options.config.harts > 1;
    this.capabilities = { snapshot: true, dirtyPageTracking: true, liveMigration: false };
    this.clock = threaded ? sharedMonotonicClock() : performanceClock;
    let ram: ArrayBuffer | SharedArrayBuffer | undefined = options.ram;
    if (threaded) {
      const shared = new SharedArrayBuffer(options.config.memoryBytes);
      if (ram !== undefined && ram.byteLength === shared.byteLength)
        new Uint8Array(shared).set(new Uint8Array(ram));
      ram = shared;
    }
    this.board = new RiscvVirtBoard(options.config, {
      clock: this.clock,
      console: options.console,
      entropy: cryptoEntropy,
      disks: (options.disks ?? []).map((d) => new WakingBlockBackend(d, wake)),
      virtioConsole: options.virtioConsole,
      nics: (options.nics ?? []).map((n) => ({
        mac: n.mac,
        ...(n.mtu !== undefined ? { mtu: n.mtu } : {}),
        port: { send: (f) => n.backend.send(f) },
      })),
      ram,
      threadedHarts: threaded,
    });
    this.board.onPower = (event) => this.onPower(event);
    this.turns = new BoardTurn(this.board, this.clock);
    if (threaded)
      this.threads = new HartThreads(this.board, wake, (message) =>
        this.finish({ kind: "error", message: `the machine failed: ${message}` }),
      );
    this.backends = (options.nics ?? []).map((n) => n.backend);
    for (let i = 0; i < this.backends.length; i++) this.attachNic(this.board.nics[i]!, this.backends[i]!);
  }

  get state(): EngineState {
    return this.current;
  }

  /**
   * The buffer holding a riscv snapshot's RAM when its RAM array spans that whole buffer (as a state read
   * with its RAM mapped from the file does), else undefined: give it as the `ram` option to restore that
   * snapshot without a copy.
   */
  static ramOf(snapshot: EngineSnapshot): ArrayBuffer | undefined {
    if (snapshot.engine !== SNAPSHOT_ENGINE || snapshot.version !== SNAPSHOT_VERSION) return undefined;
    const ram = (snapshot.data as Partial<RiscvVirtBoardState> | null)?.ram;
    if (!(ram instanceof Uint8Array) || ram.byteOffset !== 0) return undefined;
    const buffer = ram.buffer;
    return buffer instanceof ArrayBuffer && buffer.byteLength === ram.byteLength ? buffer : undefined;
  }

  async start(): Promise<void> {
    if (this.current !== "created") throw new EngineStateError("start", this.current);
    this.current = "running";
    this.startedAt = performance.now();
    this.board.powerOnIfPending();
    this.threads?.run();
    this.schedule();
  }

  async pause(): Promise<void> {
    if (this.current !== "running") throw new EngineStateError("pause", this.current);
    // One thread: between turns no hart is executing, so every vCPU is parked as soon as we stop scheduling.
    this.current = "paused";
    this.cancelTimer();
    // Harts on threads stop at their next instruction boundary and hand their states over.
    if (this.threads !== null) await this.threads.park();
  }

  async resume(): Promise<void> {
    if (this.current !== "paused") throw new EngineStateError("resume", this.current);
    this.current = "running";
    this.threads?.run();
    this.schedule();
    // Frames refused while paused are waiting in their backends.
    for (const b of this.backends) b.resume();
  }

  async stop(): Promise<void> {
    this.finish({ kind: "stopped" });
  }

  async reset(): Promise<void> {
    if (this.current !== "running" && this.current !== "paused")
      throw new EngineStateError("reset", this.current);
    // No hart on this thread is mid-instruction here; those on threads are parked first.
    if (this.threads !== null) await this.threads.park();
    this.board.boot();
    this.resets++;
    if (this.current === "running") this.threads?.run();
    this.wake();
  }

  async saveState(options: { readonly shareRam?: boolean } = {}): Promise<EngineSnapshot> {
    if (this.current !== "paused") throw new EngineStateError("save the state of", this.current);
    return { engine: SNAPSHOT_ENGINE, version: SNAPSHOT_VERSION, data: this.board.saveState(options) };
  }

  startDirtyPageTracking(): void {
    this.board.ram.startDirtyTracking();
  }

  takeDirtyPages(): Uint32Array {
    return this.board.ram.takeDirtyPages();
  }

  stopDirtyPageTracking(): void {
    this.board.ram.stopDirtyTracking();
  }

  async restoreState(snapshot: EngineSnapshot): Promise<void> {
    if (this.current !== "created" && this.current !== "paused")
      throw new EngineStateError("restore the state of", this.current);
    if (snapshot.engine !== SNAPSHOT_ENGINE || snapshot.version !== SNAPSHOT_VERSION)
      throw new MachineError(
        "bad-state",
        `the saved state was written by engine ${snapshot.engine} version ${snapshot.version}, not ${SNAPSHOT_ENGINE} ${SNAPSHOT_VERSION}`,
      );
    this.board.loadState(snapshot.data as RiscvVirtBoardState);
  }

  /** Input for the serial console; wakes a sleeping machine. */
  sendConsole(bytes: Uint8Array): void {
    if (this.current === "exited") return;
    this.board.receiveConsole(bytes);
    this.wake();
  }

  /**
   * Input for virtio-console port `port`; returns how many bytes the device took (it bounds what it queues).
   * Wakes a sleeping machine. Throws when the engine was made without a virtio-console.
   */
  sendVirtioConsole(port: number, bytes: Uint8Array): number {
    const device = this.board.virtioConsole;
    if (!device) throw new Error("this machine has no virtio-console");
    if (this.current === "exited") return 0;
    const taken = device.receive(port, bytes);
    this.wake();
    return taken;
  }

  /**
   * Wires a card to its backend. Frames reach the guest only while the machine runs (never while paused,
   * when a state may be being saved); one the guest has no buffer for is left to the backend, which stops
   * reading until the guest posts buffers.
   */
  private attachNic(nic: VirtioNet, backend: FrameBackend): void {
    backend.onFrame = (frame) => {
      if (this.current !== "running" || !nic.canReceive(frame.length)) return false;
      // A frame the card refuses as malformed is dropped (counted by the card), not held.
      nic.receive(frame);
      this.wake();
      return true;
    };
    nic.onRxSpace = () => {
      if (this.current === "running") backend.resume();
    };
  }

  /** Something outside the loop happened (input, I/O completion): run now instead of sleeping on. */
  wake(): void {
    if (this.current !== "running") return;
    this.cancelTimer();
    this.schedule();
  }

  stats(): EngineStats {
    const now = performance.now();
    return {
      instret: this.board.stats().instret,
      instructionsPerSecond: this.turns.rate,
      busyMs: this.turns.busyMs,
      uptimeMs: this.startedAt ? now - this.startedAt : 0,
      resets: this.resets,
      ...(this.board.remote !== null ? { hartThreads: this.board.remote.stats() } : {}),
    };
  }

  private traceLine(now: number): string {
    const harts = this.board.harts.map((h, i) => {
      const pc = ((h.pcHi >>> 0) * 0x1_0000_0000 + (h.pcLo >>> 0)).toString(16).padStart(16, "0");
      return `hart${i} pc=${pc} priv=${"USHM"[h.privilege]}${h.waiting ? " wfi" : ""} instret=${h.instretCount()}`;
    });
    const mips = (this.turns.rate / 1e6).toFixed(1);
    return `[${((now - this.startedAt) / 1000).toFixed(2)}s ${mips} MIPS budget=${this.turns.budget}] ${harts.join("  ")}`;
  }

  private onPower(event: PowerEvent): void {
    if (event.kind === "reset") {
      this.resets++;
      if (this.onReset === "exit") this.finish({ kind: "reset" });
      else if (this.threads !== null) void this.rebootThreaded();
      else this.onReboot();
      return;
    }
    this.finish(event);
  }

  /** A guest reset with harts on threads: the board boots once they are parked (it leaves that to us). */
  private async rebootThreaded(): Promise<void> {
    this.current = "paused";
    this.cancelTimer();
    await this.threads!.park();
    if (this.current !== "paused") return;
    this.board.boot();
    this.current = "running";
    this.threads!.run();
    this.schedule();
    this.onReboot();
  }

  private finish(reason: ExitReason): void {
    if (this.current === "exited") return;
    this.current = "exited";
    this.cancelTimer();
    void this.threads?.close();
    for (const b of this.backends) b.onFrame = null;
    this.resolveExit(reason);
  }

  private cancelTimer(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    setImmediate(this.turn);
  }

  private readonly isRunning = (): boolean => this.current === "running";

  private readonly turn = (): void => {
    this.scheduled = false;
    if (this.current !== "running" || this.timer !== null) return;
    const board = this.board;
    this.resolveFirstTurn(performance.now());
    let now: number;
    try {
      now = this.turns.run(TURN_MS, this.isRunning);
    } catch (e) {
      this.finish({
        kind: "error",
        message: `the machine failed: ${e instanceof Error ? e.message : String(e)}`,
      });
      return;
    }
    if (this.trace && now - this.lastTraceMs >= 100) {
      this.lastTraceMs = now;
      this.trace(this.traceLine(now));
    }
    if (this.current !== "running") return;
    if (board.allWaiting) {
      // Every hart sleeps in WFI: sleep the host too, until the next timer or until wake() (input, I/O).
      const delay = Math.min(MAX_SLEEP_MS, board.nextDeadlineMs() - this.clock.nowMs());
      if (delay > 0) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.turn();
        }, delay);
        return;
      }
    }
    this.schedule();
  };
}
