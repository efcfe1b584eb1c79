// The REST/JSON API server, modeled on the Compute Engine instances API: routes → hypervisor actions,
// validation at the boundary with Compute Engine-style error bodies, a Unix socket (guarded by file mode)
// and optionally localhost TCP guarded by a bearer token.

import { timingSafeEqual } from "node:crypto";
import { chmod, unlink } from "node:fs/promises";
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerResponse,
  STATUS_CODES,
} from "node:http";
import { connect } from "node:net";
import { type Duplex, Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { VmEventSource } from "../../hypervisor/event-log.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";
import { MACHINE_TYPES } from "../../hypervisor/machine-types.ts";
import { statusOfCode } from "../error-codes.ts";
import { buildOpenApiDocument } from "../openapi.ts";
import {
  API_BASE,
  type ApiErrorBody,
  DEFAULT_AGENT_WAIT_SECONDS,
  type EventList,
  type ExecChunk,
  type HostInfo,
  type Instance,
  type InstanceList,
  type NetworkList,
  MAX_AGENT_WAIT_SECONDS,
  MAX_REQUEST_BYTES,
  MAX_SESSION_COMMAND_BYTES,
  MAX_TERMINAL_CELLS,
  MAX_WAIT_SECONDS,
  type MachineTypeList,
  type OperationList,
  SERIAL_PORT_PAGE_BYTES,
  type SerialPortOutput,
  type SnapshotList,
  type OpenWebConsoleRequest,
  type WebConsole,
} from "../types.ts";
import type { ClusterHost, ClusterHostList, HostDrainResult } from "../schemas/host-schemas.ts";
import type { ClusterRouting } from "./cluster-routing.ts";
import { INCOMING_MOVE_PATH, LIVE_MOVE_PATH } from "../../hypervisor/cluster/move-transport.ts";
import type { LiveMoveInResult, MoveInResult } from "../schemas/move-schemas.ts";
import { parseLiveMoveOffer, parseMoveOffer } from "./move-offer.ts";
import { followEvents } from "./event-stream.ts";
import { checkLocalHost, LOCAL_HOST_NAME, localHosts } from "./local-host.ts";
import { SerialPortSockets } from "./serial-port-socket.ts";
import { SessionSockets } from "./session-socket.ts";
import {
  ApiFailure,
  validateExec,
  validateInsert,
  validateInsertNetwork,
  validateInsertSnapshot,
  validateOpenWebConsole,
  validateMove,
  validateSetMachineType,
  validateUpdate,
} from "./validation.ts";

/** exec output queued for one client past which no more is read from the VMM until the client drains. */
export const EXEC_HIGH_WATER_BYTES = 256 * 1024;

type Method = "GET" | "POST" | "PATCH" | "DELETE";

interface RequestContext {
  readonly params: Readonly<Record<string, string>>;
  readonly query: URLSearchParams;
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  body(): Promise<unknown>;
}

/** A handler returns the 200 body, or `STREAMING` when it has taken over the response. */
const STREAMING = Symbol("streaming");
type Handler = (ctx: RequestContext) => Promise<unknown>;

export interface Route {
  readonly method: Method;
  /** Path template as in the OpenAPI document: /v1/instances/{name}. */
  readonly path: string;
  readonly operationId: string;
  readonly handler: Handler;
}

/** Routes served by upgrading the connection to a WebSocket (documented like the others). */
export const WEBSOCKET_ROUTES: ReadonlyArray<Omit<Route, "handler">> = [
  {
    method: "GET",
    path: `${API_BASE}/instances/{name}/serialPort`,
    operationId: "instances.connectSerialPort",
  },
  {
    method: "GET",
    path: `${API_BASE}/instances/{name}/sessions`,
    operationId: "instances.openSession",
  },
];

export interface ApiServerOptions {
  /** Required on TCP; the Unix socket relies on its file mode (0600, in a 0700 directory). */
  readonly token?: string;
  /** A cluster member's routing (cluster-routing.ts): forwarding to other hosts, the whole cluster's lists. */
  readonly cluster?: ClusterRouting;
  /** The events the API lists and follows: a cluster's (cluster/etcd-event-log.ts); the hypervisor's if absent. */
  readonly events?: VmEventSource;
  /** Serves the web console (POST /v1/webConsole); absent: this daemon has none. */
  readonly openWebConsole?: (request: OpenWebConsoleRequest) => Promise<WebConsole>;
}

/** How long a client may go on sending an upload that was refused before it is cut off. */
const REFUSED_UPLOAD_DRAIN_MS = 30_000;

/**
 * After a refusal given before an upload's body was all read: the rest is read and thrown away rather than
 * the connection closed at once. A client still sending into a closed connection gets a reset (EPIPE,
 * ECONNRESET) that can reach it before the refusal does, and the refusal is lost. The client stops sending
 * when the answer comes; one that goes on longer than REFUSED_UPLOAD_DRAIN_MS is cut off.
 */
function drainRefusedUpload(req: IncomingMessage): void {
  if (req.readableEnded) return;
  const cutOff = setTimeout(() => req.socket.destroy(), REFUSED_UPLOAD_DRAIN_MS);
  cutOff.unref();
  req.once("close", () => clearTimeout(cutOff));
  req.resume();
}

function intParam(query: URLSearchParams, key: string, min: number, max: number, fallback: number): number {
  const raw = query.get(key);
  if (raw === null) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < min || n > max)
    throw new ApiFailure(
      400,
      "invalid-argument",
      `query parameter '${key}' must be a whole number from ${min} to ${max}`,
    );
  return n;
}

