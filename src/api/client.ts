// The client of the tsvm API, over the daemon's Unix socket or localhost TCP with the bearer token; what
// the CLI and tests use. Errors come back as ApiError with the HTTP status and the server's reason.

import { request } from "node:http";
import { connect } from "node:net";
import { pipeline } from "node:stream/promises";
import { type RawData, WebSocket } from "ws";
import { apiSocketPath } from "./data-dir.ts";
import type {
  ApiErrorBody,
  ClusterHost,
  ClusterHostList,
  HostDrainResult,
  EventList,
  EventStreamGap,
  ExecChunk,
  ExecRequest,
  HostInfo,
  InsertInstanceRequest,
  InsertNetworkRequest,
  InsertSnapshotRequest,
  Instance,
  InstanceList,
  InstanceStats,
  MachineTypeList,
  Operation,
  OperationList,
  SerialPortOutput,
  Network,
  NetworkList,
  Snapshot,
  SnapshotList,
  UpdateInstanceRequest,
  VmEvent,
  WebConsole,
} from "./types.ts";
import { API_BASE, MAX_WAIT_SECONDS } from "./types.ts";
/** Largest console message accepted from the daemon (it sends what one read of the VMM gave, ≤ 64 KiB). */
const MAX_CONSOLE_FRAME_BYTES = 16 * 1024 * 1024;

export type ApiEndpoint =
  | { readonly socketPath: string }
  | { readonly host: string; readonly port: number; readonly token: string };

export class ApiError extends Error {
  constructor(
    /** HTTP status, or 0 when the daemon could not be reached. */
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiError";
  }
}

export class ApiClient {
  constructor(readonly endpoint: ApiEndpoint) {}

  /** The client for the daemon of the data directory at `home` (its Unix socket). */
  static forDataDir(home: string): ApiClient {
    return new ApiClient({ socketPath: apiSocketPath(home) });
  }

