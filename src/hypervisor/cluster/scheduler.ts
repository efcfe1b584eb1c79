// Where a new VM goes in a cluster (docs/cluster.md, "Scheduling"): among the hosts that are UP (not
// DRAINING, not DOWN) and have room for its vCPUs and memory, the one with the most free memory; ties go to
// the one with the most free vCPUs, then to the first by name. A host named by the user must be UP and
// have room. Each host's own admission still checks the VM when it arrives (the figures here are etcd's).

import type { ClusterHost } from "../../api/schemas/host-schemas.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import { holdsCpuAndMemory } from "../resources.ts";
import type { VmRecord } from "../vm-record.ts";
import type { InventoryHost } from "./host-inventory.ts";

/** The hosts as the API shows them: the inventory with what each host's VMs (from their records) use. */
export function clusterHosts(hosts: readonly InventoryHost[], records: readonly VmRecord[]): ClusterHost[] {
  return hosts.map(({ record, status }) => {
    const mine = records.filter((r) => r.host === record.name);
    const used = { vcpus: 0, memoryMiB: 0 };
    for (const r of mine) {
      if (!holdsCpuAndMemory(r.status)) continue;
      used.vcpus += r.cpus;
      used.memoryMiB += r.memoryMiB;
    }
    return {
      kind: "tsvm#clusterHost",
      name: record.name,
      status,
      address: record.address,
      capacity: record.capacity,
      used,
      vms: mine.map((r) => r.name).sort(),
      sharedStorage: record.sharedStorage === true,
      joinedAt: record.joinedAt,
    };
  });
}

function free(host: ClusterHost): { vcpus: number; memoryMiB: number } {
  return {
    vcpus: host.capacity.vcpus - host.used.vcpus,
    memoryMiB: host.capacity.memoryMiB - host.used.memoryMiB,
  };
}

function describe(host: ClusterHost): string {
  const f = free(host);
  return `${host.name} (${host.status}, ${f.vcpus} vCPUs and ${f.memoryMiB} MiB free)`;
}

/** The host for a VM of `cpus` and `memoryMiB`: `wanted` when given, else the scheduler's pick. */
export function placeVm(
  hosts: readonly ClusterHost[],
  need: { cpus: number; memoryMiB: number },
  wanted?: string,
): string {
  const fits = (h: ClusterHost) => {
    const f = free(h);
    return f.vcpus >= need.cpus && f.memoryMiB >= need.memoryMiB;
  };
  const asked = `${need.cpus} vCPUs and ${need.memoryMiB} MiB`;
  if (wanted !== undefined) {
    const host = hosts.find((h) => h.name === wanted);
    if (!host)
      throw new HypervisorError(
        "invalid-argument",
        `no host '${wanted.slice(0, 80)}' in the cluster; hosts: ${hosts.map((h) => h.name).join(", ") || "none"}`,
      );
    if (host.status !== "UP")
      throw new HypervisorError(
        "host-unavailable",
        `host '${wanted}' is ${host.status} and takes no new VMs; choose another host or none`,
      );
    if (!fits(host))
      throw new HypervisorError(
        "capacity-exceeded",
        `host '${wanted}' has no room for ${asked}: ${describe(host)}`,
      );
    return host.name;
  }
  const candidates = hosts.filter((h) => h.status === "UP" && fits(h));
  candidates.sort(
    (a, b) =>
      free(b).memoryMiB - free(a).memoryMiB || free(b).vcpus - free(a).vcpus || a.name.localeCompare(b.name),
  );
  const chosen = candidates[0];
  if (!chosen)
    throw new HypervisorError(
      "capacity-exceeded",
      `no host of the cluster has room for ${asked}: ${hosts.map(describe).join("; ") || "no hosts"}`,
    );
  return chosen.name;
}