export class ApiServer {
  readonly routes: readonly Route[];
  private readonly servers: Server[] = [];
  /** Event streams being followed (ended when the server closes). */
  private readonly streams = new Set<ServerResponse>();
  /** Built on first request: the same document the schemas give (src/api/openapi.ts). */
  private document: unknown;
  /** exec answers in progress. */
  private readonly execs = new Set<ServerResponse>();
  private readonly consoles = new SerialPortSockets();
  private readonly sessions = new SessionSockets();
  /** When this server was made: a single host's "joinedAt" in the hosts collection. */
  private readonly startedAt = new Date().toISOString();

  constructor(
    private readonly hv: Hypervisor,
    private readonly options: ApiServerOptions = {},
  ) {
    const cluster = options.cluster;
    const instance = (name: string): Instance => (cluster ? cluster.annotate(hv.get(name)) : hv.get(name));
    this.routes = [
      {
        method: "GET",
        path: `${API_BASE}/instances`,
        operationId: "instances.list",
        handler: async (): Promise<InstanceList> => {
          const { vms, broken } = hv.list();
          const local: InstanceList = { kind: "tsvm#instanceList", items: vms, unreachable: broken };
          return cluster ? cluster.wholeList(local) : local;
        },
      },
      {
        method: "POST",
        path: `${API_BASE}/instances`,
        operationId: "instances.insert",
        handler: async (c) => {
          const source = c.query.get("source");
          if (source === "archive") return this.importInstance(c);
          if (source !== null)
            throw new ApiFailure(
              400,
              "invalid-argument",
              "query parameter 'source' must be 'archive' when given",
            );
          const insert = validateInsert(await c.body());
          if (!cluster) checkLocalHost(insert.host);
          return hv.insert(insert);
        },
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}`,
        operationId: "instances.get",
        handler: async (c) => instance(c.params.name!),
      },
      {
        method: "PATCH",
        path: `${API_BASE}/instances/{name}`,
        operationId: "instances.update",
        handler: async (c) => hv.update(c.params.name!, validateUpdate(await c.body())),
      },
      {
        method: "DELETE",
        path: `${API_BASE}/instances/{name}`,
        operationId: "instances.delete",
        handler: async (c) => hv.delete(c.params.name!),
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}/export`,
        operationId: "instances.export",
        handler: async (c) => this.exportInstance(c),
      },
      ...(["start", "stop", "reset", "suspend", "resume"] as const).map(
        (action): Route => ({
          method: "POST",
          path: `${API_BASE}/instances/{name}/${action}`,
          operationId: `instances.${action}`,
          handler: async (c) => {
            await c.body(); // none expected; still bounded and checked for JSON
            return hv[action](c.params.name!);
          },
        }),
      ),
      {
        method: "POST",
        path: `${API_BASE}/instances/{name}/setMachineType`,
        operationId: "instances.setMachineType",
        handler: async (c) =>
          hv.setMachineType(c.params.name!, validateSetMachineType(await c.body()).machineType),
      },
      {
        method: "POST",
        path: `${API_BASE}/instances/{name}/move`,
        operationId: "instances.move",
        handler: async (c) => hv.move(c.params.name!, validateMove(await c.body()).host),
      },
      {
        method: "POST",
        path: INCOMING_MOVE_PATH,
        operationId: "migrations.incoming",
        handler: async (c) => this.moveIn(c),
      },
      {
        method: "POST",
        path: LIVE_MOVE_PATH,
        operationId: "migrations.live",
        handler: async (c) => this.moveInLive(c),
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}/snapshots`,
        operationId: "snapshots.list",
        handler: async (c): Promise<SnapshotList> => ({
          kind: "tsvm#snapshotList",
          items: await hv.listSnapshots(c.params.name!),
        }),
      },
      {
        method: "POST",
        path: `${API_BASE}/instances/{name}/snapshots`,
        operationId: "snapshots.insert",
        handler: async (c) => {
          const req = validateInsertSnapshot(await c.body());
          return hv.createSnapshot(c.params.name!, req.name, req.description ?? "");
        },
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}/snapshots/{snapshot}`,
        operationId: "snapshots.get",
        handler: async (c) => hv.getSnapshot(c.params.name!, c.params.snapshot!),
      },
      {
        method: "DELETE",
        path: `${API_BASE}/instances/{name}/snapshots/{snapshot}`,
        operationId: "snapshots.delete",
        handler: async (c) => hv.deleteSnapshot(c.params.name!, c.params.snapshot!),
      },
      {
        method: "POST",
        path: `${API_BASE}/instances/{name}/snapshots/{snapshot}/restore`,
        operationId: "snapshots.restore",
        handler: async (c) => {
          await c.body(); // none expected; still bounded and checked for JSON
          return hv.restoreSnapshot(c.params.name!, c.params.snapshot!);
        },
      },
      {
        method: "GET",
        path: `${API_BASE}/networks`,
        operationId: "networks.list",
        handler: async (): Promise<NetworkList> => ({
          kind: "tsvm#networkList",
          items: await hv.listNetworks(),
        }),
      },
      {
        method: "POST",
        path: `${API_BASE}/networks`,
        operationId: "networks.insert",
        handler: async (c) => hv.insertNetwork(validateInsertNetwork(await c.body())),
      },
      {
        method: "GET",
        path: `${API_BASE}/networks/{name}`,
        operationId: "networks.get",
        handler: async (c) => hv.getNetwork(c.params.name!),
      },
      {
        method: "DELETE",
        path: `${API_BASE}/networks/{name}`,
        operationId: "networks.delete",
        handler: async (c) => hv.deleteNetwork(c.params.name!),
      },
      {
        method: "POST",
        path: `${API_BASE}/instances/{name}/exec`,
        operationId: "instances.exec",
        handler: async (c) => this.exec(c),
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}/stats`,
        operationId: "instances.stats",
        handler: async (c) => ({
          kind: "tsvm#instanceStats",
          name: c.params.name!,
          stats: await hv.stats(c.params.name!),
        }),
      },
      {
        method: "GET",
        path: `${API_BASE}/instances/{name}/serialPortOutput`,
        operationId: "instances.getSerialPortOutput",
        handler: async (c): Promise<SerialPortOutput> => ({
          kind: "tsvm#serialPortOutput",
          ...(await hv.serialPortOutput(
            c.params.name!,
            intParam(c.query, "start", 0, Number.MAX_SAFE_INTEGER, 0),
            SERIAL_PORT_PAGE_BYTES,
          )),
        }),
      },
      {
        method: "GET",
        path: `${API_BASE}/operations`,
        operationId: "operations.list",
        handler: async (c): Promise<OperationList> => ({
          kind: "tsvm#operationList",
          items: hv.listOperations(intParam(c.query, "limit", 1, 1000, 100)),
        }),
      },
      {
        method: "GET",
        path: `${API_BASE}/operations/{id}`,
        operationId: "operations.get",
        handler: async (c) => hv.getOperation(c.params.id!),
      },
      {
        method: "POST",
        path: `${API_BASE}/operations/{id}/wait`,
        operationId: "operations.wait",
        handler: async (c) => {
          await c.body();
          const seconds = intParam(c.query, "timeoutSec", 0, MAX_WAIT_SECONDS, MAX_WAIT_SECONDS);
          return hv.waitOperation(c.params.id!, seconds * 1000);
        },
      },
      {
        method: "GET",
        path: `${API_BASE}/events`,
        operationId: "events.list",
        handler: async (c) => this.events(c),
      },
      {
        method: "GET",
        path: `${API_BASE}/machineTypes`,
        operationId: "machineTypes.list",
        handler: async (): Promise<MachineTypeList> => ({
          kind: "tsvm#machineTypeList",
          items: [...MACHINE_TYPES],
        }),
      },
      {
        method: "POST",
        path: `${API_BASE}/webConsole`,
        operationId: "webConsole.open",
        handler: async (c) => {
          const request = validateOpenWebConsole((await c.body()) ?? {});
          if (!this.options.openWebConsole)
            throw new ApiFailure(404, "not-found", "this daemon does not serve a web console");
          return this.options.openWebConsole(request);
        },
      },
      {
        method: "GET",
        path: `${API_BASE}/openapi.json`,
        operationId: "openapi.get",
        handler: async () => (this.document ??= buildOpenApiDocument()),
      },
      {
        method: "GET",
        path: `${API_BASE}/hosts`,
        operationId: "hosts.list",
        handler: async (): Promise<ClusterHostList> => ({
          kind: "tsvm#hostList",
          items: cluster ? await cluster.listHosts() : localHosts(hv, this.startedAt),
        }),
      },
      ...(["drain", "undrain"] as const).map(
        (action): Route => ({
          method: "POST",
          path: `${API_BASE}/hosts/{name}/${action}`,
          operationId: `hosts.${action}`,
          handler: async (c): Promise<HostDrainResult | ClusterHost> => {
            await c.body(); // none expected; still bounded and checked for JSON
            if (!cluster)
              throw new ApiFailure(
                400,
                "invalid-argument",
                `this daemon is not in a cluster: its one host '${LOCAL_HOST_NAME}' has nowhere to move VMs to`,
              );
            return action === "drain"
              ? cluster.drainHost(c.params.name!)
              : cluster.undrainHost(c.params.name!);
          },
        }),
      ),
      {
        method: "GET",
        path: `${API_BASE}/host`,
        operationId: "host.get",
        handler: async (): Promise<HostInfo> => {
          const { capacity, usage } = hv.capacity();
          return {
            kind: "tsvm#host",
            cores: capacity.cores,
            cpuOvercommit: capacity.cpuOvercommit,
            vcpus: capacity.vcpus,
            vcpusUsed: usage.vcpus,
            totalMemoryMiB: capacity.totalMemoryMiB,
            memoryMiB: capacity.memoryMiB,
            memoryUsedMiB: usage.memoryMiB,
            diskFreeMiB: capacity.diskFreeMiB,
            daemonPid: process.pid,
          };
        },
      },
    ];
  }

  /**
   * exec: an NDJSON stream of ExecChunk lines. The answer's head waits for the first chunk, so a command
   * that cannot start (not RUNNING, no agent yet) gets a plain 4xx; an error after output has started is
   * the stream's last line. A client that goes away kills the command. A client that reads slowly holds
   * the output back in the VMM, which drops what does not fit its bound: a `{dropped: N}` line says where.
   */
  private async exec(c: RequestContext): Promise<typeof STREAMING> {
    const req = validateExec(await c.body());
    const res = c.res;
    const abort = new AbortController();
    const onClose = () => {
      if (!res.writableFinished) abort.abort();
    };
    res.on("close", onClose);
    this.execs.add(res);
    res.once("close", () => this.execs.delete(res));
    const line = (chunk: ExecChunk) => {
      if (!res.headersSent)
        res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
      res.write(`${JSON.stringify(chunk)}\n`);
    };
    let drain: Promise<void> | null = null;
    try {
      const { exitCode } = await this.hv.exec(c.params.name!, req.command, {
        onOutput: (bytes, stream) => {
          line({
            stream,
            data: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.length).toString("base64"),
          });
          // Back-pressure: the VMM's output is not read on while the client is this far behind. The lines
          // of one chunk already read still arrive meanwhile; they share one wait for the drain.
          if (res.writableLength >= EXEC_HIGH_WATER_BYTES)
            return (drain ??= drained(res).finally(() => {
              drain = null;
            }));
        },
        onDropped: (dropped) => line({ dropped }),
        timeoutMs: req.timeoutSec === undefined ? undefined : req.timeoutSec * 1000,
        agentWaitMs: (req.agentWaitSec ?? DEFAULT_AGENT_WAIT_SECONDS) * 1000,
        signal: abort.signal,
      });
      line({ exitCode });
    } catch (e) {
      if (!res.headersSent) throw e;
      const failure = toFailure(e);
      line({ error: { code: failure.reason, message: failure.message } });
    } finally {
      res.off("close", onClose);
    }
    res.end();
    return STREAMING;
  }

  /**
   * The VM's export file, streamed with its exact length; back-pressure reaches the file reads through
   * the pipeline. A client that goes away ends the export (the VM is let go); a failure mid-way cuts the
   * answer short, which the client sees from the length (and the file's own trailer).
   */
  private async exportInstance(c: RequestContext): Promise<typeof STREAMING> {
    const raw = c.query.get("snapshots");
    if (raw !== null && raw !== "true" && raw !== "false")
      throw new ApiFailure(400, "invalid-argument", "query parameter 'snapshots' must be true or false");
    const name = c.params.name!;
    await this.hv.exportVm(name, { snapshots: raw !== "false" }, async ({ bytes, stream }) => {
      c.res.writeHead(200, {
        "content-type": "application/octet-stream",
        "content-length": bytes,
        "content-disposition": `attachment; filename="${name}.tsvm"`,
        "cache-control": "no-store",
      });
      try {
        await pipeline(Readable.from(stream), c.res);
      } catch {
        // The client went away or a read failed: the answer is short, and the client knows it.
        c.res.destroy();
      }
    });
    return STREAMING;
  }

  /**
   * insert?source=archive: the body is an export file, streamed into the importer (nothing is buffered
   * whole). An error answered before the body was all read closes the connection once the client has
   * stopped sending (the rest is read and dropped, so the client reads the answer rather than a reset).
   */
  private async importInstance(c: RequestContext): Promise<unknown> {
    const type = c.req.headers["content-type"] ?? "";
    if (!/^application\/octet-stream\b/i.test(type))
      throw new ApiFailure(
        415,
        "unsupported-media-type",
        `send an import's export file as application/octet-stream (got '${type.slice(0, 60)}')`,
      );
    try {
      const drop = c.query.get("dropMissingNetworks");
      if (drop !== null && drop !== "true" && drop !== "false")
        throw new ApiFailure(
          400,
          "invalid-argument",
          `query parameter 'dropMissingNetworks' must be true or false (got '${drop.slice(0, 20)}')`,
        );
      return await this.hv.importVm(c.req, {
        name: c.query.get("name") ?? undefined,
        dropMissingNetworks: drop === "true",
      });
    } catch (e) {
      drainRefusedUpload(c.req);
      throw e;
    }
  }

  /**
   * migrations.incoming: another host of the cluster moves a VM here; the body is its export file, streamed
   * into the importer. Only a cluster member's API (the cluster's token) takes it.
   */
  private moveIn(c: RequestContext): Promise<MoveInResult> {
    return this.movedHere(c, "a moved VM's export file", () =>
      this.hv.moveIn(c.req, parseMoveOffer(c.query)),
    );
  }

  /**
   * A VM another host of the cluster sends here (`what`, an octet stream): only in a cluster; `take`'s
   * refusal drains what is left of the upload.
   */
  private async movedHere<T>(c: RequestContext, what: string, take: () => Promise<T>): Promise<T> {
    if (!this.options.cluster)
      throw new ApiFailure(400, "invalid-argument", "this daemon is not in a cluster: it takes no moved VMs");
    const type = c.req.headers["content-type"] ?? "";
    if (!/^application\/octet-stream\b/i.test(type))
      throw new ApiFailure(
        415,
        "unsupported-media-type",
        `send ${what} as application/octet-stream (got '${type.slice(0, 60)}')`,
      );
    try {
      return await take();
    } catch (e) {
      drainRefusedUpload(c.req);
      throw e;
    }
  }

  /**
   * migrations.live: another host of the cluster moves a RUNNING VM here live; the body is its live move's
   * file. Only a cluster member's API (the cluster's token) takes it. The VMM that waits for the guest's
   * stream listens on the address this request came in at: the one the sender reaches this host on.
   */
  private moveInLive(c: RequestContext): Promise<LiveMoveInResult> {
    const local = (c.req.socket.localAddress ?? "127.0.0.1").replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, "");
    return this.movedHere(c, "a live move's file", () =>
      this.hv.moveInLive(c.req, parseLiveMoveOffer(c.query), local),
    );
  }

  /** Events after `after` (optionally of one instance); with watch=true, an NDJSON stream that follows. */
  private async events(c: RequestContext): Promise<EventList | typeof STREAMING> {
    const after = intParam(c.query, "after", 0, Number.MAX_SAFE_INTEGER, 0);
    const limit = intParam(c.query, "limit", 1, 10000, 1000);
    const vm = c.query.get("instance") ?? undefined;
    const events = this.options.events ?? this.hv.events;
    const backlog = events.since(after, limit, vm);
    if (c.query.get("watch") !== "true")
      return { kind: "tsvm#eventList", items: backlog, lastSeq: events.lastSeq };
    const res = c.res;
    res.writeHead(200, { "content-type": "application/x-ndjson", "cache-control": "no-store" });
    // The watcher learns at once that it is following, not when the first event comes.
    res.flushHeaders();
    followEvents(res, events, after, vm);
    this.streams.add(res);
    res.on("close", () => this.streams.delete(res));
    return STREAMING;
  }

  /**
   * Bytes queued in this process for streaming clients that have not taken them yet: event streams, exec
   * output and console viewers. Each is bounded by its high-water mark plus one chunk.
   */
  get queuedBytes(): number {
    let total = this.consoles.queuedBytes + this.sessions.queuedBytes;
    for (const res of this.streams) total += res.writableLength;
    for (const res of this.execs) total += res.writableLength;
    return total;
  }

  /** Serves on a Unix socket at `path` (mode 0600); a stale socket file there is replaced. */
  async listenUnix(path: string): Promise<void> {
    // sun_path holds 108 bytes with the terminating NUL; a longer path fails with a bare EINVAL.
    if (Buffer.byteLength(path) > 107)
      throw new HypervisorError(
        "invalid-config",
        `the API socket path ${path} is longer than a Unix socket allows (107 bytes); use a shorter TSVM_HOME`,
      );
    if (await socketAnswers(path))
      throw new HypervisorError("already-running", `another tsvm daemon already serves ${path}`);
    await unlink(path).catch(() => {});
    const server = this.createHttpServer("none");
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(path, resolve);
    });
    await chmod(path, 0o600);
    this.servers.push(server);
  }

  /** Serves on localhost TCP (127.0.0.1 unless told otherwise); every request needs the bearer token. */
  async listenTcp(port: number, host = "127.0.0.1"): Promise<number> {
    if (!this.options.token) throw new HypervisorError("invalid-config", "the API on TCP needs a token");
    const server = this.createHttpServer("token");
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, host, resolve);
    });
    this.servers.push(server);
    const address = server.address();
    return typeof address === "object" && address ? address.port : port;
  }

  async close(): Promise<void> {
    for (const res of this.streams) res.end();
    this.consoles.close();
    this.sessions.close();
    await Promise.all(
      this.servers.map(
        (s) =>
          new Promise<void>((resolve) => {
            s.close(() => resolve());
            s.closeAllConnections();
          }),
      ),
    );
    this.servers.length = 0;
  }

  private createHttpServer(auth: "none" | "token"): Server {
    const server = createServer((req, res) => {
      this.serve(req, res, auth).catch((e) => {
        // serve() answers every error itself; this only catches a failure to write the answer.
        if (!res.headersSent)
          sendError(res, new ApiFailure(500, "internal", `internal error: ${(e as Error).message}`));
      });
    });
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgrade(req, socket, head, auth).catch((e) => refuseUpgrade(socket, toFailure(e)));
    });
    server.requestTimeout = 0; // operations/wait and event streams are long on purpose
    server.headersTimeout = 30_000;
    return server;
  }

  private async serve(req: IncomingMessage, res: ServerResponse, auth: "none" | "token"): Promise<void> {
    try {
      if (auth === "token") this.authorize(req);
      const url = new URL(req.url ?? "/", "http://tsvm");
      const matched = this.match(req.method ?? "GET", url.pathname);
      let bodyRead: Promise<unknown> | undefined;
      const body = () => {
        bodyRead ??= readJsonBody(req);
        return bodyRead;
      };
      if (await this.options.cluster?.route(req, res, url, body)) return;
      const result = await matched.route.handler({
        params: matched.params,
        query: url.searchParams,
        req,
        res,
        body,
      });
      if (result === STREAMING) return;
      const text = JSON.stringify(result);
      res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
      res.end(text);
    } catch (e) {
      sendError(res, toFailure(e));
    }
  }

  /**
   * The WebSocket resources: the serial console (GET /v1/instances/{name}/serialPort: binary or text
   * messages from the client are typed into the console, console output comes back as binary messages;
   * several clients may be attached at once) and agent sessions (GET /v1/instances/{name}/sessions,
   * session-socket.ts). Errors before the upgrade (no such VM, not RUNNING, no agent yet) are ordinary
   * error answers.
   */
  private async upgrade(
    req: IncomingMessage,
    socket: Duplex,
    head: Buffer,
    auth: "none" | "token",
  ): Promise<void> {
    if (auth === "token") this.authorize(req);
    const url = new URL(req.url ?? "/", "http://tsvm");
    if (await this.options.cluster?.routeUpgrade(req, socket, head, url)) return;
    const m = new RegExp(`^${API_BASE}/instances/([^/]+)/(serialPort|sessions)$`).exec(url.pathname);
    if (!m || req.method !== "GET")
      throw new ApiFailure(404, "not-found", `no WebSocket resource at ${url.pathname.slice(0, 200)}`);
    const key = req.headers["sec-websocket-key"];
    if (
      (req.headers.upgrade ?? "").toLowerCase() !== "websocket" ||
      typeof key !== "string" ||
      req.headers["sec-websocket-version"] !== "13"
    )
      throw new ApiFailure(
        400,
        "invalid-argument",
        "a WebSocket upgrade needs Upgrade: websocket, Sec-WebSocket-Key and Sec-WebSocket-Version: 13",
      );
    let name: string;
    try {
      name = decodeURIComponent(m[1]!);
    } catch {
      throw new ApiFailure(400, "invalid-name", "the VM name in the path is not valid percent-encoding");
    }
    if (m[2] === "sessions") {
      const request = sessionRequest(url.searchParams);
      await this.sessions.accept(req, socket, head, (onOutput) =>
        this.hv.openSession(name, { ...request, onOutput }),
      );
      return;
    }
    const vmm = await this.hv.attachConsole(name);
    this.consoles.accept(req, socket, head, vmm);
  }

  /** Serves a request whose client another server has authenticated (the web console's session). */
  serveAuthenticated(req: IncomingMessage, res: ServerResponse): Promise<void> {
    return this.serve(req, res, "none");
  }

  /** Takes a WebSocket upgrade whose client another server has authenticated and checked. */
  upgradeAuthenticated(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    this.upgrade(req, socket, head, "none").catch((e) => refuseUpgrade(socket, toFailure(e)));
  }

  /** Whether the request carries this API's bearer token. */
  hasToken(req: IncomingMessage): boolean {
    try {
      this.authorize(req);
      return true;
    } catch {
      return false;
    }
  }

  private authorize(req: IncomingMessage): void {
    const header = req.headers.authorization ?? "";
    const m = /^Bearer\s+(\S+)$/i.exec(header);
    const expected = Buffer.from(this.options.token ?? "");
    const given = Buffer.from(m?.[1] ?? "");
    if (!m || given.length !== expected.length || !timingSafeEqual(given, expected))
      throw new ApiFailure(
        401,
        "unauthorized",
        m
          ? "the bearer token is wrong"
          : "this API needs 'Authorization: Bearer <token>' (the token is in the data directory's api-token file)",
      );
  }

  private match(method: string, pathname: string): { route: Route; params: Record<string, string> } {
    const parts = pathname.split("/");
    let pathMatched = false;
    for (const route of this.routes) {
      const tparts = route.path.split("/");
      if (tparts.length !== parts.length) continue;
      const params: Record<string, string> = {};
      let ok = true;
      for (let i = 0; i < tparts.length && ok; i++) {
        const t = tparts[i]!;
        if (t.startsWith("{")) {
          try {
            params[t.slice(1, -1)] = decodeURIComponent(parts[i]!);
          } catch {
            ok = false;
          }
          if (params[t.slice(1, -1)] === "") ok = false;
        } else ok = t === parts[i];
      }
      if (!ok) continue;
      pathMatched = true;
      if (route.method === method) return { route, params };
    }
    if (pathMatched)
      throw new ApiFailure(405, "method-not-allowed", `${method} is not allowed on ${pathname}`);
    throw new ApiFailure(404, "not-found", `no API resource at ${pathname.slice(0, 200)}`);
  }
}

