// The machine of the /machine page, in a Web Worker: builds the same riscv-virt board the Node engine runs
// (src/machine, bundled for the browser) from the files the page fetched, runs it in turns of a few
// milliseconds with the worker's message loop turning between them, and sleeps on a timer while every hart
// waits in WFI. Console bytes, status and errors go to the page by postMessage.

import {
  BOARD_SNAPSHOT,
  BoardTurn,
  type Clock,
  decodeStateTree,
  type EntropySource,
  encodeStateTree,
  parseStateManifest,
  RiscvVirtBoard,
  type RiscvVirtBoardState,
  type StateSectionEntry,
  sectionArray,
  sectionFileName,
  stateManifest,
} from "../../machine/index.ts";
import type {
  MachineToPage,
  PageToMachine,
  TabBootFiles,
  TabMachineSpec,
  TabSavedState,
  TabStateFiles,
} from "./machine-messages.ts";
import { MemoryDisk } from "./memory-disk.ts";

/** Host time one turn may run guest code before the worker looks at its messages. */
const TURN_MS = 8;
/** Longest sleep without a deadline. */
const MAX_SLEEP_MS = 1000;
const STATUS_EVERY_MS = 500;

interface WorkerScope {
  postMessage(message: MachineToPage, transfer?: Transferable[]): void;
  onmessage: ((event: MessageEvent<PageToMachine>) => void) | null;
}
const scope = globalThis as unknown as WorkerScope;

const clock: Clock = { nowMs: () => performance.now() };
const entropy: EntropySource = {
  fill(dst: Uint8Array): void {
    for (let off = 0; off < dst.length; off += 65536)
      crypto.getRandomValues(dst.subarray(off, Math.min(dst.length, off + 65536)));
  },
};

function parseMac(text: string): Uint8Array {
  const parts = text.split(":");
  if (parts.length !== 6 || !parts.every((p) => /^[0-9a-fA-F]{2}$/.test(p)))
    throw new Error(`'${text}' is not a MAC address`);
  return Uint8Array.from(parts.map((p) => Number.parseInt(p, 16)));
}

const ARCH = "riscv64";

