// How a VM's files reach another host of the cluster when it moves (docs/cluster.md, "Moving VMs"): the
// target host is checked (in the inventory, UP, room for the VM) and then sent the VM's export file over
// its API, authenticated with the cluster's token; the target verifies the file whole (checksums and
// structure: docs/export-format.md) and takes the VM over at the revision the source last saw.

import { request } from "node:http";
import { HypervisorError } from "../hypervisor-error.ts";
import { VmNotFoundError } from "../store.ts";
import type { EtcdVmRecords } from "./etcd-vm-records.ts";
import type { HostInventory } from "./host-inventory.ts";
import { clusterHosts, placeVm } from "./scheduler.ts";

/** The target host's route that takes a moved VM in (POST, the export file as the body). */
export const INCOMING_MOVE_PATH = "/v1/migrations/incoming";
/**
 * The target host's route that prepares a live move (POST, a live move's file as the body: the RUNNING VM
 * without its active disk; cluster/live-moves.ts): answered with where its VMM waits for the guest.
 */
export const LIVE_MOVE_PATH = "/v1/migrations/live";

/** What the source tells the target about the VM it sends. */
export interface MoveOffer {
  readonly name: string;
  /** The record's revision as the source last saw it: the target's takeover compares it. */
  readonly revision: number;
  /** The source host's name. */
  readonly from: string;
  /** Resume the VM once it is in place (it was RUNNING on the source). */
  readonly resume: boolean;
  /**
   * The VM is on the cluster's shared storage: the body is empty, its files are already where the target
   * sees them (shared-move-in.ts).
   */
  readonly shared?: boolean;
}

/** The target's answer once the VM is its own. */
export interface MoveAnswer {
  readonly kind: "tsvm#moveIn";
  /** Whether the VM runs again (asked for with `resume`). */
  readonly resumed: boolean;
  /** How long the target's resume took (0 when not asked). */
  readonly resumeMs: number;
  /** When a resume was asked for and failed: why (the VM is SUSPENDED on the target, its state kept). */
  readonly resumeError: string | null;
}

/** What the source adds to its offer for a live move. */
export interface LiveMoveOffer extends Omit<MoveOffer, "resume" | "shared"> {
  /** The active disk's virtual size: the target builds the guest's disk with it until the file arrives. */
  readonly diskBytes: number;
}

/** The target's answer to a live move's offer: its VMM waits for the guest's stream there. */
export interface LiveMoveAnswer {
  readonly kind: "tsvm#liveMoveIn";
  /** The target VMM's port, on the address the source reached the target's API at. */
  readonly port: number;
  /** The one-time secret the stream's HELLO must carry. */
  readonly ticket: string;
}

export interface MoveTransport {
  /** This host's name. */
  readonly host: string;
  /**
   * `wanted` when it is a host of the cluster, UP, with room for the VM (the scheduler's checks; else the
   * scheduler's error), or without it the scheduler's pick among the other hosts.
   */
  chooseTarget(need: { readonly cpus: number; readonly memoryMiB: number }, wanted?: string): Promise<string>;
  /** The host the VM's record names now (undefined: no record). */
  ownerOf(name: string): Promise<string | undefined>;
  /** Sends the VM's export file to `target`; resolves once the target owns the VM. */
  send(
    target: string,
    offer: MoveOffer,
    archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> },
  ): Promise<MoveAnswer>;
  /**
   * Sends a live move's file to `target`, which prepares the VM (not yet its own) and starts a VMM for the
   * guest's stream; resolves with where that VMM listens.
   */
  prepareLive(
    target: string,
    offer: LiveMoveOffer,
    archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> },
  ): Promise<{ readonly host: string; readonly port: number; readonly ticket: string }>;
}

/** How long the target may take to answer once the whole file is sent (it verifies and resumes). */
const ANSWER_TIMEOUT_MS = 300_000;

/** The transport between cluster hosts: their API addresses from the inventory, the cluster's token. */
export class ClusterMoveTransport implements MoveTransport {
  constructor(
    readonly host: string,
    private readonly token: string,
    private readonly inventory: HostInventory,
    private readonly records: EtcdVmRecords,
  ) {}

  async chooseTarget(need: { cpus: number; memoryMiB: number }, wanted?: string): Promise<string> {
    const [hosts, { vms }] = await Promise.all([this.inventory.list(), this.records.listAll()]);
    const all = clusterHosts(
      hosts,
      vms.map((v) => v.record),
    );
    return placeVm(wanted === undefined ? all.filter((h) => h.name !== this.host) : all, need, wanted);
  }

