// A storm of random lifecycle calls from many API clients on a few VMs through the real daemon (its REST
// API on the Unix socket), and the invariants it must keep; shared by api-storm.test.ts (the invariants)
// and bench/api-storm.ts (calls per second). VMs host the counting stand-in guest: the storm tests the
// hypervisor's bookkeeping, not an engine.
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { availableParallelism, tmpdir, totalmem } from "node:os";
import { dirname, join } from "node:path";
import { performance } from "node:perf_hooks";
import { fileURLToPath } from "node:url";
import { ApiClient, ApiError } from "../../src/api/client.ts";
import type { Instance, InstanceStatus, Operation, VmEvent } from "../../src/api/types.ts";
import { canTransition, STABLE_STATUSES } from "../../src/hypervisor/lifecycle.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

/** Statuses in which a VM holds its vCPUs and memory, as docs/hypervisor.md "Resources" says (restated, not
 * imported from resources.ts, so that the check does not take its answer from the code it checks). */
const HOLDS_RESOURCES: ReadonlySet<InstanceStatus> = new Set([
  "PROVISIONING",
  "STAGING",
  "RUNNING",
  "STOPPING",
  "SUSPENDING",
  "REPAIRING",
]);

/** The 4xx reasons the API documents for the calls the storm makes; anything else is a violation. */
const DOCUMENTED_REFUSALS: ReadonlyMap<string, number> = new Map([
  ["not-found", 404],
  ["already-exists", 409],
  ["illegal-action", 409],
  ["capacity-exceeded", 409],
]);

/**
 * Why an operation may legitimately fail in a storm: it was queued and found the VM changed by its turn, or
 * (reset, suspend) the storm killed the VMM it was talking to.
 */
function expectedOperationError(type: string, code: string): boolean {
  if (DOCUMENTED_REFUSALS.has(code)) return true;
  if (type === "reset") return code === "vmm-gone" || code === "not-running";
  return type === "suspend" && (code === "suspend-failed" || code === "not-running");
}

/** The smallest guests the board allows, so that ten fit anywhere; two sizes make admission refuse some. */
const MACHINE_TYPES = ["custom-1-32", "custom-2-32", "custom-1-64"] as const;
/** What the daemon offers guests, so that not every VM can run at once (admission is exercised). */
const GUEST_VCPUS = 12;
const GUEST_MEMORY_MIB = 320;

/** mulberry32: a small seeded PRNG, so that a storm's calls can be replayed from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** A daemon (bin/tsvm-daemon.ts, a child of ours) on a temp TSVM_HOME configured for the counting guest. */
export class StormDaemon {
  private constructor(
    readonly home: string,
    readonly client: ApiClient,
    private readonly child: ChildProcess,
    private readonly stderr: string[],
  ) {}

