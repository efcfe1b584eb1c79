// The OpenAPI 3.1 document of the tsvm API, built from the schemas of src/api/schemas (the components), the
// error-code table (the error answers) and the list of operations below. The daemon serves it at
// GET /v1/openapi.json; tests check the server's routes and answers against it and lint it with Redocly.

import type { TSchema } from "@sinclair/typebox";
import { ERROR_CODES } from "./error-codes.ts";
import { COMPONENT_SCHEMAS, MAX_AGENT_WAIT_SECONDS } from "./schemas/api-schemas.ts";
import { newAjv, withoutIds } from "./schemas/schema-check.ts";
import { API_BASE, MAX_REQUEST_BYTES, MAX_WAIT_SECONDS } from "./types.ts";

type Json = Record<string, unknown>;

interface QueryParameter {
  readonly name: string;
  readonly schema: Json;
  readonly description?: string;
}

export interface ApiOperation {
  readonly method: "GET" | "POST" | "PATCH" | "DELETE";
  readonly path: string;
  readonly operationId: string;
  readonly summary: string;
  readonly description?: string;
  readonly query?: readonly QueryParameter[];
  /** The request body's schema (an $id of COMPONENT_SCHEMAS). */
  readonly body?: string;
  /** A request body of raw bytes (application/octet-stream) the operation also takes: what it is. */
  readonly binaryBody?: string;
  /** The answer: a component by $id, NDJSON lines of one, raw bytes, a WebSocket, or a plain JSON object. */
  readonly answer:
    | { readonly json: string; readonly description?: string }
    | { readonly binary: string }
    | { readonly ndjson: string; readonly json?: string; readonly description: string }
    | { readonly websocket: true }
    | { readonly document: true };
  /** Error codes this operation may answer besides the common ones (see commonErrors). */
  readonly errors: readonly string[];
}

const NAME = `${API_BASE}/instances/{name}`;
/** The query both routes a moved VM comes in by share (src/api/server/move-offer.ts). */
const MOVE_OFFER_QUERY: readonly QueryParameter[] = [
  { name: "name", schema: { type: "string" }, description: "The VM's name." },
  {
    name: "revision",
    schema: { type: "string", pattern: "^[0-9]{1,15}$" },
    description: "The record's revision as the sender saw it.",
  },
  { name: "from", schema: { type: "string" }, description: "The sending host." },
];
const action = (verb: string, summary: string, errors: readonly string[] = []): ApiOperation => ({
  method: "POST",
  path: `${NAME}/${verb}`,
  operationId: `instances.${verb}`,
  summary,
  answer: { json: "Operation" },
  errors: ["illegal-action", ...errors],
});