  async ownerOf(name: string): Promise<string | undefined> {
    try {
      return (await this.records.read(name)).record.host;
    } catch (e) {
      if (e instanceof VmNotFoundError) return undefined;
      throw e;
    }
  }

  async send(
    target: string,
    offer: MoveOffer,
    archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> },
  ): Promise<MoveAnswer> {
    const { body } = await this.post(
      target,
      INCOMING_MOVE_PATH,
      {
        name: offer.name,
        revision: String(offer.revision),
        from: offer.from,
        resume: String(offer.resume),
        ...(offer.shared ? { shared: "true" } : {}),
      },
      archive,
      "tsvm#moveIn",
    );
    return {
      kind: "tsvm#moveIn",
      resumed: body.resumed === true,
      resumeMs: typeof body.resumeMs === "number" ? body.resumeMs : 0,
      resumeError: typeof body.resumeError === "string" ? body.resumeError : null,
    };
  }

  async prepareLive(
    target: string,
    offer: LiveMoveOffer,
    archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> },
  ): Promise<{ host: string; port: number; ticket: string }> {
    const { body, url } = await this.post(
      target,
      LIVE_MOVE_PATH,
      {
        name: offer.name,
        revision: String(offer.revision),
        from: offer.from,
        diskBytes: String(offer.diskBytes),
      },
      archive,
      "tsvm#liveMoveIn",
    );
    const port = body.port;
    if (typeof port !== "number" || !Number.isInteger(port) || port < 1 || port > 65535)
      throw new HypervisorError("move-failed", `host '${target}' answered the live move without a port`);
    if (typeof body.ticket !== "string" || body.ticket.length < 16 || body.ticket.length > 200)
      throw new HypervisorError("move-failed", `host '${target}' answered the live move without a ticket`);
    // Its VMM listens where its API was reached (a bracketed IPv6 literal loses its brackets for connect).
    return { host: url.hostname.replace(/^\[|\]$/g, ""), port, ticket: body.ticket };
  }

  /**
   * POSTs `archive` to `target`'s `path` with `params` as the query, authenticated with the cluster's
   * token; resolves with the JSON answer when it is 200 and of `kind`, else rejects with move-failed.
   */
  private async post(
    target: string,
    path: string,
    params: Readonly<Record<string, string>>,
    archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> },
    kind: string,
  ): Promise<{ body: Record<string, unknown>; url: URL }> {
    const host = (await this.inventory.list()).find((h) => h.record.name === target);
    if (!host) throw new HypervisorError("host-unavailable", `host '${target}' left the cluster`);
    const url = new URL(path, host.record.address);
    for (const [key, value] of Object.entries(params)) url.searchParams.set(key, value);
    const failed = (why: string) =>
      new HypervisorError("move-failed", `moving '${params.name}' to host '${target}' failed: ${why}`);
    return new Promise((resolve, reject) => {
      const out = request(url, {
        method: "POST",
        headers: {
          authorization: `Bearer ${this.token}`,
          "content-type": "application/octet-stream",
          "content-length": String(archive.bytes),
          // Answered by that host itself (cluster-routing.ts never forwards a request marked so).
          "x-tsvm-forwarded-by": this.host,
        },
        timeout: ANSWER_TIMEOUT_MS,
      });
      out.on("timeout", () => out.destroy(new Error(`no answer within ${ANSWER_TIMEOUT_MS / 1000} s`)));
      out.on("error", (e) => reject(failed(e.message)));
      out.on("response", (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on("data", (c: Buffer) => {
          size += c.length;
          if (size <= 65536) chunks.push(c);
        });
        res.on("error", (e) => reject(failed(e.message)));
        res.on("end", () => {
          const text = Buffer.concat(chunks).toString("utf8");
          let body: {
            kind?: string;
            error?: { message?: string; errors?: Array<{ reason?: string }> };
          } & Record<string, unknown>;
          try {
            body = JSON.parse(text);
          } catch {
            reject(failed(`it answered ${res.statusCode} with no JSON`));
            return;
          }
          if (res.statusCode !== 200 || body.kind !== kind) {
            const reason = body.error?.errors?.[0]?.reason ?? res.statusCode;
            reject(failed(`it refused the VM (${reason}: ${String(body.error?.message).slice(0, 300)})`));
            return;
          }
          resolve({ body, url });
        });
      });
      void (async () => {
        try {
          for await (const chunk of archive.stream) {
            if (!out.write(chunk)) await new Promise<void>((r) => out.once("drain", r));
            if (out.destroyed) return;
          }
          out.end();
        } catch (e) {
          out.destroy(e as Error);
        }
      })();
    });
  }
}