  static async start(): Promise<StormDaemon> {
    const home = await mkdtemp(join(tmpdir(), "tsvm-storm-"));
    await writeFile(join(home, "disk.raw"), Buffer.alloc(4096));
    await writeFile(
      join(home, "config.json"),
      JSON.stringify({
        defaultEngine: "fixture",
        engines: { fixture: join(root, "src/hypervisor/fixtures/counting-guest.ts") },
        images: { default: join(home, "disk.raw") },
        stopTimeoutMs: 3000,
        capacity: {
          cpuOvercommit: GUEST_VCPUS / availableParallelism(),
          memoryReserveMiB: Math.floor(totalmem() / 1048576) - GUEST_MEMORY_MIB,
        },
      }),
    );
    const child = spawn(
      process.execPath,
      [
        "--import",
        `file://${join(root, "node_modules/tsx/dist/loader.mjs")}`,
        join(root, "bin/tsvm-daemon.ts"),
      ],
      { env: { ...process.env, TSVM_HOME: home }, stdio: ["ignore", "ignore", "pipe"] },
    );
    const stderr: string[] = [];
    child.stderr?.setEncoding("utf8").on("data", (c: string) => stderr.push(c));
    const daemon = new StormDaemon(home, ApiClient.forDataDir(home), child, stderr);
    const deadline = Date.now() + 60_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`the daemon exited at start: ${stderr.join("")}`);
      try {
        await daemon.client.getHost();
        return daemon;
      } catch {
        if (Date.now() > deadline) throw new Error(`the daemon did not answer in 60 s: ${stderr.join("")}`);
        await new Promise((r) => setTimeout(r, 100));
      }
    }
  }

  get log(): string {
    return this.stderr.join("");
  }

  /** Processes whose command line names this TSVM_HOME: the VMMs the daemon started (the daemon's does not). */
  vmmProcesses(): number[] {
    const pids: number[] = [];
    for (const entry of readdirSync("/proc")) {
      if (!/^\d+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/cmdline`, "utf8").includes(this.home)) pids.push(Number(entry));
      } catch {
        // gone meanwhile
      }
    }
    return pids;
  }

  /** Stops the daemon, kills any VMM it left (ours: they name our temp home) and removes the home. */
  async stop(): Promise<void> {
    if (this.child.exitCode === null) {
      const exited = new Promise((r) => this.child.once("exit", r));
      this.child.kill("SIGTERM");
      const timer = setTimeout(() => this.child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    }
    for (const pid of this.vmmProcesses()) {
      try {
        process.kill(pid, "SIGKILL");
      } catch {
        // gone meanwhile
      }
    }
    await rm(this.home, { recursive: true, force: true });
  }
}

export type CallKind =
  | "insert"
  | "start"
  | "stop"
  | "suspend"
  | "resume"
  | "reset"
  | "delete"
  | "setMachineType"
  | "get"
  | "list"
  | "host"
  | "wait"
  | "crash";

/** Lifecycle calls (they return an operation) and reads; weights of the random choice. */
const CALL_WEIGHTS: ReadonlyArray<[CallKind, number]> = [
  ["insert", 6],
  ["start", 12],
  ["stop", 10],
  ["suspend", 8],
  ["resume", 8],
  ["reset", 6],
  ["delete", 2],
  ["setMachineType", 5],
  ["get", 14],
  ["list", 8],
  ["host", 4],
  ["wait", 8],
  // A VMM killed with SIGKILL (a crashed engine): its VM is repaired while the other calls go on.
  ["crash", 2],
];
const LIFECYCLE: ReadonlySet<CallKind> = new Set([
  "insert",
  "start",
  "stop",
  "suspend",
  "resume",
  "reset",
  "delete",
  "setMachineType",
]);

export interface StormOptions {
  readonly seed: number;
  readonly clients: number;
  readonly calls: number;
  readonly vms: number;
  /** Only lifecycle calls, and no client waits for its operations (the bench's admission rate). */
  readonly lifecycleOnly?: boolean;
}

export interface StormResult {
  /** Every operation a call returned. */
  readonly operationIds: string[];
  /** Answers that were neither a success nor a documented refusal. */
  readonly badAnswers: string[];
  /** Host usage answers above the host's capacity. */
  readonly overbooked: string[];
  /** Lists that named a VM twice. */
  readonly duplicateLists: string[];
  /** Per kind: answered calls and their latencies (ms). */
  readonly latencies: Map<CallKind, number[]>;
  /** From the first call sent to the last answer received. */
  readonly elapsedMs: number;
}

/**
 * The storm's VM names. VM 0 is a "slowsave-" guest (counting-guest.ts: it takes 3 s to write its state),
 * so that suspends last long enough for the injected crashes to land in them.
 */
export const vmName = (i: number) => (i === 0 ? "slowsave-0" : `storm-${i}`);

function pickCall(random: () => number, lifecycleOnly: boolean): CallKind {
  const weights = lifecycleOnly ? CALL_WEIGHTS.filter(([kind]) => LIFECYCLE.has(kind)) : CALL_WEIGHTS;
  const total = weights.reduce((s, [, w]) => s + w, 0);
  let x = random() * total;
  for (const [kind, w] of weights) {
    x -= w;
    if (x < 0) return kind;
  }
  return "get";
}

export function isLifecycle(kind: CallKind): boolean {
  return LIFECYCLE.has(kind);
}

/** Inserts the storm's VMs and waits until each runs. */
export async function createStormVms(client: ApiClient, vms: number): Promise<void> {
  const ops = await Promise.all(
    Array.from({ length: vms }, (_, i) =>
      client.insertInstance({ name: vmName(i), machineType: MACHINE_TYPES[0] }),
    ),
  );
  for (const op of ops) {
    const done = await client.waitUntilDone(op.id);
    if (done.error) throw new Error(`setting up ${op.targetName} failed: ${done.error.message}`);
  }
}

/**
 * `clients` concurrent clients share `calls` random calls. Each client draws from its own seeded stream
 * (seed + client index), so the calls each client makes are the same in every run of one seed; only their
 * interleaving differs.
 */
export async function runStorm(daemon: StormDaemon, options: StormOptions): Promise<StormResult> {
  const { client } = daemon;
  const overbooked: string[] = [];
  const operationIds: string[] = [];
  const badAnswers: string[] = [];
  const duplicateLists: string[] = [];
  const latencies = new Map<CallKind, number[]>();
  let remaining = options.calls;
  const one = async (
    random: () => number,
    kind: CallKind,
    name: string,
    own: string | undefined,
  ): Promise<string | undefined> => {
    const began = performance.now();
    const what = `${kind} ${name}`;
    try {
      let op: Operation | undefined;
      switch (kind) {
        case "insert":
          op = await client.insertInstance({
            name,
            machineType: MACHINE_TYPES[Math.floor(random() * MACHINE_TYPES.length)]!,
          });
          break;
        case "start":
        case "stop":
        case "suspend":
        case "resume":
        case "reset":
          op = await client.instanceAction(name, kind);
          break;
        case "delete":
          op = await client.deleteInstance(name);
          break;
        case "setMachineType":
          op = await client.setMachineType(name, MACHINE_TYPES[Math.floor(random() * MACHINE_TYPES.length)]!);
          break;
        case "get":
          await client.getInstance(name);
          break;
        case "list": {
          const list = await client.listInstances();
          const names = list.items.map((vm) => vm.name);
          if (new Set(names).size !== names.length) duplicateLists.push(names.join(","));
          break;
        }
        case "host": {
          const host = await client.getHost();
          if (host.vcpusUsed > host.vcpus || host.memoryUsedMiB > host.memoryMiB)
            overbooked.push(
              `${host.vcpusUsed}/${host.vcpus} vCPUs, ${host.memoryUsedMiB}/${host.memoryMiB} MiB`,
            );
          break;
        }
        case "crash": {
          // A VM in the middle of a transition is the more interesting victim, when there is one.
          const { items } = await client.listInstances();
          const moving = items.filter((vm) => vm.vmmPid !== null && vm.status !== "RUNNING");
          const victim =
            moving.length > 0
              ? moving[Math.floor(random() * moving.length)]!
              : items.find((vm) => vm.name === name);
          const pid = victim?.vmmPid ?? null;
          if (pid !== null && daemon.vmmProcesses().includes(pid)) process.kill(pid, "SIGKILL");
          break;
        }
        case "wait": {
          // Mostly the client's own last operation, until it is done (as the CLI waits); else anyone's, briefly.
          const id = own && random() < 0.8 ? own : operationIds[Math.floor(random() * operationIds.length)];
          if (id === own && id) await client.waitUntilDone(id);
          else if (id) await client.waitOperation(id, Math.floor(random() * 3));
          else await client.listOperations(10);
          break;
        }
      }
      if (op) operationIds.push(op.id);
      return op?.id;
    } catch (e) {
      if (!(e instanceof ApiError) || DOCUMENTED_REFUSALS.get(e.reason) !== e.status)
        badAnswers.push(
          `${what}: ${e instanceof ApiError ? `HTTP ${e.status} ${e.reason}` : "exception"}: ${(e as Error).message}`,
        );
      return undefined;
    } finally {
      let list = latencies.get(kind);
      if (!list) latencies.set(kind, (list = []));
      list.push(performance.now() - began);
    }
  };
  const began = performance.now();
  await Promise.all(
    Array.from({ length: options.clients }, async (_, c) => {
      const random = seededRandom(options.seed + c);
      let own: string | undefined;
      let waitNext = false;
      while (remaining > 0) {
        remaining--;
        const kind = waitNext ? "wait" : pickCall(random, options.lifecycleOnly ?? false);
        const name = vmName(Math.floor(random() * options.vms));
        const id = await one(random, kind, name, own);
        if (id) own = id;
        // Half the time a client waits for what it asked before asking more, as the CLI does.
        waitNext = id !== undefined && random() < 0.5 && !options.lifecycleOnly;
      }
    }),
  );
  return {
    operationIds,
    badAnswers,
    duplicateLists,
    overbooked,
    latencies,
    elapsedMs: performance.now() - began,
  };
}

/**
 * Waits until the daemon is quiescent: every operation it lists is DONE and every VM is in a stable status
 * (a repair it started itself is an operation too). Throws after `timeoutMs`.
 */
export async function waitQuiescent(client: ApiClient, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const [ops, vms] = await Promise.all([client.listOperations(1000), client.listInstances()]);
    const busyOps = ops.items.filter((o) => o.status !== "DONE");
    const busyVms = vms.items.filter((vm) => !STABLE_STATUSES.includes(vm.status));
    if (busyOps.length === 0 && busyVms.length === 0) return;
    if (Date.now() > deadline)
      throw new Error(
        `not quiescent after ${timeoutMs} ms: operations ${busyOps.map((o) => `${o.id} ${o.operationType} ${o.targetName} ${o.status}`).join("; ")}; VMs ${busyVms.map((vm) => `${vm.name} ${vm.status}`).join("; ")}`,
      );
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Follows the event stream from the first event; `stop()` ends the subscription. */
export class EventRecorder {
  readonly events: VmEvent[] = [];
  private readonly abort = new AbortController();
  private readonly following: Promise<void>;

  constructor(client: ApiClient) {
    this.following = client.watchEvents(0, (e) => this.events.push(e), this.abort.signal);
  }

  /** Waits until the recorder has seen event `seq` (or `timeoutMs` passed). */
  async caughtUp(seq: number, timeoutMs = 10_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while ((this.events.at(-1)?.seq ?? 0) < seq && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 50));
  }

  async stop(): Promise<void> {
    this.abort.abort();
    await this.following;
  }
}

/**
 * Every invariant of a quiescent daemon after a storm; returns the violations (none: all kept).
 * - every operation returned by a call, and every one the daemon lists, is DONE, failed only for a reason a
 *   queued request can meet (the VM changed before its turn);
 * - each VM's GET agrees with the list, names are unique, and the VM's last event says its status;
 * - the event stream's seqs run 1, 2, 3… with no gap, and each VM's events replay as a path legal in the
 *   transition table ending in its status (a deleted VM's path ends with its deletion);
 * - host usage equals the vCPUs/memory of the VMs in statuses that hold resources;
 * - the VMM processes alive are exactly those of the RUNNING VMs.
 */
export async function checkInvariants(
  daemon: StormDaemon,
  result: StormResult,
  recorder: EventRecorder,
): Promise<string[]> {
  const { client } = daemon;
  const violations: string[] = [...result.badAnswers];
  for (const names of result.duplicateLists) violations.push(`a list named a VM twice: ${names}`);
  for (const usage of result.overbooked) violations.push(`the host was overbooked: ${usage}`);

  const operations: Operation[] = [];
  for (const id of result.operationIds) {
    const op = await client.getOperation(id);
    operations.push(op);
    if (op.status !== "DONE") violations.push(`operation ${id} (${op.operationType}) is ${op.status}`);
    else if (op.error && !expectedOperationError(op.operationType, op.error.code))
      violations.push(
        `operation ${id} (${op.operationType} ${op.targetName}) failed: ${op.error.code}: ${op.error.message}`,
      );
  }
  for (const op of (await client.listOperations(1000)).items)
    if (op.status !== "DONE")
      violations.push(`listed operation ${op.id} (${op.operationType}) is ${op.status}`);
    else if (op.operationType === "repair" && op.error)
      violations.push(`repair ${op.id} of ${op.targetName} failed: ${op.error.code}: ${op.error.message}`);

  const list = await client.listInstances();
  const names = list.items.map((vm) => vm.name);
  if (new Set(names).size !== names.length) violations.push(`the final list names a VM twice: ${names}`);
  const vms = new Map<string, Instance>();
  for (const listed of list.items) {
    const vm = await client.getInstance(listed.name);
    vms.set(vm.id, vm);
    if (vm.status !== listed.status)
      violations.push(`${vm.name}: GET says ${vm.status}, list says ${listed.status}`);
  }

  const lastSeq = (await client.listEvents(0)).lastSeq;
  await recorder.caughtUp(lastSeq);
  violations.push(...checkEvents(recorder.events, lastSeq, vms));
  violations.push(...checkOperationEffects(operations, recorder.events));

  const host = await client.getHost();
  let cpus = 0;
  let memory = 0;
  for (const vm of vms.values())
    if (HOLDS_RESOURCES.has(vm.status)) {
      cpus += vm.cpus;
      memory += vm.memoryMiB;
    }
  if (host.vcpusUsed !== cpus || host.memoryUsedMiB !== memory)
    violations.push(
      `host usage ${host.vcpusUsed} vCPUs / ${host.memoryUsedMiB} MiB, but the VMs holding resources have ${cpus} / ${memory}`,
    );

  const expected = new Set([...vms.values()].filter((vm) => vm.status === "RUNNING").map((vm) => vm.vmmPid));
  for (const vm of vms.values())
    if ((vm.status === "RUNNING") !== (vm.vmmPid !== null))
      violations.push(`${vm.name} is ${vm.status} with VMM pid ${vm.vmmPid}`);
  for (const pid of daemon.vmmProcesses())
    if (!expected.has(pid)) violations.push(`VMM process ${pid} runs but belongs to no RUNNING VM (leaked)`);
  return violations;
}

/** The event stream's own invariants, and each VM's replayed path against its final status. */
export function checkEvents(
  events: readonly VmEvent[],
  lastSeq: number,
  vms: ReadonlyMap<string, Instance>,
): string[] {
  const violations: string[] = [];
  events.forEach((e, i) => {
    if (e.seq !== i + 1) violations.push(`event #${i + 1} has seq ${e.seq} (a gap or a reordering)`);
  });
  if ((events.at(-1)?.seq ?? 0) !== lastSeq)
    violations.push(`the stream ended at seq ${events.at(-1)?.seq}, the daemon's last is ${lastSeq}`);
  const paths = new Map<string, { name: string; status: InstanceStatus | null; deleted: boolean }>();
  for (const e of events) {
    const path = paths.get(e.vmId) ?? { name: e.vmName, status: null, deleted: false };
    paths.set(e.vmId, path);
    const where = `${e.vmName} (${e.vmId.slice(0, 8)}) event ${e.seq} ${e.type} ${e.from}→${e.to}`;
    if (path.deleted) violations.push(`${where}: after the VM was deleted`);
    if (e.from !== path.status) violations.push(`${where}: the VM was ${path.status}`);
    if (e.type === "transition") {
      if (e.to === null || (e.from === null ? e.to !== "PROVISIONING" : !canTransition(e.from, e.to)))
        violations.push(`${where}: not a legal transition`);
      path.status = e.to;
    } else if (e.type === "deleted") {
      if (e.to !== null) violations.push(`${where}: a deletion must end at null`);
      path.deleted = true;
    } else if (e.to !== e.from) violations.push(`${where}: a ${e.type} event changed the status`);
  }
  for (const [id, path] of paths) {
    const vm = vms.get(id);
    if (path.deleted ? vm !== undefined : vm?.status !== path.status)
      violations.push(
        `${path.name} (${id.slice(0, 8)}): its events end at ${path.deleted ? "deleted" : path.status}, but it is ${vm?.status ?? "gone"}`,
      );
  }
  for (const [id, vm] of vms)
    if (!paths.has(id)) violations.push(`${vm.name} (${id.slice(0, 8)}) exists but no event announced it`);
  return violations;
}

