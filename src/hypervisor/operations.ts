// Long-running requests as Compute Engine operations (compute/docs/reference/rest/v1/zoneOperations):
// PENDING → RUNNING → DONE, with progress and, when it failed, the error; waited on by id. Each operation
// is also journaled to its own file under $TSVM_HOME/operations/, so that a restarted daemon still knows
// every operation (Compute Engine never loses an operation record) and can say truthfully how it ended.

import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rm, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  type MigrationReport,
  type Operation as OperationShape,
  Operation as OperationSchema,
  type OperationStatus,
  type OperationType,
} from "../api/schemas/operation-schemas.ts";
import { schemaCheck } from "../api/schemas/schema-check.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { writeFileAtomic } from "./store.ts";

export type { OperationStatus, OperationType };

/** An operation as the API shows it and the journal records it (the schema Operation). */
export type OperationView = OperationShape;

/** The mutable operation behind a view; only the registry and the code running it touch it. */
export class Operation {
  status: OperationStatus = "PENDING";
  progress = 0;
  statusMessage = "";
  startTime: string | null = null;
  endTime: string | null = null;
  error: { code: string; message: string } | null = null;
  /** A move's figures, once it has them. */
  migration: MigrationReport | undefined;
  /** The journal's writes of this operation, in order (a later view must not be overtaken by an earlier). */
  saving: Promise<void> = Promise.resolve();
  /** Why the DONE record is not on disk yet (it is retried); until it is, the operation shows as RUNNING. */
  unrecorded: string | null = null;
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

  /** An operation as a journal recorded it (a DONE one is settled at once). */
  static fromView(v: OperationView): Operation {
    const op = new Operation(v.id, v.operationType, v.targetName, v.insertTime);
    op.status = v.status;
    op.progress = v.progress;
    op.statusMessage = v.statusMessage;
    op.startTime = v.startTime;
    op.endTime = v.endTime;
    op.error = v.error ? { ...v.error } : null;
    if (v.migration) op.migration = { ...v.migration };
    if (op.status === "DONE") op.markDone();
    return op;
  }

  /**
   * The operation as the API shows it. A DONE whose record could not be written has not happened yet as far
   * as anyone can tell (a restarted daemon would not know it): it shows RUNNING, saying why.
   */
  view(): OperationView {
    const v = this.recordView();
    if (v.status !== "DONE" || this.unrecorded === null) return v;
    const outcome = v.error ? `failed (${v.error.code}: ${v.error.message})` : "succeeded";
    return {
      ...v,
      status: "RUNNING",
      endTime: null,
      error: null,
      statusMessage: `the operation ${outcome}, but its record could not be written (${this.unrecorded}); retrying`,
    };
  }

  /** The operation as it is journaled. */
  recordView(): OperationView {
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
      ...(this.migration ? { migration: this.migration } : {}),
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

  /** Marks the operation DONE (with `error` when it failed) without waking its waiters yet. */
  complete(error: unknown, now: string): void {
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
  }

  /** Wakes the waiters of a DONE operation (once its record is on disk). */
  notifyDone(): void {
    if (this.status === "DONE" && this.unrecorded === null) this.markDone();
  }
}

export class OperationNotFoundError extends HypervisorError {
  constructor(id: string) {
    super("not-found", `the operation '${id.slice(0, 80)}' was not found`);
  }
}

/** Operations kept for `get` and `wait` (in memory and on disk); the oldest finished ones go first. */
export const MAX_KEPT_OPERATIONS = 1000;
/** A finished operation older than this is forgotten even when fewer than MAX_KEPT_OPERATIONS exist. */
export const MAX_OPERATION_AGE_MS = 7 * 24 * 3600_000;
/** How often a DONE record that could not be written (a full disk) is tried again. */
const RECORD_RETRY_MS = 2000;

/** Where operations are recorded durably; the registry works without one (tests, tools). */
export interface OperationJournal {
  save(view: OperationView): Promise<void>;
  remove(id: string): Promise<void>;
}

/** A journal as opened: where to write, what it held, and the records it could not read (left as they are). */
export interface OpenedJournal {
  readonly journal: OperationJournal;
  readonly views: OperationView[];
  readonly unreadable: string[];
}

export const OPERATION_ID_PATTERN = /^operation-\d{1,16}-[0-9a-f]{8}$/;
/** An operation record is a few hundred bytes; a bigger file is not one of ours and is not read. */
const MAX_OPERATION_FILE_BYTES = 64 * 1024;
const TEMP_PREFIX = ".tmp-";

/** One file per operation, `<id>.json`, each written atomically (store.ts writeFileAtomic). */
export class FileOperationJournal implements OperationJournal {
  private constructor(readonly dir: string) {}

