// What the surviving hosts do about a DOWN host (docs/cluster.md "Failover"): every host watches the
// inventory; once a host has been DOWN for a further lease TTL (time enough for it to have fenced itself,
// lease-fence.ts, even with a stalled event loop), its VMs that were running are marked REPAIRING with
// the reason, each in one transaction that compares the record's revision and that the host's liveness
// key is still absent, so that a host coming back, or another host marking at the same moment, wins
// cleanly and nothing is written twice. A VM on the cluster's shared storage with automaticRestart is
// restarted instead, on the host the scheduler picks among the UP hosts that see that storage (every host
// computes the same placement from the same records, restartPlacement); the pick's same transaction
// re-homes its record to itself (REPAIRING, the reason saying so) and its hypervisor boots it from its disk.
// Should the pick not do so within a further TTL (it went away, or its own admission says no), any such
// host with room takes the VM. Its old host's VMMs are gone
// by then: each fenced itself (lease-fence.ts, vmm-watchdog.ts) before the lease could expire, a TTL ago.
// Any other VM restarts when its host returns (its daemon's recovery restarts a REPAIRING VM whose VMM is
// gone, per automaticRestart), since its disk is on that host: the reason says so.

import { serializeVmRecord, type VmRecord, withHistory } from "../vm-record.ts";
import type { StoredVmRecord } from "../vm-record-store.ts";
import type { ControlPlane } from "./control-plane.ts";
import type { EtcdVmRecords } from "./etcd-vm-records.ts";
import type { HostInventory, InventoryHost } from "./host-inventory.ts";
import { clusterHosts, placeVm } from "./scheduler.ts";

/** The statuses of a VM whose guest ran (or was about to) on the host when it went DOWN. */
const WAS_RUNNING: ReadonlySet<VmRecord["status"]> = new Set(["RUNNING", "STAGING"]);
/** Those a VM on shared storage is restarted elsewhere from (one marked REPAIRING before, too). */
const RESTARTABLE: ReadonlySet<VmRecord["status"]> = new Set(["RUNNING", "STAGING", "REPAIRING"]);

/** What this host offers for a DOWN host's VMs on shared storage (absent: it has no shared storage). */
export interface FailoverRestarter {
  /** Whether this host has room for the VM now (its vCPUs and memory). */
  hasRoom(record: VmRecord): boolean;
  /** Boots the VM whose record this host just took over (REPAIRING, its host this one). */
  restart(name: string, reason: string): Promise<void>;
}

/** Why a DOWN host's VM restarts here, in the user's words. */
export function restartedHereReason(downHost: string, here: string): string {
  return `host '${downHost}' is DOWN (its lease expired); restarted on host '${here}' (its disk is on the cluster's shared storage)`;
}

/** Why a DOWN host's VM on shared storage waits (REPAIRING) for a host to restart it, in the user's words. */
function waitingReason(downHost: string, pick: string | undefined): string {
  return pick === undefined
    ? `host '${downHost}' is DOWN (its lease expired); no host that sees the shared storage has room for it now: it restarts on the first that has`
    : `host '${downHost}' is DOWN (its lease expired); it restarts on host '${pick}', the scheduler's pick among the hosts that see the shared storage`;
}

/**
 * Where the DOWN hosts' (`ripe`) VMs on shared storage with automaticRestart go: each, in name order, to
 * the scheduler's pick (scheduler.ts) among the UP hosts that see the shared storage, counting the VMs
 * placed before it. Every host computes the same from the same records, so each takes only its own.
 */
export function restartPlacement(
  hosts: readonly InventoryHost[],
  vms: readonly StoredVmRecord[],
  ripe: ReadonlySet<string>,
): Map<string, string> {
  const view = clusterHosts(
    hosts.filter((h) => h.status === "UP" && h.record.sharedStorage === true),
    vms.map((v) => v.record),
  );
  const waiting = vms
    .map((v) => v.record)
    .filter(
      (r) =>
        r.host !== undefined &&
        ripe.has(r.host) &&
        r.sharedStorage &&
        r.automaticRestart &&
        RESTARTABLE.has(r.status),
    )
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  const picks = new Map<string, string>();
  for (const r of waiting) {
    let pick: string;
    try {
      pick = placeVm(view, { cpus: r.cpus, memoryMiB: r.memoryMiB });
    } catch {
      continue;
    }
    picks.set(r.name, pick);
    const chosen = view.find((h) => h.name === pick)!;
    chosen.used = { vcpus: chosen.used.vcpus + r.cpus, memoryMiB: chosen.used.memoryMiB + r.memoryMiB };
  }
  return picks;
}

/** Why a DOWN host's VM is not restarted elsewhere, in the user's words. */
export function notRestartedReason(host: string, record: VmRecord): string {
  const why = record.automaticRestart
    ? "it restarts when the host returns (its disk is on that host, not on storage shared by the cluster)"
    : "automaticRestart is off: it stays down when the host returns";
  return `host '${host}' is DOWN (its lease expired); ${why}`;
}