  listInstances(): Promise<InstanceList> {
    return this.call("GET", "/instances");
  }
  getInstance(name: string): Promise<Instance> {
    return this.call("GET", `/instances/${encodeURIComponent(name)}`);
  }
  insertInstance(req: InsertInstanceRequest): Promise<Operation> {
    return this.call("POST", "/instances", req);
  }
  deleteInstance(name: string): Promise<Operation> {
    return this.call("DELETE", `/instances/${encodeURIComponent(name)}`);
  }
  instanceAction(
    name: string,
    action: "start" | "stop" | "reset" | "suspend" | "resume",
  ): Promise<Operation> {
    return this.call("POST", `/instances/${encodeURIComponent(name)}/${action}`);
  }
  /** PATCH: changes a TERMINATED VM's definition (its port forwards). */
  updateInstance(name: string, req: UpdateInstanceRequest): Promise<Operation> {
    return this.call("PATCH", `/instances/${encodeURIComponent(name)}`, req);
  }
  /** Moves the VM to another host of the cluster (docs/cluster.md, "Moving VMs"). */
  moveInstance(name: string, host: string): Promise<Operation> {
    return this.call("POST", `/instances/${encodeURIComponent(name)}/move`, { host });
  }
  setMachineType(name: string, machineType: string): Promise<Operation> {
    return this.call("POST", `/instances/${encodeURIComponent(name)}/setMachineType`, { machineType });
  }
  listNetworks(): Promise<NetworkList> {
    return this.call("GET", "/networks");
  }
  getNetwork(name: string): Promise<Network> {
    return this.call("GET", `/networks/${encodeURIComponent(name)}`);
  }
  /** Makes the daemon serve the web console on `listen` (HOST:PORT) and issue a one-time login URL. */
  openWebConsole(listen?: string): Promise<WebConsole> {
    return this.call("POST", "/webConsole", listen === undefined ? {} : { listen });
  }
  insertNetwork(req: InsertNetworkRequest): Promise<Operation> {
    return this.call("POST", "/networks", req);
  }
  deleteNetwork(name: string): Promise<Operation> {
    return this.call("DELETE", `/networks/${encodeURIComponent(name)}`);
  }
  listSnapshots(name: string): Promise<SnapshotList> {
    return this.call("GET", `/instances/${encodeURIComponent(name)}/snapshots`);
  }
  getSnapshot(name: string, snapshot: string): Promise<Snapshot> {
    return this.call(
      "GET",
      `/instances/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot)}`,
    );
  }
  createSnapshot(name: string, req: InsertSnapshotRequest): Promise<Operation> {
    return this.call("POST", `/instances/${encodeURIComponent(name)}/snapshots`, req);
  }
  deleteSnapshot(name: string, snapshot: string): Promise<Operation> {
    return this.call(
      "DELETE",
      `/instances/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot)}`,
    );
  }
  restoreSnapshot(name: string, snapshot: string): Promise<Operation> {
    return this.call(
      "POST",
      `/instances/${encodeURIComponent(name)}/snapshots/${encodeURIComponent(snapshot)}/restore`,
    );
  }
  getStats(name: string): Promise<InstanceStats> {
    return this.call("GET", `/instances/${encodeURIComponent(name)}/stats`);
  }
  getSerialPortOutput(name: string, start = 0): Promise<SerialPortOutput> {
    return this.call("GET", `/instances/${encodeURIComponent(name)}/serialPortOutput?start=${start}`);
  }
  listOperations(limit = 100): Promise<OperationList> {
    return this.call("GET", `/operations?limit=${limit}`);
  }
  getOperation(id: string): Promise<Operation> {
    return this.call("GET", `/operations/${encodeURIComponent(id)}`);
  }
  /** One wait call: returns when the operation is DONE or after `timeoutSec` (at most 120). */
  waitOperation(id: string, timeoutSec = MAX_WAIT_SECONDS): Promise<Operation> {
    return this.call("POST", `/operations/${encodeURIComponent(id)}/wait?timeoutSec=${timeoutSec}`);
  }
  /** Waits however long it takes, calling `onProgress` after each wait call. */
  async waitUntilDone(id: string, onProgress?: (op: Operation) => void, stepSec = 2): Promise<Operation> {
    for (;;) {
      const op = await this.waitOperation(id, stepSec);
      onProgress?.(op);
      if (op.status === "DONE") return op;
    }
  }
  listEvents(after = 0, instance?: string): Promise<EventList> {
    const q = new URLSearchParams({ after: String(after) });
    if (instance) q.set("instance", instance);
    return this.call("GET", `/events?${q}`);
  }
  listMachineTypes(): Promise<MachineTypeList> {
    return this.call("GET", "/machineTypes");
  }
  listHosts(): Promise<ClusterHostList> {
    return this.call("GET", "/hosts");
  }
  drainHost(name: string): Promise<HostDrainResult> {
    return this.call("POST", `/hosts/${encodeURIComponent(name)}/drain`);
  }
  undrainHost(name: string): Promise<ClusterHost> {
    return this.call("POST", `/hosts/${encodeURIComponent(name)}/undrain`);
  }
  getHost(): Promise<HostInfo> {
    return this.call("GET", "/host");
  }