async function sha256(bytes: ArrayBuffer | Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes as BufferSource));
  return Array.from(digest, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * A saved state's board state from its files, everything checked as the server's reader checks it (the
 * shared format, every size and SHA-256) before any of it is used. Throws with a line saying what is wrong.
 */
async function readState(files: TabStateFiles): Promise<RiscvVirtBoardState> {
  const m = parseStateManifest(files.manifest, ARCH);
  if (m.engine !== BOARD_SNAPSHOT.engine || m.engineVersion !== BOARD_SNAPSHOT.version)
    throw new Error(
      `the state was written by engine ${m.engine} version ${m.engineVersion}, not ${BOARD_SNAPSHOT.engine} ${BOARD_SNAPSHOT.version}`,
    );
  if (files.tree.byteLength !== m.treeBytes || (await sha256(files.tree)) !== m.treeSha256)
    throw new Error("the state's state.json does not match its manifest (size or SHA-256)");
  if (files.sections.length !== m.sections.length)
    throw new Error(`the state has ${files.sections.length} sections, its manifest ${m.sections.length}`);
  const arrays = [];
  for (const [i, entry] of m.sections.entries()) {
    const buffer = files.sections[i]!;
    if (buffer.byteLength !== entry.byteLength || (await sha256(buffer)) !== entry.sha256)
      throw new Error(`the state's ${entry.file} does not match its manifest (size or SHA-256)`);
    arrays.push(sectionArray(entry, buffer));
  }
  return decodeStateTree(new TextDecoder().decode(files.tree), arrays) as RiscvVirtBoardState;
}

/** Console output of one turn, sent as one message at its end. */
class ConsoleBatch {
  private chunks: Uint8Array[] = [];
  write(bytes: Uint8Array): void {
    // The board reuses its buffer: keep a copy.
    this.chunks.push(bytes.slice());
  }
  flush(): void {
    if (this.chunks.length === 0) return;
    let length = 0;
    for (const c of this.chunks) length += c.length;
    const out = new Uint8Array(length);
    let at = 0;
    for (const c of this.chunks) {
      out.set(c, at);
      at += c.length;
    }
    this.chunks = [];
    scope.postMessage({ type: "console", bytes: out }, [out.buffer]);
  }
}

class TabMachine {
  readonly board: RiscvVirtBoard;
  readonly disk: MemoryDisk;
  private readonly turns: BoardTurn;
  private readonly output = new ConsoleBatch();
  private state: "running" | "paused" | "exited" = "paused";
  private readonly startedAt = performance.now();
  private lastStatusAt = 0;
  private scheduled = false;
  private timer: ReturnType<typeof setTimeout> | null = null;
  private readonly channel = new MessageChannel();

  constructor(spec: TabMachineSpec, files: TabBootFiles, state?: RiscvVirtBoardState) {
    this.disk = new MemoryDisk(files.disk);
    // A state's RAM is used as the machine's (no copy) when it is a whole buffer, as a fetched one is.
    const ram =
      state?.ram instanceof Uint8Array &&
      state.ram.byteOffset === 0 &&
      state.ram.byteLength === state.ram.buffer.byteLength
        ? (state.ram.buffer as ArrayBuffer)
        : undefined;
    const discard = { write: () => {} };
    this.board = new RiscvVirtBoard(
      {
        harts: spec.harts,
        memoryBytes: spec.memoryBytes,
        firmware: { name: "firmware", bytes: new Uint8Array(files.firmware) },
        kernel: { name: "kernel", bytes: new Uint8Array(files.kernel) },
        initrd: files.initrd.byteLength > 0 ? { name: "initrd", bytes: new Uint8Array(files.initrd) } : null,
        bootargs: spec.bootargs,
      },
      {
        clock,
        console: this.output,
        entropy,
        disks: [this.disk],
        virtioConsole: { sink: discard, ports: spec.consolePorts.map((name) => ({ name, sink: discard })) },
        // The tab has no network: frames the guest sends are dropped, none arrive.
        nics: spec.macs.map((mac) => ({ mac: parseMac(mac), port: { send: () => {} } })),
        ram,
      },
    );
    if (state) this.board.loadState(state);
    this.board.onPower = (event) =>
      this.finish(
        event.kind === "reset" ? "the guest asked for a reset" : `the guest powered off (code ${event.code})`,
      );
    this.turns = new BoardTurn(this.board, clock);
    // A message to ourselves runs the next turn as soon as pending messages (input) are handled; setTimeout(0)
    // would wait at least 4 ms once nested.
    this.channel.port1.onmessage = () => this.turn();
  }

  run(): void {
    if (this.state !== "paused") return;
    this.state = "running";
    this.schedule();
  }

  pause(): void {
    if (this.state !== "running") return;
    this.state = "paused";
    this.cancelTimer();
    this.sendStatus();
  }

  /** Pauses the machine and saves its state in the server's format, with the disk pages to send. */
  async save(wholeDisk: boolean): Promise<TabSavedState> {
    if (this.state === "exited") throw new Error("the machine has stopped: there is no state to save");
    this.pause();
    const { json, sections } = encodeStateTree(this.board.saveState());
    const tree = new TextEncoder().encode(json);
    const bytes = sections.map(
      ({ array }) => new Uint8Array(array.buffer, array.byteOffset, array.byteLength),
    );
    const entries: StateSectionEntry[] = [];
    for (const [i, { array, type }] of sections.entries())
      entries.push({
        file: sectionFileName(i),
        type,
        length: array.length,
        byteLength: array.byteLength,
        sha256: await sha256(bytes[i]!),
      });
    const manifest = stateManifest({
      arch: ARCH,
      engine: BOARD_SNAPSHOT.engine,
      engineVersion: BOARD_SNAPSHOT.version,
      writer: "tsvm (browser tab)",
      createdAt: new Date().toISOString(),
      treeBytes: tree.length,
      treeSha256: await sha256(tree),
      sections: entries,
    });
    return { manifest, tree, sections: bytes, disk: wholeDisk ? this.disk.whole() : this.disk.dirtyRuns() };
  }

  input(bytes: Uint8Array): void {
    if (this.state === "exited") return;
    this.board.receiveConsole(bytes);
    this.wake();
  }

  private wake(): void {
    if (this.state !== "running") return;
    this.cancelTimer();
    this.schedule();
  }

  private finish(message: string): void {
    if (this.state === "exited") return;
    this.state = "exited";
    this.cancelTimer();
    this.output.flush();
    this.sendStatus();
    scope.postMessage({ type: "exit", message });
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
    this.channel.port2.postMessage(0);
  }

  private readonly isRunning = (): boolean => this.state === "running";

  private turn(): void {
    this.scheduled = false;
    if (this.state !== "running" || this.timer !== null) return;
    let now: number;
    try {
      now = this.turns.run(TURN_MS, this.isRunning);
    } catch (e) {
      this.finish(`the machine failed: ${e instanceof Error ? e.message : String(e)}`);
      return;
    }
    this.output.flush();
    if (now - this.lastStatusAt >= STATUS_EVERY_MS) this.sendStatus();
    if (this.state !== "running") return;
    if (this.board.allWaiting) {
      const delay = Math.min(MAX_SLEEP_MS, this.board.nextDeadlineMs() - performance.now());
      if (delay > 0) {
        this.timer = setTimeout(() => {
          this.timer = null;
          this.turn();
        }, delay);
        return;
      }
    }
    this.schedule();
  }

  sendStatus(): void {
    const now = performance.now();
    this.lastStatusAt = now;
    let instret = 0;
    for (const n of this.board.stats().instret) instret += n;
    scope.postMessage({
      type: "status",
      status: {
        state: this.state,
        instructionsPerSecond: this.turns.rate,
        instret,
        uptimeMs: now - this.startedAt,
      },
    });
  }
}

let machine: TabMachine | null = null;

async function handle(message: PageToMachine): Promise<void> {
  switch (message.type) {
    case "boot": {
      if (machine) throw new Error("this tab's machine is already built");
      const state = message.state ? await readState(message.state) : undefined;
      machine = new TabMachine(message.spec, message.files, state);
      machine.run();
      return;
    }
    case "save": {
      if (!machine) throw new Error("there is no machine to save");
      const state = await machine.save(message.wholeDisk);
      scope.postMessage({ type: "saved", state });
      return;
    }
    case "input":
      machine?.input(message.bytes);
      return;
    case "pause":
      machine?.pause();
      return;
    case "resume":
      machine?.run();
      return;
  }
}

scope.onmessage = (event) => {
  handle(event.data).catch((e) =>
    scope.postMessage({ type: "error", message: e instanceof Error ? e.message : String(e) }),
  );
};