/** One line on what a storm did: calls answered per kind, operations by outcome, events seen. */
export async function summarize(
  client: ApiClient,
  result: StormResult,
  recorder: EventRecorder,
): Promise<string> {
  const calls = [...result.latencies].map(([kind, l]) => `${kind} ${l.length}`).join(", ");
  const outcomes = new Map<string, number>();
  for (const id of result.operationIds) {
    const op = await client.getOperation(id);
    const key = `${op.operationType} ${op.error ? op.error.code : "ok"}`;
    outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
  }
  const ops = [...outcomes]
    .sort()
    .map(([k, n]) => `${k} ${n}`)
    .join(", ");
  return `calls: ${calls}; operations: ${ops}; events: ${recorder.events.length}`;
}

/** The event that shows each operation's effect, when it succeeded. */
const EFFECT_OF: Readonly<Record<string, (e: VmEvent) => boolean>> = {
  insert: (e) => e.to === "RUNNING",
  start: (e) => e.to === "RUNNING",
  resume: (e) => e.to === "RUNNING",
  stop: (e) => e.to === "TERMINATED",
  suspend: (e) => e.to === "SUSPENDED",
  reset: (e) => e.type === "reset",
  delete: (e) => e.type === "deleted",
  setMachineType: (e) => e.type === "notice" && e.message.startsWith("machine type set"),
};

