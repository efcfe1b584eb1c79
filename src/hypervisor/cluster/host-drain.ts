// A drain of this host (`tsvm host drain H`, docs/cluster.md "Maintenance"): once the host is marked
// DRAINING (it takes no new VMs), each of its VMs that holds resources goes by its onHostMaintenance: a
// TERMINATE one is stopped, a MIGRATE one (the default) is moved to another host by `moveVm` (`tsvm move`'s
// Hypervisor.move, to the scheduler's pick). What
// could not be done is reported per VM; the host stays DRAINING until `tsvm host undrain H`.

import type { HostDrainResult } from "../../api/schemas/host-schemas.ts";
import type { Hypervisor } from "../hypervisor.ts";
import { holdsCpuAndMemory } from "../resources.ts";

/** Moves a VM of this host live to another host (the scheduler's pick) and answers that host's name. */
export type MoveVm = (name: string) => Promise<string>;

/** How long a stop is waited for beyond the daemon's stop timeout (the guest's own shutdown). */
const STOP_MARGIN_MS = 30_000;

export async function drainLocalVms(
  hv: Hypervisor,
  options: { stopTimeoutMs: number; moveVm: MoveVm },
): Promise<Omit<HostDrainResult, "kind" | "host">> {
  const result: Omit<HostDrainResult, "kind" | "host"> = { stopped: [], moved: [], remaining: [] };
  const leave = (name: string, reason: string) =>
    result.remaining.push({ name, reason: reason.slice(0, 1000) });
  for (const vm of hv.list().vms) {
    if (!holdsCpuAndMemory(vm.status)) continue;
    const policy = vm.onHostMaintenance ?? "MIGRATE";
    try {
      if (policy === "TERMINATE") {
        const done = await hv.waitOperation(hv.stop(vm.name).id, options.stopTimeoutMs + STOP_MARGIN_MS);
        if (done.error) leave(vm.name, `the stop failed: ${done.error.message}`);
        else result.stopped.push(vm.name);
      } else {
        result.moved.push({ name: vm.name, to: await options.moveVm(vm.name) });
      }
    } catch (e) {
      leave(vm.name, `${policy === "TERMINATE" ? "the stop" : "the move"} failed: ${(e as Error).message}`);
    }
  }
  return result;
}
