// The resources and requests of the tsvm REST API (modeled on the Compute Engine instances API), shared by
// the server, the client, the CLI and the web console. src/api/openapi.json describes the same shapes.

export type InstanceStatus =
  | "PROVISIONING"
  | "STAGING"
  | "RUNNING"
  | "STOPPING"
  | "TERMINATED"
  | "SUSPENDING"
  | "SUSPENDED"
  | "REPAIRING";

export interface TransitionEntry {
  readonly at: string;
  readonly from: InstanceStatus | null;
  readonly to: InstanceStatus;
  readonly reason: string;
}

export interface Instance {
  readonly kind: "tsvm#instance";
  readonly id: string;
  readonly name: string;
  readonly machineType: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly diskMiB: number;
  readonly image: string;
  readonly engine: string;
  readonly automaticRestart: boolean;
  readonly cpuCapPercent: number | null;
  readonly cpuWeight: number;
  readonly status: InstanceStatus;
  readonly statusMessage: string;
  readonly creationTimestamp: string;
  readonly lastStartTimestamp: string | null;
  readonly lastStopTimestamp: string | null;
  readonly lastSuspendedTimestamp: string | null;
  /** The VMM process id while one runs. */
  readonly vmmPid: number | null;
  readonly history: readonly TransitionEntry[];
}

export interface InstanceList {
  readonly kind: "tsvm#instanceList";
  readonly items: readonly Instance[];
  /** VM directories whose definition is unusable; shown, never touched. */
  readonly unreachable: ReadonlyArray<{
    readonly name: string;
    readonly code: string;
    readonly message: string;
  }>;
}

export interface InsertInstanceRequest {
  readonly name: string;
  readonly machineType?: string;
  readonly cpus?: number;
  readonly memoryMiB?: number;
  readonly image?: string;
  readonly engine?: string;
  readonly automaticRestart?: boolean;
  readonly cpuCapPercent?: number | null;
  readonly cpuWeight?: number;
}

export interface SetMachineTypeRequest {
  readonly machineType: string;
}

export type OperationStatus = "PENDING" | "RUNNING" | "DONE";

export interface Operation {
  readonly kind: "tsvm#operation";
  readonly id: string;
  readonly operationType: string;
  readonly targetName: string;
  readonly status: OperationStatus;
  readonly progress: number;
  readonly statusMessage: string;
  readonly insertTime: string;
  readonly startTime: string | null;
  readonly endTime: string | null;
  readonly error: { readonly code: string; readonly message: string } | null;
}

export interface OperationList {
  readonly kind: "tsvm#operationList";
  readonly items: readonly Operation[];
}

export interface VmEvent {
  readonly seq: number;
  readonly time: string;
  readonly type: "transition" | "reset" | "deleted" | "notice";
  readonly vmName: string;
  readonly vmId: string;
  readonly from: InstanceStatus | null;
  readonly to: InstanceStatus | null;
  readonly message: string;
}

/** A line of the watched event stream: this many events were lost here (the client fell too far behind). */
export interface EventStreamGap {
  readonly dropped: number;
}

export interface EventList {
  readonly kind: "tsvm#eventList";
  readonly items: readonly VmEvent[];
  /** The newest sequence number; pass it as `after` to get only later events. */
  readonly lastSeq: number;
}

/** The most console output one serialPortOutput answer carries (bytes). */
export const SERIAL_PORT_PAGE_BYTES = 1 << 20;

/**
 * Positions count every byte the VM ever printed; only the last 4-8 MiB are kept, so `start` is later than
 * asked when the output asked for was rotated away. `next` is the `start` of the following call.
 */
export interface SerialPortOutput {
  readonly kind: "tsvm#serialPortOutput";
  readonly contents: string;
  readonly start: number;
  readonly next: number;
}

export interface InstanceStats {
  readonly kind: "tsvm#instanceStats";
  readonly name: string;
  /** Engine figures (instret, instructionsPerSecond, busyMs, diskReadBytes, …) and the VMM process's
   *  (vmmCpuMs, vmmRssBytes, vmmUptimeMs). */
  readonly stats: Readonly<Record<string, number>>;
}

export interface MachineType {
  readonly name: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  readonly description: string;
}

export interface MachineTypeList {
  readonly kind: "tsvm#machineTypeList";
  readonly items: readonly MachineType[];
}

export interface HostInfo {
  readonly kind: "tsvm#host";
  readonly cores: number;
  readonly cpuOvercommit: number;
  readonly vcpus: number;
  readonly vcpusUsed: number;
  readonly totalMemoryMiB: number;
  readonly memoryMiB: number;
  readonly memoryUsedMiB: number;
  readonly diskFreeMiB: number;
  readonly daemonPid: number;
}

/** Compute Engine's error body: { error: { code, message, errors: [{ reason, message, domain }] } }. */
export interface ApiErrorBody {
  readonly error: {
    readonly code: number;
    readonly message: string;
    readonly errors: ReadonlyArray<{
      readonly reason: string;
      readonly message: string;
      readonly domain: string;
    }>;
  };
}

/** The API's path prefix. */
/** POST /v1/instances/{name}/exec: runs `sh -c command` in the guest through its agent. */
export interface ExecRequest {
  readonly command: string;
  /** Kill the command after this many seconds (1–86400); no limit when absent. */
  readonly timeoutSec?: number;
  /** How long to wait for the agent of a guest still booting (0–600 s, default 60). */
  readonly agentWaitSec?: number;
}

/**
 * One line of the exec answer (application/x-ndjson): chunks of output in order, then one line with the
 * exit status, or with an error when the command failed after output had started.
 */
export type ExecChunk =
  | { readonly stream: "stdout" | "stderr"; readonly data: string }
  /** This many bytes of output were dropped here: the client read too slowly (the guest cannot wait). */
  | { readonly dropped: number }
  | { readonly exitCode: number }
  | { readonly error: { readonly code: string; readonly message: string } };

export const MAX_EXEC_COMMAND_BYTES = 16384;
export const MAX_EXEC_TIMEOUT_SECONDS = 86400;
export const MAX_AGENT_WAIT_SECONDS = 600;
export const DEFAULT_AGENT_WAIT_SECONDS = 60;

export const API_BASE = "/v1";
/** Largest request body the server reads. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Longest a single `operations/{id}/wait` call blocks (Compute Engine: 2 minutes). */
export const MAX_WAIT_SECONDS = 120;