/** Every HTTP operation of the API, in the document's order. */
export const API_OPERATIONS: readonly ApiOperation[] = [
  {
    method: "GET",
    path: `${API_BASE}/instances`,
    operationId: "instances.list",
    summary: "List VMs, and the VM directories whose definition is unusable",
    answer: { json: "InstanceList" },
    errors: [],
  },
  {
    method: "POST",
    path: `${API_BASE}/instances`,
    operationId: "instances.insert",
    summary:
      "Create a VM (PROVISIONING → STAGING → RUNNING) from an image, or (source=archive) recreate one from an export file",
    description:
      "With source=archive the body is an export file (application/octet-stream, streamed; format in " +
      "docs/export-format.md, as instances.export writes it) and the VM is recreated as it was exported: " +
      "TERMINATED, or SUSPENDED with its saved state (resume it), under its own name or the query's name. " +
      "The answer comes once the whole file is read and verified: the insert operation, DONE. Bad input is " +
      "refused with bad-archive, a VM that cannot be written with import-failed; either way nothing is created.",
    query: [
      {
        name: "source",
        schema: { type: "string", enum: ["archive"] },
        description: "archive: the body is an export file, not an InsertInstanceRequest.",
      },
      {
        name: "name",
        schema: { type: "string" },
        description: "source=archive only: the imported VM's name (default: the exported VM's).",
      },
      {
        name: "dropMissingNetworks",
        schema: { type: "boolean", default: false },
        description:
          "source=archive only: leave out the VM's cards on private networks this host does not have " +
          "(without it such a card refuses the import with invalid-network). Refused for a VM with saved memory.",
      },
    ],
    body: "InsertInstanceRequest",
    binaryBody: "source=archive: an export file (docs/export-format.md).",
    answer: { json: "Operation", description: "The insert operation" },
    errors: [
      "invalid-name",
      "invalid-machine-type",
      "invalid-image",
      "invalid-engine",
      "already-exists",
      "capacity-exceeded",
      "invalid-network",
      "network-full",
      "invalid-forward",
      "port-in-use",
      "bad-archive",
      "import-failed",
    ],
  },
  {
    method: "GET",
    path: NAME,
    operationId: "instances.get",
    summary: "Describe a VM",
    answer: { json: "Instance" },
    errors: [],
  },
  {
    method: "PATCH",
    path: NAME,
    operationId: "instances.update",
    summary:
      "Change a TERMINATED VM's port forwards (the fields given replace the VM's); used at its next start",
    body: "UpdateInstanceRequest",
    answer: { json: "Operation" },
    errors: ["illegal-action", "invalid-forward", "port-in-use"],
  },
  {
    method: "DELETE",
    path: NAME,
    operationId: "instances.delete",
    summary:
      "Delete a VM (legal when RUNNING, TERMINATED or SUSPENDED, or when its definition is unusable; a running VM is stopped first)",
    answer: { json: "Operation" },
    errors: ["illegal-action", "vmm-running"],
  },
  {
    method: "GET",
    path: `${NAME}/export`,
    operationId: "instances.export",
    summary:
      "Download a TERMINATED or SUSPENDED VM as one export file: definition, disk, saved state, snapshots, boot files",
    description:
      "The answer is the export file (docs/export-format.md), streamed with its exact Content-Length; the VM's " +
      "operations wait until it has been sent, and nothing of the VM changes. A RUNNING VM is refused " +
      "(illegal-action): suspend or stop it first. Import it with instances.insert?source=archive.",
    query: [
      {
        name: "snapshots",
        schema: { type: "boolean", default: true },
        description: "false: leave the VM's snapshots out.",
      },
    ],
    answer: { binary: "The export file" },
    errors: ["illegal-action", "invalid-argument"],
  },
  action("start", "Start a TERMINATED VM: PROVISIONING → STAGING → RUNNING", [
    "capacity-exceeded",
    "port-in-use",
  ]),
  action(
    "stop",
    "Stop a RUNNING (or SUSPENDED) VM: STOPPING → TERMINATED; the guest is asked to power off, then forced",
  ),
  action("reset", "Hard-reset a RUNNING VM (it stays RUNNING)"),
  action("suspend", "Suspend a RUNNING VM: SUSPENDING → SUSPENDED, its whole state written to files"),
  action("resume", "Resume a SUSPENDED VM: PROVISIONING → STAGING → RUNNING where it left off", [
    "capacity-exceeded",
  ]),
  {
    method: "POST",
    path: `${NAME}/setMachineType`,
    operationId: "instances.setMachineType",
    summary: "Change the machine type of a TERMINATED VM",
    body: "SetMachineTypeRequest",
    answer: { json: "Operation" },
    errors: ["illegal-action", "invalid-machine-type"],
  },
  {
    method: "GET",
    path: `${NAME}/snapshots`,
    operationId: "snapshots.list",
    summary: "List a VM's snapshots (a tree: each names its parent), oldest first",
    answer: { json: "SnapshotList" },
    errors: [],
  },
  {
    method: "POST",
    path: `${NAME}/snapshots`,
    operationId: "snapshots.insert",
    summary:
      "Take a snapshot of a RUNNING (with its memory; it runs on after a short pause), TERMINATED or SUSPENDED VM",
    body: "InsertSnapshotRequest",
    answer: { json: "Operation", description: "The createSnapshot operation" },
    errors: ["illegal-action", "already-exists", "snapshot-limit", "snapshot-failed", "capacity-exceeded"],
  },
  {
    method: "GET",
    path: `${NAME}/snapshots/{snapshot}`,
    operationId: "snapshots.get",
    summary: "Describe a snapshot",
    answer: { json: "Snapshot" },
    errors: [],
  },
  {
    method: "DELETE",
    path: `${NAME}/snapshots/{snapshot}`,
    operationId: "snapshots.delete",
    summary: "Delete a snapshot; every other snapshot stays restorable",
    answer: { json: "Operation" },
    errors: ["illegal-action"],
  },
  {
    method: "POST",
    path: `${NAME}/snapshots/{snapshot}/restore`,
    operationId: "snapshots.restore",
    summary:
      "Make the VM what it was at the snapshot: its disk, and with memory its running guest (the VM ends RUNNING); a disk-only snapshot leaves it TERMINATED",
    answer: { json: "Operation" },
    errors: ["illegal-action", "capacity-exceeded", "bad-state"],
  },
  {
    method: "POST",
    path: `${NAME}/exec`,
    operationId: "instances.exec",
    summary:
      "Run a command in a RUNNING VM through its guest agent (sh -c COMMAND); streams its output and exit status",
    description:
      "The answer is an NDJSON stream of ExecChunk lines: output chunks in order ({stream, data: base64}), then " +
      "{exitCode} (0-255; 128+N when signal N ended it), or {error} when the command failed after output had " +
      "started. Errors before any output are plain error answers. Closing the connection kills the command.",
    body: "ExecRequest",
    answer: { ndjson: "ExecChunk", description: "A stream of ExecChunk lines" },
    errors: [
      "illegal-action",
      "not-running",
      "agent-unavailable",
      "agent-not-connected",
      "agent-busy",
      "exec-cancelled",
      "agent-error",
      "vmm-gone",
      "vmm-error",
      "exec-timeout",
    ],
  },
  {
    method: "GET",
    path: `${NAME}/stats`,
    operationId: "instances.stats",
    summary: "Live figures from the VM's engine and its VMM process",
    answer: { json: "InstanceStats" },
    errors: ["not-running", "vmm-gone", "vmm-error"],
  },
  {
    method: "GET",
    path: `${NAME}/serialPortOutput`,
    operationId: "instances.getSerialPortOutput",
    summary: "The serial console's history (console.log), as Compute Engine's getSerialPortOutput",
    query: [{ name: "start", schema: { type: "integer", minimum: 0, default: 0 } }],
    answer: { json: "SerialPortOutput" },
    errors: ["invalid-argument"],
  },
  {
    method: "GET",
    path: `${NAME}/serialPort`,
    operationId: "instances.connectSerialPort",
    summary: "The serial console over WebSocket (RFC 6455)",
    description:
      "Send Upgrade: websocket. Client messages (binary or text) are typed into the console; console output " +
      "arrives as binary messages. Several clients may attach at once. A client message may be at most 1 MiB " +
      "(larger: close 1009); a frame RFC 6455 forbids fails the connection (1002, or 1007 for text that is not " +
      "UTF-8). The guest is never held up for a slow client: once 1 MiB of output is queued for it in the VMM " +
      "(the daemon queues at most 256 KiB more), further output is dropped for that client, and when it has " +
      'caught up a notice in the byte stream says how many bytes it missed: "[tsvm: N bytes of console output ' +
      'dropped: ...]" (the console history, serialPortOutput, has them).',
    answer: { websocket: true },
    errors: ["invalid-argument", "not-running", "vmm-gone"],
  },
  {
    method: "GET",
    path: `${API_BASE}/networks`,
    operationId: "networks.list",
    summary: "List private networks, their cards and their switches' counters",
    answer: { json: "NetworkList" },
    errors: [],
  },
  {
    method: "POST",
    path: `${API_BASE}/networks`,
    operationId: "networks.insert",
    summary: "Create a private network (an IPv4 subnet with its own switch, DHCP and names)",
    body: "InsertNetworkRequest",
    answer: { json: "Operation", description: "The insertNetwork operation (DONE when answered)" },
    errors: ["invalid-name", "invalid-subnet", "subnet-overlap", "already-exists"],
  },
  {
    method: "GET",
    path: `${API_BASE}/networks/{name}`,
    operationId: "networks.get",
    summary: "Describe a private network",
    answer: { json: "Network" },
    errors: ["invalid-name"],
  },
  {
    method: "DELETE",
    path: `${API_BASE}/networks/{name}`,
    operationId: "networks.delete",
    summary: "Delete a private network; refused while any VM has a card on it",
    answer: { json: "Operation", description: "The deleteNetwork operation (DONE when answered)" },
    errors: ["invalid-name", "network-in-use"],
  },
  {
    method: "GET",
    path: `${NAME}/sessions`,
    operationId: "instances.openSession",
    summary: "An interactive session in a RUNNING VM through its guest agent, over WebSocket (RFC 6455)",
    description:
      "Send Upgrade: websocket. Runs `sh -c COMMAND`, or a login shell (/bin/sh -l in /root) without one, on " +
      "pipes or (tty=true; the default for a login shell) in a pseudo-terminal of cols × rows. Binary messages " +
      "carry bytes behind a 1-byte channel: 0 stdin (client → daemon), 1 stdout and 2 stderr (daemon → client; " +
      "a terminal's output is all stdout). Text messages are JSON: the client sends SessionControl (resize, " +
      "signal, eof), the daemon sends one SessionEvent (exit with the exit status, or error) and then closes " +
      "the connection. Nothing is dropped: output the client does not read holds the guest's command back " +
      "(at most about 256 KiB is queued in each of the daemon and the VMM), and stdin is read from the client " +
      "only as fast as the guest takes it. Closing the connection kills the session. A binary message that " +
      "does not start with channel 0, or a text message that is not a SessionControl, closes it with 1008; " +
      "messages may be at most 256 KiB (larger: 1009). Errors before the upgrade (VM not RUNNING, no agent " +
      "yet, an agent of version 1) are ordinary error answers. Needs a guest agent of version 2.",
    query: [
      {
        name: "command",
        schema: { type: "string", minLength: 1 },
        description: "Run as sh -c COMMAND (at most 8192 bytes of UTF-8, no NUL); absent: a login shell.",
      },
      {
        name: "tty",
        schema: { type: "boolean" },
        description:
          "A pseudo-terminal instead of pipes; default: true for a login shell, false for a command.",
      },
      { name: "cols", schema: { type: "integer", minimum: 1, maximum: 65535, default: 80 } },
      { name: "rows", schema: { type: "integer", minimum: 1, maximum: 65535, default: 24 } },
      {
        name: "agentWaitSec",
        schema: { type: "integer", minimum: 0, maximum: MAX_AGENT_WAIT_SECONDS, default: 60 },
        description: "How long to wait for the guest agent of a VM still booting.",
      },
    ],
    answer: { websocket: true },
    errors: [
      "invalid-argument",
      "illegal-action",
      "not-running",
      "agent-unavailable",
      "agent-not-connected",
      "agent-unsupported",
      "agent-busy",
      "agent-error",
      "vmm-gone",
      "vmm-error",
    ],
  },
  {
    method: "GET",
    path: `${API_BASE}/operations`,
    operationId: "operations.list",
    summary: "Recent operations, newest first",
    query: [{ name: "limit", schema: { type: "integer", minimum: 1, maximum: 1000, default: 100 } }],
    answer: { json: "OperationList" },
    errors: ["invalid-argument"],
  },
  {
    method: "GET",
    path: `${API_BASE}/operations/{id}`,
    operationId: "operations.get",
    summary: "Get an operation",
    answer: { json: "Operation" },
    errors: [],
  },
  {
    method: "POST",
    path: `${API_BASE}/operations/{id}/wait`,
    operationId: "operations.wait",
    summary: `Wait until the operation is DONE or the timeout passes (at most ${MAX_WAIT_SECONDS} s), then return it`,
    query: [
      {
        name: "timeoutSec",
        schema: { type: "integer", minimum: 0, maximum: MAX_WAIT_SECONDS, default: MAX_WAIT_SECONDS },
      },
    ],
    answer: { json: "Operation" },
    errors: ["invalid-argument"],
  },
  {
    method: "GET",
    path: `${API_BASE}/events`,
    operationId: "events.list",
    summary:
      "VM events (transitions, resets, deletions) after a sequence number; with watch=true an NDJSON stream of VmEvent lines that follows new events",
    query: [
      { name: "after", schema: { type: "integer", minimum: 0, default: 0 } },
      { name: "limit", schema: { type: "integer", minimum: 1, maximum: 10000, default: 1000 } },
      { name: "instance", schema: { type: "string" }, description: "Only this VM's events." },
      { name: "watch", schema: { type: "boolean", default: false } },
    ],
    description:
      "With watch=true the stream has back-pressure: while the client is behind, nothing more is queued for it, " +
      "and once it has read what was queued, the events it missed are read from the daemon's memory (the last " +
      '10,000 events). Only when it fell further behind than that does a line {"dropped": N} (an EventStreamGap) ' +
      "say that N events (of any instance) were lost at that point.",
    answer: {
      json: "EventList",
      ndjson: "EventStreamLine",
      description: "The events (watch=true: a stream)",
    },
    errors: ["invalid-argument"],
  },
  {
    method: "GET",
    path: `${API_BASE}/machineTypes`,
    operationId: "machineTypes.list",
    summary: "The predefined machine types",
    answer: { json: "MachineTypeList" },
    errors: [],
  },
  {
    method: "POST",
    path: `${NAME}/move`,
    operationId: "instances.move",
    summary: 'Move a VM to another host of the cluster (docs/cluster.md, "Moving VMs")',
    description:
      "A TERMINATED or SUSPENDED VM goes as its files; a RUNNING one is suspended, sent with its saved state and " +
      "resumed on the new host (its guest does not run meanwhile: the operation's migration.downtimeMs). The " +
      "host must be another UP host of the cluster with room for the VM. Until the new host owns the VM it stays " +
      "where it was, and a RUNNING one runs on there. The operation's `migration` gives the figures.",
    body: "MoveInstanceRequest",
    answer: { json: "Operation" },
    errors: ["illegal-action", "host-unavailable", "capacity-exceeded", "move-in-progress", "move-failed"],
  },
  {
    method: "POST",
    path: `${API_BASE}/migrations/incoming`,
    operationId: "migrations.incoming",
    summary: "Between the hosts of a cluster: take in a VM another host moves here (its export file)",
    description:
      "Sent by the VM's host during instances.move, with the cluster's token. The file is verified whole; the " +
      "VM's record is then taken over at the revision the sending host last saw (revision-conflict, and nothing " +
      "kept, when it changed meanwhile), and the VM is resumed when asked.",
    query: [
      ...MOVE_OFFER_QUERY,
      { name: "resume", schema: { type: "boolean" }, description: "Resume the VM once it is here." },
    ],
    binaryBody: "The VM's export file (docs/export-format.md).",
    answer: { json: "MoveInResult" },
    errors: [
      "bad-archive",
      "import-failed",
      "already-exists",
      "revision-conflict",
      "invalid-network",
      "invalid-engine",
    ],
  },
  {
    method: "POST",
    path: `${API_BASE}/migrations/live`,
    operationId: "migrations.live",
    summary: "Between the hosts of a cluster: prepare to take in a RUNNING VM another host moves here live",
    description:
      "Sent by the VM's host during instances.move, with the cluster's token; the body is the VM's export " +
      "without its active disk. The file is verified whole, the name and room checked, and the VM's files put " +
      "in place (its record stays the sender's); a VMM then waits for the guest's live migration stream, " +
      "which brings the active disk after the pause. The VM's record is taken over at the sender's revision " +
      'only once that stream arrived whole, before the guest runs here (docs/cluster.md "Moving a running VM").',
    query: [
      ...MOVE_OFFER_QUERY,
      {
        name: "diskBytes",
        schema: { type: "string", pattern: "^[0-9]{1,13}$" },
        description: "The active disk's virtual size in bytes.",
      },
    ],
    binaryBody: "The VM's export file without its active disk (docs/export-format.md).",
    answer: { json: "LiveMoveInResult" },
    errors: [
      "bad-archive",
      "import-failed",
      "already-exists",
      "capacity-exceeded",
      "invalid-network",
      "invalid-engine",
    ],
  },
  {
    method: "GET",
    path: `${API_BASE}/hosts`,
    operationId: "hosts.list",
    summary:
      "The cluster's hosts: status (UP, DRAINING, DOWN), capacity, what is used, VMs (docs/cluster.md)",
    description:
      "A daemon not in a cluster answers with its one host, 'local'. In a cluster every host answers for all.",
    answer: { json: "ClusterHostList" },
    errors: ["control-plane-unavailable"],
  },
  // Host maintenance (docs/cluster.md "Maintenance"), issue 12's failover part.
  {
    method: "POST",
    path: `${API_BASE}/hosts/{name}/drain`,
    operationId: "hosts.drain",
    summary: "Mark a host DRAINING and empty it: stop its TERMINATE VMs, move its MIGRATE ones",
    description:
      "Runs on the drained host (forwarded there) and answers when done, with what was stopped, moved and left (and why). A DOWN host is only marked.",
    answer: { json: "HostDrainResult" },
    errors: ["invalid-argument", "not-found", "control-plane-unavailable", "host-unreachable"],
  },
  {
    method: "POST",
    path: `${API_BASE}/hosts/{name}/undrain`,
    operationId: "hosts.undrain",
    summary: "Mark a DRAINING host UP again: it takes new VMs",
    answer: { json: "ClusterHost" },
    errors: ["invalid-argument", "not-found", "control-plane-unavailable"],
  },
  {
    method: "GET",
    path: `${API_BASE}/host`,
    operationId: "host.get",
    summary: "Host capacity and what is in use",
    answer: { json: "HostInfo" },
    errors: [],
  },
  {
    method: "POST",
    path: `${API_BASE}/webConsole`,
    operationId: "webConsole.open",
    summary: "Serve the web console on an address and issue a one-time login URL for it (tsvm web)",
    body: "OpenWebConsoleRequest",
    answer: { json: "WebConsole" },
    errors: ["address-in-use", "web-unavailable"],
  },
  {
    method: "GET",
    path: `${API_BASE}/openapi.json`,
    operationId: "openapi.get",
    summary: "This document",
    answer: { document: true },
    errors: [],
  },
];