async function readJsonBody(req: IncomingMessage): Promise<unknown> {
  const declared = Number(req.headers["content-length"] ?? 0);
  if (declared > MAX_REQUEST_BYTES)
    throw new ApiFailure(
      413,
      "payload-too-large",
      `the request body is ${declared} bytes; the limit is ${MAX_REQUEST_BYTES}`,
    );
  const chunks: Buffer[] = [];
  let total = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (total > MAX_REQUEST_BYTES)
      throw new ApiFailure(
        413,
        "payload-too-large",
        `the request body is larger than the limit of ${MAX_REQUEST_BYTES} bytes`,
      );
    chunks.push(chunk);
  }
  if (total === 0) return undefined;
  const type = req.headers["content-type"] ?? "";
  if (!/^application\/json\b/i.test(type))
    throw new ApiFailure(
      415,
      "unsupported-media-type",
      `send the body as application/json (got '${type.slice(0, 60)}')`,
    );
  try {
    return JSON.parse(Buffer.concat(chunks).toString("utf8"));
  } catch (e) {
    throw new ApiFailure(
      400,
      "malformed-json",
      `the request body is not valid JSON: ${(e as Error).message}`,
    );
  }
}

/** Settles once `res` has drained what it queued, or has closed. */
function drained(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done);
      res.off("close", done);
      resolve();
    };
    res.on("drain", done);
    res.on("close", done);
  });
}