  /**
   * Follows the event stream (events after `after`, then new ones) until `signal` aborts or the daemon
   * closes the stream. `onDropped` hears of events lost because this client fell too far behind.
   */
  watchEvents(
    after: number,
    onEvent: (e: VmEvent) => void,
    signal?: AbortSignal,
    instance?: string,
    onDropped?: (events: number) => void,
  ): Promise<void> {
    const q = new URLSearchParams({ after: String(after), watch: "true" });
    if (instance) q.set("instance", instance);
    return new Promise((resolve, reject) => {
      const req = request({
        ...this.target(),
        method: "GET",
        path: `${API_BASE}/events?${q}`,
        headers: this.headers(),
      });
      signal?.addEventListener("abort", () => {
        req.destroy();
        resolve();
      });
      req.on("error", (e) => (signal?.aborted ? resolve() : reject(unreachable(this.endpoint, e))));
      req.on("response", (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then((text) => reject(toApiError(res.statusCode ?? 0, text)), reject);
          return;
        }
        res.setEncoding("utf8");
        let buffer = "";
        res.on("data", (chunk: string) => {
          buffer += chunk;
          for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            if (!line) continue;
            const msg = JSON.parse(line) as VmEvent | EventStreamGap;
            if ("seq" in msg) onEvent(msg);
            else onDropped?.(msg.dropped);
          }
        });
        res.on("end", () => resolve());
        res.on("error", () => resolve());
      });
      req.end();
    });
  }

  /**
   * Runs a command in the VM's guest (POST /instances/{name}/exec): `onOutput` gets each chunk of its
   * stdout/stderr as it arrives; resolves with its exit status. Rejects ApiError: the server's error, the
   * stream's late error (status 500 with its reason), or `exec-interrupted` when the stream ends without
   * an exit status. Aborting `signal` closes the request, which kills the command. `onDropped` hears of
   * output lost because this client read more slowly than the guest wrote.
   */
  exec(
    name: string,
    req: ExecRequest,
    onOutput: (bytes: Buffer, stream: "stdout" | "stderr") => void,
    signal?: AbortSignal,
    onDropped?: (bytes: number) => void,
  ): Promise<{ exitCode: number }> {
    const payload = JSON.stringify(req);
    return new Promise((resolve, reject) => {
      let settled = false;
      const settle = (fn: () => void) => {
        if (settled) return;
        settled = true;
        fn();
      };
      const http = request({
        ...this.target(),
        method: "POST",
        path: `${API_BASE}/instances/${encodeURIComponent(name)}/exec`,
        headers: {
          ...this.headers(),
          "content-type": "application/json",
          "content-length": Buffer.byteLength(payload),
        },
      });
      const onAbort = () => {
        http.destroy();
        settle(() => reject(new ApiError(0, "exec-cancelled", "the command was cancelled")));
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      http.on("close", () => signal?.removeEventListener("abort", onAbort));
      http.on("error", (e) => settle(() => reject(unreachable(this.endpoint, e))));
      http.on("response", (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then(
            (text) => settle(() => reject(toApiError(res.statusCode ?? 0, text))),
            (e: Error) => settle(() => reject(e)),
          );
          return;
        }
        res.setEncoding("utf8");
        let buffer = "";
        const interrupted = () =>
          new ApiError(0, "exec-interrupted", "the daemon closed the exec stream before the command ended");
        res.on("data", (chunk: string) => {
          buffer += chunk;
          for (let nl = buffer.indexOf("\n"); nl >= 0; nl = buffer.indexOf("\n")) {
            const line = buffer.slice(0, nl);
            buffer = buffer.slice(nl + 1);
            if (!line) continue;
            let msg: ExecChunk;
            try {
              msg = JSON.parse(line) as ExecChunk;
            } catch {
              http.destroy();
              return settle(() =>
                reject(new ApiError(200, "bad-response", "the daemon sent an exec line that is not JSON")),
              );
            }
            if ("stream" in msg) onOutput(Buffer.from(msg.data, "base64"), msg.stream);
            else if ("dropped" in msg) onDropped?.(msg.dropped);
            else if ("exitCode" in msg) settle(() => resolve({ exitCode: msg.exitCode }));
            else if ("error" in msg)
              settle(() => reject(new ApiError(500, msg.error.code, msg.error.message)));
          }
        });
        res.on("end", () => settle(() => reject(interrupted())));
        res.on("error", () => settle(() => reject(interrupted())));
      });
      http.end(payload);
    });
  }

  /**
   * Downloads the VM's export file (GET /instances/{name}/export) into `dest`, with back-pressure;
   * `onProgress(received, total)` after each chunk. Resolves once all of it is written; rejects ApiError
   * (the daemon's refusal, or `export-interrupted` when the answer ended short of its length) or the
   * error `dest` failed with (a full disk).
   */
  exportInstance(
    name: string,
    dest: NodeJS.WritableStream,
    options: { snapshots?: boolean; onProgress?: (received: number, total: number) => void } = {},
  ): Promise<void> {
    const q = options.snapshots === false ? "?snapshots=false" : "";
    return new Promise((resolve, reject) => {
      const req = request({
        ...this.target(),
        method: "GET",
        path: `${API_BASE}/instances/${encodeURIComponent(name)}/export${q}`,
        headers: this.headers(),
      });
      req.on("error", (e) => reject(unreachable(this.endpoint, e)));
      req.on("response", (res) => {
        if (res.statusCode !== 200) {
          readAll(res).then((text) => reject(toApiError(res.statusCode ?? 0, text)), reject);
          return;
        }
        const total = Number(res.headers["content-length"] ?? 0);
        let received = 0;
        res.on("data", (chunk: Buffer) => {
          received += chunk.length;
          options.onProgress?.(received, total);
        });
        pipeline(res, dest).then(
          () =>
            received === total
              ? resolve()
              : reject(
                  new ApiError(
                    0,
                    "export-interrupted",
                    `the daemon ended the export after ${received} of ${total} bytes`,
                  ),
                ),
          (e: Error) => {
            req.destroy();
            reject(
              received < total && !(e as NodeJS.ErrnoException).syscall
                ? new ApiError(
                    0,
                    "export-interrupted",
                    `the daemon ended the export after ${received} of ${total} bytes (${e.message})`,
                  )
                : e,
            );
          },
        );
      });
      req.end();
    });
  }

  /**
   * Uploads an export file from `source` (POST /instances?source=archive), streamed with back-pressure;
   * `onProgress(sent)` as it goes. Resolves with the insert operation once the daemon has verified the
   * whole file and created the VM; rejects ApiError (bad-archive, already-exists, …). An answer that comes
   * before the upload ended (a refusal) stops the upload.
   */
  importInstance(
    source: NodeJS.ReadableStream,
    options: { name?: string; dropMissingNetworks?: boolean; onProgress?: (sent: number) => void } = {},
  ): Promise<Operation> {
    const q = new URLSearchParams({ source: "archive" });
    if (options.name !== undefined) q.set("name", options.name);
    if (options.dropMissingNetworks) q.set("dropMissingNetworks", "true");
    return new Promise((resolve, reject) => {
      let answered = false;
      const req = request({
        ...this.target(),
        method: "POST",
        path: `${API_BASE}/instances?${q}`,
        headers: { ...this.headers(), "content-type": "application/octet-stream" },
      });
      const stopSending = () => {
        source.unpipe(req);
        req.end();
      };
      req.on("error", (e) => {
        if (!answered) reject(unreachable(this.endpoint, e));
      });
      req.on("response", (res) => {
        answered = true;
        stopSending();
        readAll(res).then((text) => {
          if (res.statusCode !== 200) return reject(toApiError(res.statusCode ?? 0, text));
          try {
            resolve(JSON.parse(text) as Operation);
          } catch {
            reject(new ApiError(200, "bad-response", "the daemon sent a response that is not JSON"));
          }
        }, reject);
      });
      let sent = 0;
      source.on("data", (chunk: Buffer) => {
        sent += chunk.length;
        options.onProgress?.(sent);
      });
      source.on("error", (e: Error) => {
        if (answered) return;
        answered = true;
        req.destroy();
        reject(e);
      });
      source.pipe(req);
    });
  }

  /**
   * Attaches to the VM's serial console over WebSocket: `onData` gets the console output from now on,
   * `write` types into it. Several attachments may be open at once (each sees all output).
   */
  async openSerialPort(name: string): Promise<SerialPortConnection> {
    return new SerialPortConnection(
      await this.webSocket(
        `${API_BASE}/instances/${encodeURIComponent(name)}/serialPort`,
        MAX_CONSOLE_FRAME_BYTES,
      ),
    );
  }

  /** A WebSocket to `path`, open and paused (resume it once listening); rejects ApiError with the daemon's answer when it refused the upgrade. */
  webSocket(path: string, maxPayload: number): Promise<WebSocket> {
    const { endpoint } = this;
    return new Promise((resolve, reject) => {
      const ws =
        "socketPath" in endpoint
          ? new WebSocket(`ws://localhost${path}`, {
              createConnection: () => connect(endpoint.socketPath),
              maxPayload,
              perMessageDeflate: false,
            })
          : new WebSocket(`ws://${endpoint.host}:${endpoint.port}${path}`, {
              headers: this.headers(),
              maxPayload,
              perMessageDeflate: false,
            });
      let settled = false;
      ws.once("open", () => {
        settled = true;
        // Messages right behind the handshake would be emitted before the caller's listeners exist (the
        // promise resolves a tick later): they wait until the connection object resumes the socket.
        ws.pause();
        resolve(ws);
      });
      // The daemon refused the upgrade with an ordinary answer: its error body says why.
      ws.once("unexpected-response", (_req, res) => {
        settled = true;
        readAll(res)
          .then((text) => reject(toApiError(res.statusCode ?? 0, text)), reject)
          .finally(() => ws.terminate());
      });
      ws.on("error", (e) => {
        if (!settled) {
          settled = true;
          reject(unreachable(endpoint, e));
        }
      });
    });
  }

  /** One request; resolves the parsed 200 body, rejects ApiError. */
  call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const payload = body === undefined ? undefined : JSON.stringify(body);
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = this.headers();
      if (payload !== undefined) {
        headers["content-type"] = "application/json";
        headers["content-length"] = Buffer.byteLength(payload);
      }
      const req = request({ ...this.target(), method, path: `${API_BASE}${path}`, headers });
      req.on("error", (e) => reject(unreachable(this.endpoint, e)));
      req.on("response", (res) => {
        readAll(res).then((text) => {
          if (res.statusCode === 200) {
            try {
              resolve(JSON.parse(text) as T);
            } catch {
              reject(
                new ApiError(res.statusCode, "bad-response", "the daemon sent a response that is not JSON"),
              );
            }
          } else reject(toApiError(res.statusCode ?? 0, text));
        }, reject);
      });
      req.end(payload);
    });
  }

  private target(): { socketPath: string } | { host: string; port: number } {
    return "socketPath" in this.endpoint
      ? { socketPath: this.endpoint.socketPath }
      : { host: this.endpoint.host, port: this.endpoint.port };
  }

  private headers(): Record<string, string> {
    return "token" in this.endpoint ? { authorization: `Bearer ${this.endpoint.token}` } : {};
  }
}