  /**
   * Opens (creating) the journal directory, removes temp files a crash left, and reads every record. A file
   * that is not a valid record is reported in `unreadable` and left as it is (never overwritten).
   */
  static async open(dir: string): Promise<OpenedJournal & { journal: FileOperationJournal }> {
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const views: OperationView[] = [];
    const unreadable: string[] = [];
    for (const entry of await readdir(dir)) {
      const path = join(dir, entry);
      if (entry.startsWith(TEMP_PREFIX)) {
        await rm(path, { recursive: true, force: true });
        continue;
      }
      const id = entry.endsWith(".json") ? entry.slice(0, -5) : "";
      if (!OPERATION_ID_PATTERN.test(id)) continue;
      try {
        if ((await stat(path)).size > MAX_OPERATION_FILE_BYTES) throw new Error("too large");
        views.push(parseOperationView(JSON.parse(await readFile(path, "utf8")), id));
      } catch (e) {
        unreadable.push(`${path}: ${(e as Error).message}`);
      }
    }
    return { journal: new FileOperationJournal(dir), views: inCreationOrder(views), unreadable };
  }

  save(view: OperationView): Promise<void> {
    return writeFileAtomic(join(this.dir, `${view.id}.json`), `${JSON.stringify(view)}\n`, 0o600);
  }

  async remove(id: string): Promise<void> {
    await rm(join(this.dir, `${id}.json`), { force: true });
  }
}

/** Operations oldest first, as OperationRegistry.load takes them. */
export function inCreationOrder(views: OperationView[]): OperationView[] {
  return views.sort((a, b) => operationIdMs(a.id) - operationIdMs(b.id) || a.id.localeCompare(b.id));
}

/** The creation time in an operation id: unique and increasing within one daemon's life. */
function operationIdMs(id: string): number {
  return Number(id.split("-")[1]);
}

const checkOperation = schemaCheck(OperationSchema);

/** Validates a journaled record against the schema; throws naming the first problem. */
export function parseOperationView(raw: unknown, id: string): OperationView {
  const result = checkOperation(raw);
  if (!result.ok)
    throw new Error(`the field '${result.problem.field || "(top level)"}' ${result.problem.text}`);
  if (result.value.id !== id) throw new Error("the field 'id' is not the file's name");
  return result.value;
}

export interface OperationRegistryOptions {
  readonly journal?: OperationJournal;
  /** MAX_KEPT_OPERATIONS unless given (tests use fewer). */
  readonly maxKept?: number;
  readonly log?: (line: string) => void;
}

export class OperationRegistry {
  private readonly ops = new Map<string, Operation>();
  private readonly journal: OperationJournal | undefined;
  private readonly maxKept: number;
  private readonly log: (line: string) => void;
  /** The millisecond in the last id: ids increase within a daemon, so sorting them sorts by creation. */
  private lastIdMs = 0;

