// The cluster's hosts in etcd: each host's record (`<prefix>hosts/<name>`, kept after it leaves) and its
// liveness (`<prefix>hosts-alive/<name>`, attached to the host's lease, gone when the lease expires). A host
// joins by creating its liveness key, which fails while another live host has that name.

import type { Lease } from "etcd3";
import { HOST_RECORD_FORMAT_VERSION, HostRecord, type HostStatus } from "../../api/schemas/host-schemas.ts";
import { schemaCheck } from "../../api/schemas/schema-check.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import type { ControlPlane } from "./control-plane.ts";

/** How long a host's lease lives without a keep-alive (etcd3 renews it every third of that). */
export const DEFAULT_LEASE_TTL_SECONDS = 30;

const checkHostRecord = schemaCheck(HostRecord);

export class HostNameTakenError extends HypervisorError {
  constructor(name: string) {
    super(
      "host-name-taken",
      `the host name '${name}' is taken by a live host of the cluster; choose another --host, or stop that host's daemon first`,
    );
  }
}

/** A host as the inventory knows it: its record and whether its lease lives. */
export interface InventoryHost {
  readonly record: HostRecord;
  readonly status: HostStatus;
}

/** A live membership: the lease is kept alive until `leave`; `onLost` hears when it could not be. */
export interface HostMembership {
  readonly name: string;
  readonly leaseId: string;
  /** The lease's TTL in seconds. */
  readonly ttlSeconds: number;
  /** When the lease was last granted or renewed (Date.now() time). */
  renewedAt(): number;
  onLost(listener: (reason: string) => void): void;
  leave(): Promise<void>;
}

export class HostInventory {
  constructor(
    private readonly plane: ControlPlane,
    private readonly ttlSeconds = DEFAULT_LEASE_TTL_SECONDS,
  ) {}

  private recordKey(name: string): string {
    return this.plane.key(`hosts/${name}`);
  }

  private aliveKey(name: string): string {
    return this.plane.key(`hosts-alive/${name}`);
  }

  /** Joins the cluster as `host` (address, capacity); HostNameTakenError while a live host has the name. */
  async join(host: {
    name: string;
    address: string;
    capacity: HostRecord["capacity"];
    sharedStorage?: boolean;
  }): Promise<HostMembership> {
    // Taken before the grant: the lease can only expire later than this plus its TTL.
    const grantedAt = Date.now();
    const lease: Lease = this.plane.client.lease(this.ttlSeconds, { autoKeepAlive: true });
    try {
      const leaseId = await this.plane.call("grant the host's lease", () => lease.grant());
      const previous = await this.get(host.name);
      const record: HostRecord = {
        formatVersion: HOST_RECORD_FORMAT_VERSION,
        name: host.name,
        address: host.address,
        capacity: host.capacity,
        draining: previous?.record.draining ?? false,
        ...(host.sharedStorage ? { sharedStorage: true } : {}),
        joinedAt: new Date().toISOString(),
      };
      const alive = this.aliveKey(host.name);
      const result = await this.plane.call(`register host '${host.name}'`, (c) =>
        c
          .if(alive, "Create", "==", 0)
          .then(
            c.put(alive).value(record.joinedAt).lease(leaseId),
            c.put(this.recordKey(host.name)).value(JSON.stringify(record)),
          )
          .commit(),
      );
      if (!result.succeeded) throw new HostNameTakenError(host.name);
      return membership(host.name, leaseId, lease, this.ttlSeconds, grantedAt);
    } catch (e) {
      await lease.revoke().catch(() => {});
      throw e;
    }
  }

  /**
   * Marks host `name` DRAINING (it takes no new VMs) or UP again, with a compare-and-set on its record so
   * that a join writing it at the same moment is not overwritten. Answers the host as it is now.
   */
  async setDraining(name: string, draining: boolean): Promise<InventoryHost> {
    for (let attempt = 0; ; attempt++) {
      const response = await this.plane.call(`read the record of host '${name}'`, (c) =>
        c.get(this.recordKey(name)).exec(),
      );
      const kv = response.kvs[0];
      const host = kv && (await this.get(name));
      if (!kv || !host)
        throw new HypervisorError(
          "invalid-argument",
          `no host '${name.slice(0, 80)}' in the cluster; hosts: ${(await this.list()).map((h) => h.record.name).join(", ") || "none"}`,
        );
      if (host.record.draining === draining) return host;
      const record: HostRecord = { ...host.record, draining };
      const key = this.recordKey(name);
      const result = await this.plane.call(`mark host '${name}' ${draining ? "DRAINING" : "UP"}`, (c) =>
        c
          .if(key, "Mod", "==", kv.mod_revision)
          .then(c.put(key).value(JSON.stringify(record)))
          .commit(),
      );
      if (result.succeeded)
        return { record, status: host.status === "DOWN" ? "DOWN" : draining ? "DRAINING" : "UP" };
      if (attempt >= 5)
        throw new HypervisorError(
          "revision-conflict",
          `the record of host '${name}' kept changing; try again`,
        );
    }
  }

  /** One host, or undefined when no host of that name ever joined. */
  async get(name: string): Promise<InventoryHost | undefined> {
    return (await this.list()).find((h) => h.record.name === name);
  }

  /** Every host that ever joined (and was not forgotten), by name, with its status now. */
  async list(): Promise<InventoryHost[]> {
    const [records, alive] = await this.plane.call("list the cluster's hosts", (c) =>
      Promise.all([
        c.getAll().prefix(this.recordKey("")).sort("Key", "Ascend").strings(),
        c.getAll().prefix(this.aliveKey("")).keys(),
      ]),
    );
    const live = new Set(alive.map((k) => k.slice(this.aliveKey("").length)));
    const hosts: InventoryHost[] = [];
    for (const [key, text] of Object.entries(records)) {
      let raw: unknown;
      try {
        raw = JSON.parse(text);
      } catch {
        continue; // not one of ours: a host record is written only by join()
      }
      const checked = checkHostRecord(raw);
      if (!checked.ok || key !== this.recordKey(checked.value.name)) continue;
      const record = checked.value;
      const status: HostStatus = !live.has(record.name) ? "DOWN" : record.draining ? "DRAINING" : "UP";
      hosts.push({ record, status });
    }
    return hosts.sort((a, b) => a.record.name.localeCompare(b.record.name));
  }
}

function membership(
  name: string,
  leaseId: string,
  lease: Lease,
  ttlSeconds: number,
  grantedAt: number,
): HostMembership {
  const listeners: Array<(reason: string) => void> = [];
  let left = false;
  let renewedAt = grantedAt;
  lease.on("keepaliveSucceeded", () => {
    renewedAt = Date.now();
  });
  lease.on("lost", (e) => {
    if (left) return;
    for (const listener of listeners) listener(`the lease of host '${name}' was lost: ${e.message}`);
  });
  return {
    name,
    leaseId,
    ttlSeconds,
    renewedAt: () => renewedAt,
    onLost: (listener) => {
      listeners.push(listener);
    },
    leave: async () => {
      left = true;
      // A host that cannot reach etcd as it leaves is marked DOWN when its lease expires.
      await lease.revoke().catch(() => lease.release());
    },
  };
}
