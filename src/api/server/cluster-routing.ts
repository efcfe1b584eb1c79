// A cluster member's API (docs/cluster.md): every host answers for the whole cluster. A request about a VM
// (or an operation) another host owns is forwarded to that host's API with the cluster's token; an insert
// goes to the host named or scheduled for it; WebSocket upgrades (console, sessions) are relayed byte for
// byte; the instance list and the hosts collection come from etcd.
// A change is refused at once with control-plane-unavailable while etcd cannot be reached.

import type { IncomingMessage, ServerResponse } from "node:http";
import { request } from "node:http";
import { connect } from "node:net";
import type { Duplex } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { ClusterHost, HostDrainResult } from "../schemas/host-schemas.ts";
import type { ControlPlane } from "../../hypervisor/cluster/control-plane.ts";
import type { EtcdVmRecords } from "../../hypervisor/cluster/etcd-vm-records.ts";
import { drainLocalVms } from "../../hypervisor/cluster/host-drain.ts";
import type { HostInventory, InventoryHost } from "../../hypervisor/cluster/host-inventory.ts";
import { clusterHosts, placeVm } from "../../hypervisor/cluster/scheduler.ts";
import { identityOf } from "../../hypervisor/guest-identity.ts";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";
import { DEFAULT_MACHINE_TYPE, machineTypeFor, resolveMachineType } from "../../hypervisor/machine-types.ts";
import { interfacesOf } from "../../hypervisor/network-interfaces.ts";
import { holdsCpuAndMemory } from "../../hypervisor/resources.ts";
import { VmNotFoundError } from "../../hypervisor/store.ts";
import type { VmRecord } from "../../hypervisor/vm-record.ts";
import { API_BASE, type InsertInstanceRequest, type Instance, type InstanceList } from "../types.ts";
import { ApiFailure, validateInsert } from "./validation.ts";

/** Set on a forwarded request: the receiving host answers it itself, never forwards it again. */
export const FORWARDED_HEADER = "x-tsvm-forwarded-by";

/** What a daemon joined to a cluster routes with. */
export interface ClusterMember {
  /** This host's name. */
  readonly host: string;
  /** The cluster's API token (every host has the same). */
  readonly token: string;
  readonly plane: ControlPlane;
  readonly records: EtcdVmRecords;
  readonly inventory: HostInventory;
  /** How long a guest gets to stop (the daemon's stopTimeoutMs): a drain waits for its TERMINATE VMs. */
  readonly stopTimeoutMs?: number;
}

/** How long an operation unknown here is looked for in etcd before it is answered not-found. */
const OPERATION_LOOKUP_MS = 2000;
const INSTANCE_PATH = new RegExp(`^${API_BASE}/instances/([^/]+)(?:/.*)?$`);
const OPERATION_PATH = new RegExp(`^${API_BASE}/operations/([^/]+)(?:/wait)?$`);
/** How long a drain waits for one VM's move. */
const MOVE_WAIT_MS = 10 * 60_000;
const DRAIN_PATH = new RegExp(`^${API_BASE}/hosts/([^/]+)/drain$`);

export class ClusterRouting {
  constructor(
    private readonly hv: Hypervisor,
    readonly member: ClusterMember,
  ) {}

  /**
   * Forwards the request when another host owns what it is about, and answers true; false when this host
   * answers it. `body` reads (once) the JSON body, which the local handler then gets too.
   */
  async route(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    body: () => Promise<unknown>,
  ): Promise<boolean> {
    if (req.headers[FORWARDED_HEADER] !== undefined) return false;
    const method = req.method ?? "GET";
    const changes = method !== "GET";
    const instance = INSTANCE_PATH.exec(url.pathname);
    if (instance) {
      const owner = await this.ownerOf(decodePart(instance[1]!));
      if (owner !== undefined) {
        await this.forward(req, res, owner, undefined);
        return true;
      }
    } else if (
      url.pathname === `${API_BASE}/instances` &&
      method === "POST" &&
      !url.searchParams.has("source")
    ) {
      const insert = validateInsert(await body());
      const target = await this.placement(insert);
      if (target !== this.member.host) {
        await this.forward(req, res, target, { ...insert, host: target });
        return true;
      }
    } else if (DRAIN_PATH.test(url.pathname) && method === "POST") {
      // A drain stops and moves the host's own VMs, so that host runs it (a DOWN host's is only marked).
      const name = decodePart(DRAIN_PATH.exec(url.pathname)![1]!);
      const host = name === this.member.host ? undefined : await this.member.inventory.get(name);
      if (host !== undefined && host.status !== "DOWN") {
        await this.forward(req, res, name, undefined);
        return true;
      }
    } else {
      const operation = OPERATION_PATH.exec(url.pathname);
      if (operation) {
        const owner = await this.operationOwner(decodePart(operation[1]!));
        if (owner !== undefined) {
          await this.forward(req, res, owner, undefined);
          return true;
        }
      }
    }
    if (changes) await this.checkControlPlane();
    return false;
  }

