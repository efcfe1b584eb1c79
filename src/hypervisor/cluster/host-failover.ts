// What the surviving hosts do about a DOWN host (docs/cluster.md "Failover"): every host watches the
// inventory; once a host has been DOWN for a further lease TTL (time enough for it to have fenced itself,
// lease-fence.ts, even with a stalled event loop), its VMs that were running are marked REPAIRING with
// the reason, each in one transaction that compares the record's revision and that the host's liveness
// key is still absent, so that a host coming back, or another host marking at the same moment, wins
// cleanly and nothing is written twice. The VM restarts when its host returns (its daemon's recovery
// restarts a REPAIRING VM whose VMM is gone, per automaticRestart). Restarting it on another host needs
// its disk on storage every host sees, which VMs do not have yet: the reason says so.

import { serializeVmRecord, type VmRecord, withHistory } from "../vm-record.ts";
import type { StoredVmRecord } from "../vm-record-store.ts";
import type { ControlPlane } from "./control-plane.ts";
import type { EtcdVmRecords } from "./etcd-vm-records.ts";
import type { HostInventory } from "./host-inventory.ts";

/** The statuses of a VM whose guest ran (or was about to) on the host when it went DOWN. */
const WAS_RUNNING: ReadonlySet<VmRecord["status"]> = new Set(["RUNNING", "STAGING"]);

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
    private readonly options: { readonly ttlSeconds: number; readonly log: (line: string) => void },
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

  /** One look at the inventory: marks the VMs of hosts DOWN for longer than a TTL. */
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
    const marked: string[] = [];
    for (const stored of vms) {
      const host = stored.record.host;
      if (host === undefined || !ripe.has(host) || !WAS_RUNNING.has(stored.record.status)) continue;
      if (await this.markRepairing(stored, host)) marked.push(stored.record.name);
    }
    return marked;
  }

  /** Marks one VM of DOWN host `host` REPAIRING, if its record and the host's absence are as seen. */
  private async markRepairing(stored: StoredVmRecord, host: string): Promise<boolean> {
    const { record, revision } = stored;
    const reason = notRestartedReason(host, record);
    const at = new Date().toISOString();
    const marked: VmRecord = {
      ...record,
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