/** Codes any operation of this shape may answer. */
function commonErrors(op: ApiOperation): string[] {
  const codes = ["unauthorized", "internal"];
  if (op.method === "POST" || op.method === "PATCH")
    codes.push("malformed-json", "payload-too-large", "unsupported-media-type");
  if (op.body) codes.push("invalid-argument");
  if (op.path.includes("{name}")) codes.push("invalid-name", "not-found", "corrupt-record");
  if (op.path.includes("{id}")) codes.push("not-found");
  if (op.path.includes("{snapshot}")) codes.push("invalid-name", "not-found");
  return codes;
}

const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const errorContent = { "application/json": { schema: ref("Error") } };

/** `schema` as a component: every embedded named schema (one with an $id) becomes a $ref to it. */
function component(schema: TSchema): Json {
  const plain = JSON.parse(JSON.stringify(schema)) as Json;
  const walk = (node: unknown, root: boolean): unknown => {
    if (Array.isArray(node)) return node.map((n) => walk(n, false));
    if (typeof node !== "object" || node === null) return node;
    const obj = node as Json;
    if (!root && typeof obj.$id === "string") return ref(obj.$id);
    const out: Json = {};
    for (const [k, v] of Object.entries(obj)) if (k !== "$id") out[k] = walk(v, false);
    return out;
  };
  return walk(plain, true) as Json;
}

