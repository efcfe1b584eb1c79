// The resources and requests of the tsvm REST API (modeled on the Compute Engine instances API), shared by
// the server, the client, the CLI and the web console. Each shape is defined once, as a schema in
// src/api/schemas/; these are its TypeScript types, and the OpenAPI document (src/api/openapi.ts) is built
// from the same schemas.

export {
  type ApiErrorBody,
  DEFAULT_AGENT_WAIT_SECONDS,
  type ExecChunk,
  type ExecRequest,
  type HostInfo,
  type InstanceStats,
  MAX_AGENT_WAIT_SECONDS,
  MAX_EXEC_COMMAND_BYTES,
  MAX_EXEC_TIMEOUT_SECONDS,
  SERIAL_PORT_PAGE_BYTES,
  type SerialPortOutput,
} from "./schemas/api-schemas.ts";
export type { ClusterHost, ClusterHostList, HostDrainResult, HostStatus } from "./schemas/host-schemas.ts";
export type { EventList, EventStreamGap, VmEvent } from "./schemas/event-schemas.ts";
export type { InsertNetworkRequest, Network, NetworkList } from "./schemas/network-schemas.ts";
export {
  MAX_SESSION_COMMAND_BYTES,
  MAX_TERMINAL_CELLS,
  SESSION_CHANNEL,
  type SessionControl,
  type SessionEvent,
} from "./schemas/session-schemas.ts";
export {
  DEFAULT_WEB_LISTEN,
  type OpenWebConsoleRequest,
  type WebConsole,
} from "./schemas/web-console-schemas.ts";
export type { InsertSnapshotRequest, Snapshot, SnapshotList } from "./schemas/snapshot-schemas.ts";
export type {
  Operation,
  OperationList,
  OperationStatus,
  OperationType,
} from "./schemas/operation-schemas.ts";
export type {
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
  UpdateInstanceRequest,
} from "./schemas/vm-schemas.ts";

export const API_BASE = "/v1";
/** Largest request body the server reads. */
export const MAX_REQUEST_BYTES = 64 * 1024;
/** Longest a single `operations/{id}/wait` call blocks (Compute Engine: 2 minutes). */
export const MAX_WAIT_SECONDS = 120;
