// Long-running requests as Compute Engine operations (compute/docs/reference/rest/v1/zoneOperations):
// PENDING → RUNNING → DONE, with progress and, when it failed, the error; waited on by id.

import { randomBytes } from "node:crypto";
import { HypervisorError } from "./hypervisor-error.ts";

export type OperationType =
  | "insert"
  | "start"
  | "stop"
  | "reset"
  | "suspend"
  | "resume"
  | "delete"
  | "setMachineType"
  | "repair";

export type OperationStatus = "PENDING" | "RUNNING" | "DONE";

export interface OperationView {
  readonly kind: "tsvm#operation";
  readonly id: string;
  readonly operationType: OperationType;
  readonly targetName: string;
  readonly status: OperationStatus;
  /** 0..100; informational, as on Compute Engine. */
  readonly progress: number;
  readonly statusMessage: string;
  readonly insertTime: string;
  readonly startTime: string | null;
  readonly endTime: string | null;
  /** Set when the operation failed; `code` is the HypervisorError code. */
  readonly error: { readonly code: string; readonly message: string } | null;
}

/** The mutable operation behind a view; only the registry and the code running it touch it. */
export class Operation {
  status: OperationStatus = "PENDING";
  progress = 0;
  statusMessage = "";
  startTime: string | null = null;
  endTime: string | null = null;
  error: { code: string; message: string } | null = null;
  private readonly done: Promise<void>;
  private markDone!: () => void;

  constructor(
    readonly id: string,
    readonly operationType: OperationType,
    readonly targetName: string,
    readonly insertTime: string,
  ) {
    this.done = new Promise((resolve) => {
      this.markDone = resolve;
    });
  }

  view(): OperationView {
    return {
      kind: "tsvm#operation",
      id: this.id,
      operationType: this.operationType,
      targetName: this.targetName,
      status: this.status,
      progress: this.progress,
      statusMessage: this.statusMessage,
      insertTime: this.insertTime,
      startTime: this.startTime,
      endTime: this.endTime,
      error: this.error,
    };
  }

  /** Resolves when the operation is DONE, or after `timeoutMs`, whichever is first. */
  async waitDone(timeoutMs: number): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.done,
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
  }

  finish(error: unknown, now: string): void {
    if (this.status === "DONE") return;
    this.status = "DONE";
    this.progress = 100;
    this.endTime = now;
    if (error !== undefined) {
      this.error =
        error instanceof HypervisorError
          ? { code: error.code, message: error.message }
          : { code: "internal", message: `internal error: ${(error as Error)?.message ?? String(error)}` };
    }
    this.markDone();
  }
}

export class OperationNotFoundError extends HypervisorError {
  constructor(id: string) {
    super("not-found", `the operation '${id.slice(0, 80)}' was not found`);
  }
}

/** Finished operations kept for `get` and `wait`; the oldest go first. */
const MAX_KEPT_OPERATIONS = 1000;

export class OperationRegistry {
  private readonly ops = new Map<string, Operation>();

  constructor(private readonly now: () => Date = () => new Date()) {}

  create(type: OperationType, targetName: string): Operation {
    const id = `operation-${Date.now()}-${randomBytes(4).toString("hex")}`;
    const op = new Operation(id, type, targetName, this.now().toISOString());
    this.ops.set(id, op);
    if (this.ops.size > MAX_KEPT_OPERATIONS) {
      for (const [key, old] of this.ops) {
        if (this.ops.size <= MAX_KEPT_OPERATIONS) break;
        if (old.status === "DONE") this.ops.delete(key);
      }
    }
    return op;
  }

  get(id: string): Operation {
    const op = this.ops.get(id);
    if (!op) throw new OperationNotFoundError(id);
    return op;
  }

  /** The most recent operations first. */
  list(limit = 100): OperationView[] {
    return [...this.ops.values()]
      .reverse()
      .slice(0, limit)
      .map((o) => o.view());
  }

  /** Runs `work` as the operation: RUNNING now, DONE when it settles (with its error, if any). */
  async run(op: Operation, work: (op: Operation) => Promise<void>): Promise<void> {
    op.status = "RUNNING";
    op.startTime = this.now().toISOString();
    try {
      await work(op);
      op.finish(undefined, this.now().toISOString());
    } catch (e) {
      op.finish(e, this.now().toISOString());
    }
  }

  nowIso(): string {
    return this.now().toISOString();
  }
}