function responses(op: ApiOperation): Json {
  const out: Json = {};
  const a = op.answer;
  if ("websocket" in a) out["101"] = { description: "Switching to the WebSocket protocol" };
  else if ("document" in a)
    out["200"] = {
      description: "The OpenAPI document",
      content: { "application/json": { schema: { type: "object" } } },
    };
  else if ("binary" in a)
    out["200"] = {
      description: a.binary,
      content: { "application/octet-stream": { schema: { type: "string", format: "binary" } } },
    };
  else if ("ndjson" in a)
    out["200"] = {
      description: a.description,
      content: {
        ...(a.json ? { "application/json": { schema: ref(a.json) } } : {}),
        "application/x-ndjson": { schema: ref(a.ndjson) },
      },
    };
  else
    out["200"] = {
      description: a.description ?? "OK",
      content: { "application/json": { schema: ref(a.json) } },
    };
  const byStatus = new Map<number, string[]>();
  for (const code of new Set([...commonErrors(op), ...op.errors])) {
    const entry = ERROR_CODES.get(code);
    if (!entry) throw new Error(`operation ${op.operationId} names the unknown error code ${code}`);
    byStatus.set(entry.status, [...(byStatus.get(entry.status) ?? []), `- \`${code}\`: ${entry.meaning}`]);
  }
  for (const [status, lines] of [...byStatus].sort(([a], [b]) => a - b))
    out[String(status)] = { description: lines.join("\n"), content: errorContent };
  return out;
}