/**
 * An operation that says it succeeded did what it says: its VM's events between the operation's start and
 * end include its effect (the operations of one VM run one at a time, so no other operation's events fall
 * in that window).
 */
export function checkOperationEffects(
  operations: readonly Operation[],
  events: readonly VmEvent[],
): string[] {
  const violations: string[] = [];
  for (const op of operations) {
    const effect = Object.hasOwn(EFFECT_OF, op.operationType) ? EFFECT_OF[op.operationType] : undefined;
    if (op.status !== "DONE" || op.error || !effect || !op.startTime || !op.endTime) continue;
    const during = events.filter(
      (e) => e.vmName === op.targetName && e.time >= op.startTime! && e.time <= op.endTime!,
    );
    if (!during.some(effect))
      violations.push(
        `operation ${op.id} (${op.operationType} ${op.targetName}) succeeded, but its events say: ${during.map((e) => `${e.type} ${e.from}→${e.to}`).join(", ") || "nothing"}`,
      );
  }
  return violations;
}

/** Deletes every VM and waits for the deletions (the end of a storm; no VMM may be left). */
export async function deleteAll(client: ApiClient): Promise<string[]> {
  const failures: string[] = [];
  for (const vm of (await client.listInstances()).items) {
    try {
      const op = await client.waitUntilDone((await client.deleteInstance(vm.name)).id);
      if (op.error) failures.push(`delete ${vm.name}: ${op.error.message}`);
    } catch (e) {
      failures.push(`delete ${vm.name}: ${(e as Error).message}`);
    }
  }
  return failures;
}