  constructor(
    private readonly now: () => Date = () => new Date(),
    options: OperationRegistryOptions = {},
  ) {
    this.journal = options.journal;
    this.maxKept = options.maxKept ?? MAX_KEPT_OPERATIONS;
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  /**
   * Takes in the operations a journal recorded (oldest first) and returns those that were not DONE: a
   * daemon died while they were pending or running, and the caller settles them (see `settle`).
   */
  load(views: readonly OperationView[]): Operation[] {
    const unfinished: Operation[] = [];
    for (const v of views) {
      const op = Operation.fromView(v);
      this.ops.set(op.id, op);
      this.lastIdMs = Math.max(this.lastIdMs, operationIdMs(op.id));
      if (op.status !== "DONE") unfinished.push(op);
    }
    this.prune();
    return unfinished;
  }

  create(type: OperationType, targetName: string): Operation {
    this.lastIdMs = Math.max(Date.now(), this.lastIdMs + 1);
    const id = `operation-${this.lastIdMs}-${randomBytes(4).toString("hex")}`;
    const op = new Operation(id, type, targetName, this.now().toISOString());
    this.ops.set(id, op);
    // A PENDING record that cannot be written is not fatal: run() refuses the work when RUNNING cannot be.
    this.persist(op).catch((e: Error) => this.log(e.message));
    this.prune();
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

  /**
   * Runs `work` as the operation: RUNNING now, DONE when it settles (with its error, if any). With
   * `mustRecord`, the work is done only once the RUNNING record is on disk: an action whose record cannot be
   * written (a full disk) fails without happening, so a restarted daemon never meets an effect it has no
   * operation for.
   */
  async run(op: Operation, work: (op: Operation) => Promise<void>, mustRecord = false): Promise<void> {
    op.status = "RUNNING";
    op.startTime = this.now().toISOString();
    let failure: unknown;
    try {
      const saved = this.persist(op);
      if (mustRecord)
        await saved.catch((e: Error) => {
          throw new HypervisorError("record-write-failed", `${e.message}; nothing was done`);
        });
      else saved.catch((e: Error) => this.log(e.message));
      await work(op);
    } catch (e) {
      failure = e ?? new Error("unknown failure");
    }
    await this.settle(op, failure);
  }

  /**
   * Marks `op` DONE (failed with `error`, when given) and wakes its waiters once the journal holds the final
   * record, so that a waiter told DONE is never contradicted by a restarted daemon.
   */
  async settle(op: Operation, error: unknown, statusMessage?: string): Promise<void> {
    if (op.status === "DONE") return;
    op.complete(error, this.now().toISOString());
    if (statusMessage !== undefined) op.statusMessage = statusMessage;
    try {
      await this.persist(op);
    } catch (e) {
      // Retried in the background: the VM's queue must go on (a delete is how a full disk gets space back).
      op.unrecorded = (e as Error).message;
      this.log(`${op.unrecorded} as DONE; retrying every ${RECORD_RETRY_MS / 1000} s`);
      this.retryRecord(op);
      return;
    }
    op.notifyDone();
  }

  private retryRecord(op: Operation): void {
    setTimeout(() => {
      this.persist(op).then(
        () => {
          op.unrecorded = null;
          this.log(`recorded operation ${op.id} as DONE`);
          op.notifyDone();
        },
        (e: Error) => {
          op.unrecorded = e.message;
          this.retryRecord(op);
        },
      );
    }, RECORD_RETRY_MS).unref();
  }

  nowIso(): string {
    return this.now().toISOString();
  }

  /**
   * Queues a write of the operation's current record behind its earlier ones; the promise returned rejects
   * when this write fails (RecordWriteError naming the file), the queue goes on.
   */
  private persist(op: Operation): Promise<void> {
    const journal = this.journal;
    if (!journal) return Promise.resolve();
    const view = op.recordView();
    const write = op.saving.then(() =>
      journal.save(view).catch((e: Error) => {
        throw new HypervisorError(
          "record-write-failed",
          `could not record operation ${op.id} (${e.message})`,
        );
      }),
    );
    // Later writes wait for this one, whatever its outcome.
    op.saving = write.catch(() => {});
    return write;
  }

  /** Forgets finished operations beyond the count kept or older than MAX_OPERATION_AGE_MS, oldest first. */
  private prune(): void {
    const oldest = this.now().getTime() - MAX_OPERATION_AGE_MS;
    for (const [id, op] of this.ops) {
      const expired = op.endTime !== null && Date.parse(op.endTime) < oldest;
      if (this.ops.size <= this.maxKept && !expired) continue;
      if (op.status !== "DONE") continue;
      this.ops.delete(id);
      const journal = this.journal;
      if (journal)
        op.saving = op.saving.then(() =>
          journal.remove(id).catch((e: Error) => this.log(`could not forget operation ${id}: ${e.message}`)),
        );
    }
  }
}
