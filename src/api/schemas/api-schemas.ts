// The API's remaining shapes (host, stats, console output, exec, the error body), and the list of every
// named schema, which the OpenAPI document publishes as its components.

import { type Static, type TSchema, Type } from "@sinclair/typebox";
import { EventList, EventStreamGap, EventStreamLine, VmEvent } from "./event-schemas.ts";
import { ClusterHost, ClusterHostList, HostDrainResult } from "./host-schemas.ts";
import { LiveMoveInResult, MoveInResult, MoveInstanceRequest } from "./move-schemas.ts";
import { MigrationReport, Operation, OperationList } from "./operation-schemas.ts";
import { InsertNetworkRequest, Network, NetworkList, SwitchPortStats } from "./network-schemas.ts";
import { SessionControl, SessionEvent } from "./session-schemas.ts";
import { InsertSnapshotRequest, Snapshot, SnapshotList } from "./snapshot-schemas.ts";
import { StringEnum } from "./string-enum.ts";
import { OpenWebConsoleRequest, WebConsole } from "./web-console-schemas.ts";
import {
  GuestIdentity,
  InsertInstanceRequest,
  Instance,
  InstanceList,
  InstanceStatus,
  MachineType,
  MachineTypeList,
  NetworkInterface,
  PortForward,
  PortForwardRequest,
  SetMachineTypeRequest,
  TransitionEntry,
  UnreachableInstance,
  UpdateInstanceRequest,
} from "./vm-schemas.ts";

export const MAX_EXEC_COMMAND_BYTES = 16384;
export const MAX_EXEC_TIMEOUT_SECONDS = 86400;
export const MAX_AGENT_WAIT_SECONDS = 600;
export const DEFAULT_AGENT_WAIT_SECONDS = 60;
/** The most console output one serialPortOutput answer carries (bytes). */
export const SERIAL_PORT_PAGE_BYTES = 1 << 20;

export const HostInfo = Type.Object(
  {
    kind: Type.Literal("tsvm#host"),
    cores: Type.Integer({ minimum: 1 }),
    cpuOvercommit: Type.Number(),
    vcpus: Type.Integer({ minimum: 0, description: "vCPUs the host admits: cores × cpuOvercommit." }),
    vcpusUsed: Type.Integer({ minimum: 0 }),
    totalMemoryMiB: Type.Integer({ minimum: 0 }),
    memoryMiB: Type.Integer({ minimum: 0, description: "Memory VMs may use: total minus the host reserve." }),
    memoryUsedMiB: Type.Integer({ minimum: 0 }),
    diskFreeMiB: Type.Integer(),
    daemonPid: Type.Integer({ minimum: 1 }),
  },
  { $id: "HostInfo", additionalProperties: false },
);
export type HostInfo = Static<typeof HostInfo>;

export const InstanceStats = Type.Object(
  {
    kind: Type.Literal("tsvm#instanceStats"),
    name: Type.String(),
    stats: Type.Record(Type.String(), Type.Number(), {
      description:
        "Engine figures (instret, instructionsPerSecond, busyMs, uptimeMs, resets, diskReadBytes, diskWriteBytes) and the VMM process's (vmmCpuMs, vmmRssBytes, vmmUptimeMs).",
    }),
  },
  { $id: "InstanceStats", additionalProperties: false },
);
export type InstanceStats = Static<typeof InstanceStats>;

export const SerialPortOutput = Type.Object(
  {
    kind: Type.Literal("tsvm#serialPortOutput"),
    contents: Type.String({ description: "Console output from byte `start` (UTF-8, at most 1 MiB)." }),
    start: Type.Integer({
      minimum: 0,
      description:
        "Position (in bytes of everything the VM ever printed) the contents begin at: the requested start; the first byte still kept when the output there was rotated away (only the last 4 to 8 MiB are kept); or the end of the output if start lies beyond it.",
    }),
    next: Type.Integer({ minimum: 0, description: "Pass as `start` to get what follows." }),
  },
  { $id: "SerialPortOutput", additionalProperties: false },
);
export type SerialPortOutput = Static<typeof SerialPortOutput>;