/** A session's query parameters: command (absent: a login shell), tty with cols and rows, agentWaitSec. */
function sessionRequest(query: URLSearchParams): {
  command: string | null;
  tty?: { cols: number; rows: number };
  agentWaitMs: number;
} {
  const command = query.get("command");
  if (command !== null) {
    const bytes = Buffer.byteLength(command);
    if (bytes === 0 || bytes > MAX_SESSION_COMMAND_BYTES || command.includes("\0"))
      throw new ApiFailure(
        400,
        "invalid-argument",
        `query parameter 'command' must be 1 to ${MAX_SESSION_COMMAND_BYTES} bytes without NUL`,
      );
  }
  const tty = query.get("tty");
  if (tty !== null && tty !== "true" && tty !== "false")
    throw new ApiFailure(400, "invalid-argument", "query parameter 'tty' must be true or false");
  const cols = intParam(query, "cols", 1, MAX_TERMINAL_CELLS, 80);
  const rows = intParam(query, "rows", 1, MAX_TERMINAL_CELLS, 24);
  const wait = intParam(query, "agentWaitSec", 0, MAX_AGENT_WAIT_SECONDS, DEFAULT_AGENT_WAIT_SECONDS);
  return {
    command,
    // A login shell is interactive: it gets a terminal unless told otherwise.
    ...(tty === "true" || (tty === null && command === null) ? { tty: { cols, rows } } : {}),
    agentWaitMs: wait * 1000,
  };
}