/** The OpenAPI document, built afresh (a plain JSON value). */
export function buildOpenApiDocument(): Json {
  const schemas: Json = {};
  for (const s of COMPONENT_SCHEMAS) schemas[s.$id!] = component(s);
  const paths: Record<string, Json> = {};
  for (const op of API_OPERATIONS) {
    const item = (paths[op.path] ??= {});
    const pathParams = [...op.path.matchAll(/\{(\w+)\}/g)].map((m) => m[1]!);
    if (pathParams.length > 0)
      item.parameters = pathParams.map((name) => ({
        name,
        in: "path",
        required: true,
        schema: { type: "string" },
        description:
          name === "name"
            ? "The VM's name."
            : name === "snapshot"
              ? "The snapshot's name."
              : "The operation's id.",
      }));
    item[op.method.toLowerCase()] = {
      operationId: op.operationId,
      summary: op.summary,
      ...(op.description ? { description: op.description } : {}),
      ...(op.query
        ? {
            parameters: op.query.map((q) => ({
              name: q.name,
              in: "query",
              required: false,
              schema: q.schema,
              ...(q.description ? { description: q.description } : {}),
            })),
          }
        : {}),
      ...(op.body
        ? {
            requestBody: {
              required: true,
              content: {
                "application/json": { schema: ref(op.body) },
                ...(op.binaryBody
                  ? {
                      "application/octet-stream": {
                        schema: { type: "string", format: "binary", description: op.binaryBody },
                      },
                    }
                  : {}),
              },
            },
          }
        : {}),
      responses: responses(op),
    };
  }
  return {
    openapi: "3.1.0",
    info: {
      title: "tsvm API",
      version: "1.0.0",
      description:
        "REST/JSON API of the tsvm daemon, modeled on the Compute Engine instances API. Served on the Unix " +
        "socket $TSVM_HOME/api.sock (mode 0600; no token) and optionally on localhost TCP, where every request " +
        "needs 'Authorization: Bearer <token>' with the token from $TSVM_HOME/api-token. Long actions return " +
        `an Operation; wait on it with operations.wait. Request bodies are at most ${MAX_REQUEST_BYTES} bytes; ` +
        `exec waits at most ${MAX_AGENT_WAIT_SECONDS} s for a guest agent. Error codes and their HTTP statuses: ` +
        "docs/hypervisor.md.",
      license: { name: "MIT", identifier: "MIT" },
    },
    servers: [{ url: "http://localhost" }],
    security: [{}, { bearerAuth: [] }],
    paths,
    components: {
      securitySchemes: {
        bearerAuth: {
          type: "http",
          scheme: "bearer",
          description:
            "Required on TCP; the token is in $TSVM_HOME/api-token (mode 0600), generated at the daemon's first start.",
        },
      },
      schemas,
    },
  };
}

/**
 * A checker of values against the document's component schemas: the problems found (ajv's, with the
 * value's path), empty when `value` conforms. Tests hold every answer of the server to it.
 */
export function documentValidator(doc: Json): (schemaName: string, value: unknown) => string[] {
  const ajv = newAjv();
  ajv.addSchema({ $id: "tsvm-openapi", components: withoutIds(doc.components) });
  return (schemaName, value) => {
    const validate = ajv.getSchema(`tsvm-openapi#/components/schemas/${schemaName}`);
    if (!validate) return [`the document has no schema ${schemaName}`];
    if (validate(value)) return [];
    return (validate.errors ?? []).map((e) => `${e.instancePath || "(top level)"}: ${e.message}`);
  };
}