export const ErrorBody = Type.Object(
  {
    error: Type.Object(
      {
        code: Type.Integer({ description: "The HTTP status." }),
        message: Type.String(),
        errors: Type.Array(
          Type.Object(
            {
              reason: Type.String({ description: "An error code of the table in docs/hypervisor.md." }),
              message: Type.String(),
              domain: Type.String(),
            },
            { additionalProperties: false },
          ),
        ),
      },
      { additionalProperties: false },
    ),
  },
  {
    $id: "Error",
    additionalProperties: false,
    description:
      "Compute Engine's error body: { error: { code, message, errors: [{ reason, message, domain }] } }.",
  },
);
export type ApiErrorBody = Static<typeof ErrorBody>;

/** The command's byte length and NUL are checked by the server and the VMM beyond what JSON Schema says. */
export const ExecRequest = Type.Object(
  {
    command: Type.String({
      minLength: 1,
      maxLength: MAX_EXEC_COMMAND_BYTES,
      description: `Run as sh -c COMMAND in the guest (at most ${MAX_EXEC_COMMAND_BYTES} bytes of UTF-8, no NUL).`,
    }),
    timeoutSec: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: MAX_EXEC_TIMEOUT_SECONDS,
        description: "Kill the command after this many seconds; no limit when absent.",
      }),
    ),
    agentWaitSec: Type.Optional(
      Type.Integer({
        minimum: 0,
        maximum: MAX_AGENT_WAIT_SECONDS,
        default: DEFAULT_AGENT_WAIT_SECONDS,
        description: "How long to wait for the guest agent of a VM still booting.",
      }),
    ),
  },
  { $id: "ExecRequest", additionalProperties: false },
);
export type ExecRequest = Static<typeof ExecRequest>;

export const ExecChunk = Type.Union(
  [
    Type.Object(
      {
        stream: StringEnum(["stdout", "stderr"] as const),
        data: Type.String({ description: "The bytes, base64." }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        dropped: Type.Integer({
          minimum: 1,
          description:
            "This many bytes of the command's output were dropped at this point: the client read more slowly than the guest wrote, and the VMM queues at most 1 MiB for it (the guest cannot be held up).",
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        exitCode: Type.Integer({
          minimum: 0,
          maximum: 255,
          description: "0-255; 128+N when signal N ended the command.",
        }),
      },
      { additionalProperties: false },
    ),
    Type.Object(
      {
        error: Type.Object({ code: Type.String(), message: Type.String() }, { additionalProperties: false }),
      },
      { additionalProperties: false },
    ),
  ],
  {
    $id: "ExecChunk",
    description:
      "One line of an exec answer: a chunk of output, a count of dropped output, the exit status, or a late error.",
  },
);
export type ExecChunk = Static<typeof ExecChunk>;

/** Every named schema, as the OpenAPI document's components (a schema with an $id is one of these). */
export const COMPONENT_SCHEMAS: readonly TSchema[] = [
  InstanceStatus,
  TransitionEntry,
  GuestIdentity,
  NetworkInterface,
  PortForward,
  PortForwardRequest,
  Instance,
  UnreachableInstance,
  InstanceList,
  InsertInstanceRequest,
  SetMachineTypeRequest,
  UpdateInstanceRequest,
  MigrationReport,
  Operation,
  OperationList,
  MoveInstanceRequest,
  MoveInResult,
  LiveMoveInResult,
  VmEvent,
  EventStreamGap,
  EventStreamLine,
  EventList,
  MachineType,
  MachineTypeList,
  HostInfo,
  ClusterHost,
  ClusterHostList,
  HostDrainResult,
  InstanceStats,
  ErrorBody,
  SerialPortOutput,
  ExecRequest,
  ExecChunk,
  Snapshot,
  SnapshotList,
  InsertSnapshotRequest,
  SwitchPortStats,
  Network,
  NetworkList,
  InsertNetworkRequest,
  SessionControl,
  SessionEvent,
  OpenWebConsoleRequest,
  WebConsole,
];