export function toFailure(e: unknown): ApiFailure {
  if (e instanceof ApiFailure) return e;
  if (e instanceof HypervisorError) return new ApiFailure(statusOfCode(e.code), e.code, e.message);
  return new ApiFailure(500, "internal", `internal error: ${(e as Error)?.message ?? String(e)}`);
}

export function sendError(res: ServerResponse, failure: ApiFailure): void {
  if (res.headersSent) {
    res.end();
    return;
  }
  const body: ApiErrorBody = {
    error: {
      code: failure.status,
      message: failure.message,
      errors: [{ reason: failure.reason, message: failure.message, domain: "tsvm" }],
    },
  };
  const text = JSON.stringify(body);
  const headers: Record<string, string | number> = {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
  };
  if (failure.status === 401) headers["www-authenticate"] = 'Bearer realm="tsvm"';
  // After a refused oversized body the rest of it is not read; the connection cannot be reused.
  if (failure.status === 413) headers.connection = "close";
  res.writeHead(failure.status, headers);
  res.end(text);
}

export function refuseUpgrade(socket: Duplex, failure: ApiFailure): void {
  const body = JSON.stringify({
    error: {
      code: failure.status,
      message: failure.message,
      errors: [{ reason: failure.reason, message: failure.message, domain: "tsvm" }],
    },
  } satisfies ApiErrorBody);
  socket.end(
    `HTTP/1.1 ${failure.status} ${STATUS_CODES[failure.status] ?? "Error"}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
  );
}

/** True when something accepts connections on the Unix socket at `path`. */
function socketAnswers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(path);
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}