export class HostFailover {
  /** When this host first saw each DOWN host DOWN (its own clock). */
  private readonly downSince = new Map<string, number>();
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> = Promise.resolve();

  constructor(
    private readonly member: {
      readonly host: string;
      readonly plane: ControlPlane;
      readonly inventory: HostInventory;
      readonly records: EtcdVmRecords;
    },
    private readonly options: {
      readonly ttlSeconds: number;
      readonly log: (line: string) => void;
      readonly restarter?: FailoverRestarter;
    },
  ) {}

  start(): void {
    const every = Math.min(2000, this.options.ttlSeconds * 250);
    this.timer = setInterval(() => {
      this.running = this.running.then(() =>
        this.check().then(
          () => {},
          (e) => {
            // etcd trouble: checked again at the next tick.
            if ((e as { code?: string }).code !== "control-plane-unavailable")
              this.options.log(`failover check failed: ${(e as Error).message}`);
          },
        ),
      );
    }, every);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.running;
  }

  /**
   * One look at the inventory: restarts here the VMs on shared storage of hosts DOWN for longer than a TTL
   * (when this host has room) and marks their other running VMs. Answers the names of the VMs it changed.
   */
  async check(now = Date.now()): Promise<string[]> {
    const hosts = await this.member.inventory.list();
    const ripe = new Set<string>();
    for (const { record, status } of hosts) {
      if (status !== "DOWN") {
        this.downSince.delete(record.name);
        continue;
      }
      const since = this.downSince.get(record.name) ?? now;
      this.downSince.set(record.name, since);
      if (now - since >= this.options.ttlSeconds * 1000) ripe.add(record.name);
    }
    if (ripe.size === 0) return [];
    const { vms } = await this.member.records.listAll();
    const picks = restartPlacement(hosts, vms, ripe);
    const restarter = this.options.restarter;
    const marked: string[] = [];
    for (const stored of vms) {
      const host = stored.record.host;
      if (host === undefined || !ripe.has(host)) continue;
      const { record } = stored;
      if (record.sharedStorage && record.automaticRestart) {
        if (!RESTARTABLE.has(record.status)) continue;
        const pick = picks.get(record.name);
        // The scheduler's pick takes it; once it is overdue (the pick did not, in a further TTL), any host
        // that sees the shared storage and has room does.
        const overdue = now - this.downSince.get(host)! >= 2 * this.options.ttlSeconds * 1000;
        if (restarter && (pick === this.member.host || overdue) && restarter.hasRoom(record)) {
          if (await this.takeOver(stored, host)) marked.push(record.name);
          continue;
        }
        if (
          WAS_RUNNING.has(record.status) &&
          (await this.markRepairing(stored, host, waitingReason(host, pick)))
        )
          marked.push(record.name);
        continue;
      }
      if (!WAS_RUNNING.has(record.status)) continue;
      if (await this.markRepairing(stored, host)) marked.push(record.name);
    }
    return marked;
  }

  /**
   * Takes over one VM on shared storage of DOWN host `host` (rule 3: its record and the host's absence as
   * seen) and has it restarted here. Answers whether this host won it.
   */
  private async takeOver(stored: StoredVmRecord, host: string): Promise<boolean> {
    const here = this.member.host;
    const reason = restartedHereReason(host, here);
    if (!(await this.markRepairing(stored, host, reason, here))) return false;
    // A failed restart is the hypervisor's to report (the VM stays REPAIRING or TERMINATED here, saying why).
    await this.options
      .restarter!.restart(stored.record.name, reason)
      .catch((e) =>
        this.options.log(`${stored.record.name}: the restart here failed: ${(e as Error).message}`),
      );
    return true;
  }

  /**
   * Marks one VM of DOWN host `host` REPAIRING (giving it to `newHost` when named), if its record and the
   * host's absence are as seen.
   */
  private async markRepairing(
    stored: StoredVmRecord,
    host: string,
    reason = notRestartedReason(host, stored.record),
    newHost?: string,
  ): Promise<boolean> {
    const { record, revision } = stored;
    const at = new Date().toISOString();
    const marked: VmRecord = {
      ...record,
      ...(newHost === undefined ? {} : { host: newHost }),
      status: "REPAIRING",
      statusMessage: reason,
      history: withHistory(record, { at, from: record.status, to: "REPAIRING", reason }),
    };
    const key = this.member.plane.key(`vms/${record.name}`);
    const alive = this.member.plane.key(`hosts-alive/${host}`);
    const result = await this.member.plane.call(`mark VM '${record.name}' of DOWN host '${host}'`, (c) =>
      c
        .if(key, "Mod", "==", revision)
        .and(alive, "Create", "==", 0)
        .then(c.put(key).value(serializeVmRecord(marked)))
        .commit(),
    );
    if (result.succeeded)
      this.options.log(
        `${record.name}: ${record.status} → REPAIRING (${reason}), marked by '${this.member.host}'`,
      );
    return result.succeeded;
  }
}
