// The Node side of a board's remote harts: one worker thread per hart (hart-worker.ts), states moved in and
// out through messages while a hart is parked, and the doorbell through which the harts ask this thread to
// perform their device accesses, listened to with Atomics.waitAsync so a sleeping event loop wakes for it.

import { join } from "node:path";
import { Worker } from "node:worker_threads";
import type { RiscvVirtBoard } from "../../machine/index.ts";
import type { HartRunMessage, HartWorkerReply } from "./hart-worker.ts";

/**
 * The worker's entry: in the start-up bundle (scripts/bundle.ts), or the .ts file imported through tsx's API
 * (a worker's --import of tsx's loader does not reach its entry in Node 20).
 */
function workerEntry(): { code: string; eval: boolean } {
  const bundleDir = process.env.TSVM_BUNDLE_DIR;
  if (bundleDir) return { code: join(bundleDir, "src/engines/riscv/hart-worker.mjs"), eval: false };
  const api = JSON.stringify(
    new URL("../../../node_modules/tsx/dist/esm/api/index.mjs", import.meta.url).href,
  );
  const entry = JSON.stringify(new URL("./hart-worker.ts", import.meta.url).href);
  return { code: `import(${api}).then((tsx) => tsx.tsImport(${entry}, ${entry}))`, eval: true };
}

/** Atomics.waitAsync (ES2024; Node 16+), which this project's TypeScript library does not declare yet. */
const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      index: number,
      value: number,
    ): { async: false; value: string } | { async: true; value: Promise<string> };
  }
).waitAsync;

export class HartThreads {
  private readonly workers: Worker[] = [];
  /** Per worker, the resolver of the park in progress. */
  private readonly parkWaiters: Array<(() => void) | null> = [];
  private running = false;
  private closed = false;

  /**
   * @param onDoorbell called on the event loop after the harts' posted device accesses were performed
   * @param onError a worker failed (the machine cannot go on)
   */
  constructor(
    private readonly board: RiscvVirtBoard,
    private readonly onDoorbell: () => void,
    private readonly onError: (message: string) => void,
  ) {
    const remote = board.remote;
    if (remote === null) throw new Error("this board runs every hart itself");
    const entry = workerEntry();
    for (let i = 0; i < remote.harts.length; i++) {
      const worker = new Worker(entry.code, { eval: entry.eval, workerData: board.awaySetup(i) });
      worker.on("message", (reply: HartWorkerReply) => this.reply(i, reply));
      worker.on("error", (e) => this.fail(`hart ${i + 1}'s thread failed: ${e.message}`));
      worker.unref();
      this.workers.push(worker);
      this.parkWaiters.push(null);
    }
    this.listen(Atomics.load(remote.doorbell, 0));
  }

  /** Starts every remote hart from its shell's state. */
  run(): void {
    const remote = this.board.remote!;
    if (this.running || this.closed) return;
    this.running = true;
    for (let i = 0; i < this.workers.length; i++) {
      const r = remote.harts[i]!;
      r.link.requestPark(false);
      const message: HartRunMessage = { state: r.stateToRun() };
      this.workers[i]!.postMessage(message);
    }
  }

  /** Stops every remote hart at an instruction boundary; their states are in their shells after. */
  async park(): Promise<void> {
    if (!this.running) return;
    const remote = this.board.remote!;
    const parked = this.workers.map(
      (_, i) =>
        new Promise<void>((resolve) => {
          this.parkWaiters[i] = resolve;
        }),
    );
    for (const r of remote.harts) r.link.requestPark(true);
    // The workers are unreferenced (an engine nobody stopped must not keep a process alive), but their
    // replies must: nothing else may be pending while a pause waits for them.
    for (const w of this.workers) w.ref();
    try {
      await Promise.all(parked);
    } finally {
      for (const w of this.workers) w.unref();
    }
    this.running = false;
  }

  async close(): Promise<void> {
    this.closed = true;
    // Ends the pending waitAsync, which would otherwise outlive the machine.
    const doorbell = this.board.remote!.doorbell;
    Atomics.add(doorbell, 0, 1);
    Atomics.notify(doorbell, 0);
    for (const resolve of this.parkWaiters) resolve?.();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }

  private reply(i: number, reply: HartWorkerReply): void {
    if (reply.kind === "error") {
      this.fail(`hart ${i + 1} failed: ${reply.message}`);
      return;
    }
    this.board.remote!.harts[i]!.adopt(reply.state);
    const resolve = this.parkWaiters[i];
    this.parkWaiters[i] = null;
    resolve?.();
  }

  private fail(message: string): void {
    if (this.closed) return;
    for (const resolve of this.parkWaiters) resolve?.();
    this.onError(message);
  }

  /** Waits (without blocking the event loop) for the doorbell to move from `seen`, serves, and waits again. */
  private listen(seen: number): void {
    if (this.closed) return;
    const doorbell = this.board.remote!.doorbell;
    const wait = waitAsync(doorbell, 0, seen);
    const again = (): void => {
      if (this.closed) return;
      const now = Atomics.load(doorbell, 0);
      this.board.serveRemoteHarts();
      this.onDoorbell();
      this.listen(now);
    };
    if (wait.async) void wait.value.then(again);
    else setImmediate(again);
  }
}