  /**
   * Forwards a WebSocket upgrade about another host's VM (serial console, sessions) to that host: the
   * request head is sent on with the cluster's token, then bytes flow both ways untouched. True when
   * forwarded; false when this host answers it.
   */
  async routeUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, url: URL): Promise<boolean> {
    if (req.headers[FORWARDED_HEADER] !== undefined) return false;
    const instance = INSTANCE_PATH.exec(url.pathname);
    const owner = instance ? await this.ownerOf(decodePart(instance[1]!)) : undefined;
    if (owner === undefined) return false;
    const host = await this.hostNamed(owner);
    const target = new URL(host.record.address);
    const upstream = connect(Number(target.port), target.hostname.replace(/^\[|\]$/g, ""));
    await new Promise<void>((resolve, reject) => {
      upstream.once("connect", resolve);
      upstream.once("error", (e) => reject(this.unreachable(host, e)));
    });
    const headers = this.forwardedHeaders(req, target);
    const lines = [`${req.method} ${req.url} HTTP/1.1`];
    for (const [key, value] of Object.entries(headers))
      for (const v of Array.isArray(value) ? value : [value]) if (v !== undefined) lines.push(`${key}: ${v}`);
    upstream.write(`${lines.join("\r\n")}\r\n\r\n`);
    if (head.length > 0) upstream.write(head);
    const end = () => {
      socket.destroy();
      upstream.destroy();
    };
    pipeline(socket, upstream).catch(end);
    pipeline(upstream, socket).catch(end);
    return true;
  }

  /** A view of this host's VM, with its host. */
  annotate(view: Instance): Instance {
    return { ...view, host: view.host ?? this.member.host };
  }

  /** This host's VMs and every other host's, from etcd. */
  async wholeList(local: InstanceList): Promise<InstanceList> {
    const { vms, broken } = await this.member.records.listAll();
    const mine = new Set(local.items.map((v) => v.name));
    const others = vms
      .map((v) => v.record)
      .filter((r) => r.host !== this.member.host && !mine.has(r.name))
      .map(remoteView);
    return {
      kind: "tsvm#instanceList",
      items: [...local.items.map((v) => this.annotate(v)), ...others].sort((a, b) =>
        a.name.localeCompare(b.name),
      ),
      unreachable: [
        ...local.unreachable,
        ...broken
          .filter((b) => b.host !== this.member.host)
          .map((b) => ({ name: b.name, code: b.error.code, message: b.error.message })),
      ],
    };
  }

  async listHosts(): Promise<ClusterHost[]> {
    const [hosts, { vms }] = await Promise.all([this.member.inventory.list(), this.member.records.listAll()]);
    return clusterHosts(
      hosts,
      vms.map((v) => v.record),
    );
  }

  /**
   * Marks host `name` DRAINING and, when it is this host, stops its TERMINATE VMs and moves its MIGRATE
   * ones (host-drain.ts). A DOWN host is only marked: its VMs are reported as left, with why.
   */
  async drainHost(name: string): Promise<HostDrainResult> {
    await this.member.inventory.setDraining(name, true);
    let done: Omit<HostDrainResult, "kind" | "host">;
    if (name === this.member.host)
      done = await drainLocalVms(this.hv, {
        stopTimeoutMs: this.member.stopTimeoutMs ?? 90_000,
        moveVm: (vm) => this.moveAway(vm),
      });
    else {
      const { vms } = await this.member.records.listAll();
      done = {
        stopped: [],
        moved: [],
        remaining: vms
          .map((v) => v.record)
          .filter((r) => r.host === name && holdsCpuAndMemory(r.status))
          .map((r) => ({
            name: r.name,
            reason: `host '${name}' is DOWN: nothing on it can be stopped or moved`,
          })),
      };
    }
    return { kind: "tsvm#hostDrain", host: await this.hostView(name), ...done };
  }

  /** Moves this host's VM to the host the scheduler picks (never this one: it is DRAINING); answers that host. */
  private async moveAway(name: string): Promise<string> {
    const vm = this.hv.get(name);
    const target = placeVm(
      (await this.listHosts()).filter((h) => h.name !== this.member.host),
      { cpus: vm.cpus, memoryMiB: vm.memoryMiB },
    );
    const done = await this.hv.waitOperation((await this.hv.move(name, target)).id, MOVE_WAIT_MS);
    if (done.status !== "DONE")
      throw new Error(`the move to '${target}' did not finish within ${MOVE_WAIT_MS / 60_000} min`);
    if (done.error) throw new Error(`the move to '${target}' failed: ${done.error.message}`);
    return target;
  }

  /** Marks host `name` UP again (it takes new VMs); its VMs are not moved back. */
  async undrainHost(name: string): Promise<ClusterHost> {
    await this.member.inventory.setDraining(name, false);
    return this.hostView(name);
  }

  private async hostView(name: string): Promise<ClusterHost> {
    const host = (await this.listHosts()).find((h) => h.name === name);
    if (!host) throw new ApiFailure(404, "not-found", `no host '${name.slice(0, 80)}' in the cluster`);
    return host;
  }

  /** The host that owns the VM when it is not this one; undefined when this host answers. */
  private async ownerOf(name: string): Promise<string | undefined> {
    try {
      this.hv.get(name);
      return undefined;
    } catch (e) {
      if (!(e instanceof VmNotFoundError)) return undefined; // a bad name or a broken VM: answered here
    }
    const stored = await this.member.records.read(name).catch((e) => {
      if (e instanceof VmNotFoundError) return undefined;
      throw e;
    });
    const host = stored?.record.host;
    return host === undefined || host === this.member.host ? undefined : host;
  }

  /** The host that journals the operation when it is not this one (operations/<host>/<id> in etcd). */
  private async operationOwner(id: string): Promise<string | undefined> {
    try {
      this.hv.getOperation(id);
      return undefined;
    } catch {
      // not this host's
    }
    const prefix = this.member.plane.key("operations/");
    // A host answers with a new operation before its record reaches etcd (the journal writes it a moment
    // later), so a client told of it by one host and asking another may be early: look for a while.
    const deadline = Date.now() + OPERATION_LOOKUP_MS;
    for (;;) {
      const keys = await this.member.plane.call(`find operation ${id.slice(0, 80)}`, (c) =>
        c.getAll().prefix(prefix).keys(),
      );
      const key = keys.find((k) => k.endsWith(`/${id}`));
      const host = key?.slice(prefix.length).split("/")[0];
      if (host !== undefined) return host === this.member.host ? undefined : host;
      if (Date.now() > deadline) return undefined;
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Where an insert goes: a clone to its source's host (its files are there), else `host` or the scheduler's pick. */
  private async placement(insert: InsertInstanceRequest): Promise<string> {
    if (insert.sourceInstance !== undefined)
      return (await this.ownerOf(insert.sourceInstance)) ?? this.member.host;
    const type =
      insert.machineType !== undefined
        ? resolveMachineType(insert.machineType)
        : insert.cpus === undefined && insert.memoryMiB === undefined
          ? resolveMachineType(DEFAULT_MACHINE_TYPE)
          : machineTypeFor(
              insert.cpus ?? resolveMachineType(DEFAULT_MACHINE_TYPE).cpus,
              insert.memoryMiB ?? resolveMachineType(DEFAULT_MACHINE_TYPE).memoryMiB,
            );
    return placeVm(await this.listHosts(), { cpus: type.cpus, memoryMiB: type.memoryMiB }, insert.host);
  }

  /** A cheap read of etcd, so that a change is refused at once (not half made) while it is unreachable. */
  private async checkControlPlane(): Promise<void> {
    await this.member.plane.call("reach etcd to make the change", (c) =>
      c.get(this.member.plane.key(`hosts-alive/${this.member.host}`)).exec(),
    );
  }

  private async hostNamed(name: string): Promise<InventoryHost> {
    const host = (await this.member.inventory.list()).find((h) => h.record.name === name);
    if (!host)
      throw new ApiFailure(502, "host-unreachable", `host '${name}' is not in the cluster's inventory`);
    return host;
  }

  private unreachable(host: InventoryHost, e: Error): ApiFailure {
    return new ApiFailure(
      502,
      "host-unreachable",
      `host '${host.record.name}' (${host.status}, ${host.record.address}) did not answer the forwarded request: ${e.message}`,
    );
  }

  /** The request's headers as sent on: to `target`, with the cluster's token, marked forwarded. */
  private forwardedHeaders(req: IncomingMessage, target: URL): Record<string, string | string[] | undefined> {
    return {
      ...req.headers,
      host: target.host,
      authorization: `Bearer ${this.member.token}`,
      [FORWARDED_HEADER]: this.member.host,
    };
  }

  /** Sends the request to `hostName`'s API and streams its answer back as it is. */
  private async forward(
    req: IncomingMessage,
    res: ServerResponse,
    hostName: string,
    body: unknown,
  ): Promise<void> {
    const host = await this.hostNamed(hostName);
    const target = new URL(req.url ?? "/", host.record.address);
    const headers = this.forwardedHeaders(req, target);
    let payload: string | undefined;
    if (body !== undefined) {
      payload = JSON.stringify(body);
      headers["content-type"] = "application/json";
      headers["content-length"] = String(Buffer.byteLength(payload));
      delete headers["transfer-encoding"];
    }
    await new Promise<void>((resolve, reject) => {
      const out = request(target, { method: req.method, headers }, (answer) => {
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        pipeline(answer, res).then(resolve, () => resolve());
      });
      out.on("error", (e) => reject(this.unreachable(host, e)));
      // An answer stops waiting for a client that goes away (e.g. an event stream's).
      res.on("close", () => out.destroy());
      if (payload !== undefined) out.end(payload);
      else pipeline(req, out).catch(() => {});
    });
  }
}

/** A VM of another host as the API shows it (its VMM's pid is that host's business). */
function remoteView(record: VmRecord): Instance {
  return {
    kind: "tsvm#instance",
    ...record,
    identity: identityOf(record),
    networkInterfaces: interfacesOf(record),
    forwards: record.forwards ?? [],
    vmmPid: null,
  };
}

function decodePart(part: string): string {
  try {
    return decodeURIComponent(part);
  } catch {
    throw new HypervisorError("invalid-name", "the name in the path is not valid percent-encoding");
  }
}
