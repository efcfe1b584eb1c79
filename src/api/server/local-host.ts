// A daemon that is not in a cluster is a cluster of one host named "local": the hosts collection shows it,
// and an insert may name it (or no host) but no other.

import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import type { ClusterHost } from "../schemas/host-schemas.ts";
import { ApiFailure } from "./validation.ts";

export const LOCAL_HOST_NAME = "local";

/** Refuses an insert naming a host other than this one. */
export function checkLocalHost(host: string | undefined): void {
  if (host !== undefined && host !== LOCAL_HOST_NAME)
    throw new ApiFailure(
      400,
      "invalid-argument",
      `no host '${host.slice(0, 80)}': this daemon is not in a cluster, its one host is '${LOCAL_HOST_NAME}'`,
    );
}

/** The one host, UP since the server started, with its capacity, usage and VMs. */
export function localHosts(hv: Hypervisor, since: string): ClusterHost[] {
  const { capacity, usage } = hv.capacity();
  return [
    {
      kind: "tsvm#clusterHost",
      name: LOCAL_HOST_NAME,
      status: "UP",
      address: "",
      capacity: { vcpus: capacity.vcpus, memoryMiB: capacity.memoryMiB },
      used: { vcpus: usage.vcpus, memoryMiB: usage.memoryMiB },
      vms: hv.list().vms.map((v) => v.name),
      sharedStorage: false,
      joinedAt: since,
    },
  ];
}