/** The client's end of a serial console WebSocket. */
export class SerialPortConnection {
  /** Resolves when the connection is gone (closed by either side). */
  readonly closed: Promise<void>;
  private listener: ((bytes: Buffer) => void) | undefined;
  private readonly early: Buffer[] = [];

  constructor(private readonly ws: WebSocket) {
    this.closed = new Promise((resolve) => ws.once("close", () => resolve()));
    // A protocol error ends the connection ('close' follows); nothing else is to be done about it.
    ws.on("error", () => {});
    ws.on("message", (data: RawData) => {
      // binaryType is "nodebuffer": each message is one Buffer.
      const bytes = data as Buffer;
      if (this.listener) this.listener(bytes);
      else this.early.push(bytes);
    });
    ws.resume();
  }

  /** Receives console output; output that arrived before the first call is delivered at once. */
  onData(listener: (bytes: Buffer) => void): void {
    this.listener = listener;
    for (const b of this.early.splice(0)) listener(b);
  }

  /**
   * Stops reading console output (the daemon then holds it back, and the VMM drops what its bound cannot
   * hold and later says how much): for a reader that cannot keep up, say a blocked terminal.
   */
  pause(): void {
    this.ws.pause();
  }

  resume(): void {
    this.ws.resume();
  }

  write(bytes: Uint8Array | string): void {
    const payload = typeof bytes === "string" ? Buffer.from(bytes, "utf8") : bytes;
    if (this.ws.readyState === WebSocket.OPEN) this.ws.send(payload, { binary: true });
  }

  close(): void {
    if (this.ws.readyState === WebSocket.OPEN) this.ws.close(1000, "detached");
  }
}

function readAll(res: NodeJS.ReadableStream): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on("data", (c: Buffer) => chunks.push(c));
    res.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")));
    res.on("error", reject);
  });
}

function toApiError(status: number, text: string): ApiError {
  try {
    const body = JSON.parse(text) as ApiErrorBody;
    return new ApiError(status, body.error.errors[0]?.reason ?? "unknown", body.error.message);
  } catch {
    return new ApiError(status, "bad-response", `the daemon answered HTTP ${status}: ${text.slice(0, 200)}`);
  }
}

function unreachable(endpoint: ApiEndpoint, e: Error): ApiError {
  const where = "socketPath" in endpoint ? endpoint.socketPath : `${endpoint.host}:${endpoint.port}`;
  const code = (e as NodeJS.ErrnoException).code ?? "";
  return new ApiError(0, "unreachable", `cannot reach the tsvm daemon at ${where} (${code || e.message})`);
}
