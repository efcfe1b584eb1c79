// The console's client of the tsvm API: same-origin fetch calls carrying the session cookie (the page
// never holds the API token), errors raised with the API's own words, and the NDJSON event stream.

import type {
  ApiErrorBody,
  EventList,
  HostInfo,
  InsertInstanceRequest,
  Instance,
  InstanceList,
  InstanceStats,
  MachineTypeList,
  Operation,
  PortForwardRequest,
  SnapshotList,
  VmEvent,
} from "../../api/types.ts";

/** The API's path prefix (API_BASE in src/api/types.ts; a type-only import keeps the schemas out of the bundle). */
const API = "/v1";

/** An API error: the message as the API words it, and its reason (an error code of docs/hypervisor.md). */
export class ConsoleApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "ConsoleApiError";
  }
}

async function failure(res: Response): Promise<ConsoleApiError> {
  const text = await res.text();
  try {
    const body = JSON.parse(text) as ApiErrorBody;
    return new ConsoleApiError(res.status, body.error.errors[0]?.reason ?? "", body.error.message);
  } catch {
    return new ConsoleApiError(res.status, "", `${res.status} ${res.statusText}`);
  }
}

export async function call<T>(method: string, path: string, body?: unknown): Promise<T> {
  let res: Response;
  try {
    res = await fetch(`${API}${path}`, {
      method,
      credentials: "same-origin",
      headers: body === undefined ? {} : { "content-type": "application/json" },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch {
    throw new ConsoleApiError(0, "unreachable", "the tsvm daemon does not answer (is it running?)");
  }
  if (!res.ok) throw await failure(res);
  return (await res.json()) as T;
}

const vm = (name: string) => `/instances/${encodeURIComponent(name)}`;

export const api = {
  listInstances: () => call<InstanceList>("GET", "/instances"),
  getInstance: (name: string) => call<Instance>("GET", vm(name)),
  insertInstance: (req: InsertInstanceRequest) => call<Operation>("POST", "/instances", req),
  action: (name: string, action: "start" | "stop" | "reset" | "suspend" | "resume") =>
    call<Operation>("POST", `${vm(name)}/${action}`),
  deleteInstance: (name: string) => call<Operation>("DELETE", vm(name)),
  stats: (name: string) => call<InstanceStats>("GET", `${vm(name)}/stats`),
  listSnapshots: (name: string) => call<SnapshotList>("GET", `${vm(name)}/snapshots`),
  insertSnapshot: (name: string, snapshot: string) =>
    call<Operation>("POST", `${vm(name)}/snapshots`, { name: snapshot }),
  restoreSnapshot: (name: string, snapshot: string) =>
    call<Operation>("POST", `${vm(name)}/snapshots/${encodeURIComponent(snapshot)}/restore`),
  deleteSnapshot: (name: string, snapshot: string) =>
    call<Operation>("DELETE", `${vm(name)}/snapshots/${encodeURIComponent(snapshot)}`),
  updateForwards: (name: string, forwards: PortForwardRequest[]) =>
    call<Operation>("PATCH", vm(name), { forwards }),
  listMachineTypes: () => call<MachineTypeList>("GET", "/machineTypes"),
  host: () => call<HostInfo>("GET", "/host"),
  events: (instance?: string) =>
    call<EventList>(
      "GET",
      `/events?after=0&limit=1${instance ? `&instance=${encodeURIComponent(instance)}` : ""}`,
    ),
};

/** Waits for `op` to be DONE; a failed operation is raised with its error's message. */
export async function settle(op: Operation): Promise<Operation> {
  let current = op;
  while (current.status !== "DONE")
    current = await call<Operation>(
      "POST",
      `/operations/${encodeURIComponent(current.id)}/wait?timeoutSec=10`,
    );
  if (current.error) throw new ConsoleApiError(0, current.error.code, current.error.message);
  return current;
}

/**
 * Follows the event stream from `after` until `signal` aborts, calling `onEvent` per event (null: events
 * were lost, look again); reconnects after the stream ends (a daemon restart), from the last event seen.
 */
export async function followEvents(
  after: number,
  onEvent: (e: VmEvent | null) => void,
  signal: AbortSignal,
  onProblem: (message: string | null) => void,
): Promise<void> {
  let last = after;
  while (!signal.aborted) {
    try {
      const res = await fetch(`${API}/events?watch=true&after=${last}`, {
        credentials: "same-origin",
        signal,
      });
      if (!res.ok || !res.body) throw await failure(res);
      onProblem(null);
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let pending = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        pending += value;
        let nl = pending.indexOf("\n");
        while (nl >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          nl = pending.indexOf("\n");
          if (!line) continue;
          const parsed = JSON.parse(line) as VmEvent | { dropped: number };
          if ("seq" in parsed) last = parsed.seq;
          onEvent("seq" in parsed ? parsed : null);
        }
      }
    } catch (e) {
      if (signal.aborted) return;
      onProblem(e instanceof Error ? e.message : String(e));
      if (e instanceof ConsoleApiError && e.status === 401) return;
    }
    await new Promise((r) => setTimeout(r, 2000));
  }
}
