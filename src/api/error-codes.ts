// Every error code the API answers with (an error body's `reason`, an operation's `error.code`), its HTTP
// status and what it means: the one table the server maps errors with, and the OpenAPI document and
// docs/hypervisor.md derive theirs from. A code missing here would be a 500; error-codes.test.ts finds
// every code in the sources and requires it here.

export interface ErrorCode {
  readonly status: number;
  /** What it means, for the docs and the OpenAPI document. */
  readonly meaning: string;
}

/**
 * Status by meaning: 4xx when the request cannot succeed as sent or on the resource as it is now (409: the
 * VM's state or saved files conflict with it; retrying later may work); 502 when a process the daemon
 * relies on (the VM's VMM, the guest's agent) failed; 503 when the failure is transient and the same
 * request may succeed on retry; 504 when something took longer than allowed; 500 for the daemon's own failures.
 */
export const ERROR_CODES: ReadonlyMap<string, ErrorCode> = new Map<string, ErrorCode>([
  // The request as sent.
  ["malformed-json", { status: 400, meaning: "The request body is not valid JSON." }],
  [
    "invalid-argument",
    { status: 400, meaning: "A field, query parameter or value is missing, unknown or out of range." },
  ],
  [
    "invalid-name",
    {
      status: 400,
      meaning:
        "Not a valid VM, snapshot or network name (RFC 1035 label, at most 63 characters; a network may not be named nat).",
    },
  ],
  [
    "invalid-machine-type",
    { status: 400, meaning: "Unknown machine type, or vCPUs/memory outside the per-VM limits." },
  ],
  ["invalid-image", { status: 400, meaning: "No image of that name." }],
  ["invalid-engine", { status: 400, meaning: "No engine of that name in this daemon." }],
  [
    "invalid-subnet",
    {
      status: 400,
      meaning:
        "A network's subnet is not an IPv4 CIDR of /16 to /29 in a private range (10/8, 172.16/12, 192.168/16).",
    },
  ],
  [
    "invalid-network",
    {
      status: 400,
      meaning:
        "The network cards asked for are unusable: more than 4, a network named twice, or no network of that name (also an imported VM's card on a network this host does not have).",
    },
  ],
  [
    "invalid-forward",
    {
      status: 400,
      meaning:
        "A port forward is unusable: not tcp/udp, a host address that is not an IP literal, a privileged host port (below 1024), two forwards of one host port, or no NAT card to forward through.",
    },
  ],
  [
    "bad-archive",
    {
      status: 400,
      meaning:
        "import: the data is not a usable tsvm export file (truncated, changed, not an export, or from a newer format); nothing was created.",
    },
  ],
  [
    "unauthorized",
    {
      status: 401,
      meaning:
        "TCP only: the bearer token is missing or wrong; on the web console: no session, an expired one, or a wrong or used login code.",
    },
  ],
  [
    "forbidden-origin",
    {
      status: 403,
      meaning:
        "Web console: a WebSocket or changing request from a page of another origin (its Origin header is not the console's).",
    },
  ],
  [
    "not-found",
    { status: 404, meaning: "No VM, snapshot, network, operation or API resource of that name." },
  ],
  ["method-not-allowed", { status: 405, meaning: "The resource exists but not with that HTTP method." }],
  ["payload-too-large", { status: 413, meaning: "The request body is larger than 64 KiB." }],
  [
    "unsupported-media-type",
    {
      status: 415,
      meaning: "The request body is not application/json (an import's: not application/octet-stream).",
    },
  ],
  // The resource as it is now.
  [
    "already-exists",
    { status: 409, meaning: "A VM (or a snapshot of that VM), or a network, of that name exists." },
  ],
  [
    "revision-conflict",
    {
      status: 409,
      meaning:
        "The VM's record changed meanwhile elsewhere (in a cluster: on another host); nothing was written, retry.",
    },
  ],
  [
    "host-unavailable",
    {
      status: 409,
      meaning:
        "In a cluster: the host named for a new VM (or a move) is DRAINING or DOWN and takes no new VMs.",
    },
  ],
  [
    "move-in-progress",
    {
      status: 409,
      meaning: "In a cluster: the VM is being moved to another host already; wait for that move.",
    },
  ],
  [
    "host-name-taken",
    { status: 409, meaning: "A daemon joining a cluster named a host that a live host of the cluster has." },
  ],
  [
    "port-in-use",
    {
      status: 409,
      meaning:
        "A forward's host port is already forwarded to another VM, or held by a process on the host (checked at create, update and start).",
    },
  ],
  [
    "snapshot-limit",
    {
      status: 409,
      meaning: "The VM has as many snapshots (or disk layers) as it may keep; delete one first.",
    },
  ],
  [
    "subnet-overlap",
    { status: 409, meaning: "The subnet overlaps another private network's; choose another." },
  ],
  [
    "network-in-use",
    { status: 409, meaning: "The network has cards of VMs (in any status); delete those VMs first." },
  ],
  [
    "network-full",
    { status: 409, meaning: "The network's subnet has no free address left for another card." },
  ],
  ["illegal-action", { status: 409, meaning: "The action is not legal in the VM's current status." }],
  [
    "illegal-transition",
    { status: 409, meaning: "The VM's status changed under the request to one it cannot leave that way." },
  ],
  ["capacity-exceeded", { status: 409, meaning: "The host has not enough free vCPUs, memory or disk." }],
  [
    "corrupt-record",
    { status: 409, meaning: "The VM's definition (vm.json) is unusable; only delete is possible." },
  ],
  [
    "bad-state",
    {
      status: 409,
      meaning:
        "The VM's saved state is unusable, so it cannot resume; it stays SUSPENDED (stop or delete it).",
    },
  ],
  ["not-running", { status: 409, meaning: "The VM has no running VMM (it stopped, or is not started)." }],
  [
    "vmm-running",
    { status: 409, meaning: "A VMM still runs from the directory of a VM whose definition is unusable." },
  ],
  ["agent-unavailable", { status: 409, meaning: "exec: the VM's engine has no guest agent." }],
  [
    "agent-not-connected",
    { status: 409, meaning: "exec: the guest agent did not answer within agentWaitSec." },
  ],
  [
    "agent-unsupported",
    {
      status: 409,
      meaning:
        "sessions (shell, exec with stdin, cp): the guest agent is version 1; the VM's image must be rebuilt by this tsvm.",
    },
  ],
  ["agent-busy", { status: 409, meaning: "exec: the guest agent runs another command." }],
  [
    "exec-cancelled",
    { status: 409, meaning: "exec: the command was cancelled (the VM stopped, or the client went away)." },
  ],
  ["already-running", { status: 409, meaning: "Another tsvm daemon already serves this data directory." }],
  [
    "address-in-use",
    { status: 409, meaning: "The web console's address is taken by another program; choose another port." },
  ],
  // Processes the daemon relies on.
  [
    "vmm-start-failed",
    {
      status: 502,
      meaning: "The VM's VMM could not be started (engine missing, guest failed to boot, timeout).",
    },
  ],
  [
    "switch-failed",
    { status: 502, meaning: "A private network's switch process could not be started (see its switch.log)." },
  ],
  ["vmm-error", { status: 502, meaning: "The VM's engine reported an internal error." }],
  ["bad-request", { status: 502, meaning: "The VMM refused the daemon's request (a protocol mismatch)." }],
  ["agent-error", { status: 502, meaning: "exec: the guest agent broke its protocol." }],
  // Transient.
  [
    "vmm-gone",
    { status: 503, meaning: "The VM's VMM went away during the request; the VM is being repaired, retry." },
  ],
  [
    "control-plane-unavailable",
    {
      status: 503,
      meaning:
        "A cluster's etcd cannot be reached: the change was not made (running VMs keep running); retry when etcd is back.",
    },
  ],
  [
    "daemon-restarted",
    { status: 503, meaning: "The operation was interrupted by a daemon restart; its VM was settled, retry." },
  ],
  [
    "host-unreachable",
    {
      status: 502,
      meaning: "In a cluster: the host that runs the VM did not answer a forwarded request.",
    },
  ],
  // Too slow.
  [
    "vmm-unresponsive",
    {
      status: 504,
      meaning: "The VM's VMM did not answer the daemon in time (hung); it was ended and the VM is repaired.",
    },
  ],
  [
    "exec-timeout",
    { status: 504, meaning: "exec: the command did not end within timeoutSec and was killed." },
  ],
  // The daemon's own.
  [
    "suspend-failed",
    { status: 500, meaning: "The VM's state could not be written (e.g. a full disk); it keeps running." },
  ],
  [
    "snapshot-failed",
    {
      status: 500,
      meaning:
        "The snapshot could not be taken (e.g. a full disk); the VM and its other snapshots are unchanged.",
    },
  ],
  [
    "record-write-failed",
    {
      status: 500,
      meaning:
        "A VM's or operation's record could not be written (e.g. a full disk): that change did not happen.",
    },
  ],
  [
    "disk-copy-failed",
    {
      status: 500,
      meaning: "The new VM's root disk could not be created (e.g. a full disk); nothing was created.",
    },
  ],
  [
    "move-failed",
    {
      status: 502,
      meaning:
        "In a cluster: the VM could not be sent to the other host (it did not answer, or refused the VM); the message says where the VM is (a RUNNING one runs on where it was).",
    },
  ],
  [
    "migration-unconfirmed",
    {
      status: 502,
      meaning:
        "Between a daemon and its VMM only: a live migration's whole stream went but the target did not confirm; the guest waits paused until the daemon knows who owns the VM (a move then ends move-failed).",
    },
  ],
  [
    "import-failed",
    {
      status: 500,
      meaning: "import: the VM could not be written (e.g. a full disk); nothing was created.",
    },
  ],
  ["invalid-config", { status: 500, meaning: "The daemon's configuration is unusable." }],
  [
    "web-unavailable",
    { status: 500, meaning: "The web console's files could not be built (the message says why)." },
  ],
  ["internal", { status: 500, meaning: "An unexpected error in the daemon (a bug: please report it)." }],
]);

/** The HTTP status for `code`; 500 for a code the table lacks (which error-codes.test.ts rules out). */
export function statusOfCode(code: string): number {
  return ERROR_CODES.get(code)?.status ?? 500;
}

/** The table as docs/hypervisor.md shows it (between its error-codes markers). */
export function errorCodesMarkdown(): string {
  const rows = [...ERROR_CODES]
    .sort(([a, x], [b, y]) => x.status - y.status || a.localeCompare(b))
    .map(([code, { status, meaning }]) => `| ${status} | \`${code}\` | ${meaning} |`);
  return ["| HTTP | code | meaning |", "|---|---|---|", ...rows].join("\n");
}
