// Host capacity and admission control: what the host offers (vCPUs = cores × overcommit, memory = total −
// reserve, disk = free space − reserve) and the check that refuses a VM that would not fit, worded after
// Compute Engine's quota errors (resource, request, what is free).

import { statfs } from "node:fs/promises";
import { availableParallelism, totalmem } from "node:os";
import { HypervisorError } from "./hypervisor-error.ts";
import type { VmStatus } from "./lifecycle.ts";

export interface CapacityConfig {
  /** vCPUs offered per host core; an emulated vCPU rarely keeps a core busy (idle guests sleep). */
  readonly cpuOvercommit: number;
  /** Memory kept for the host, the daemon and the VMM processes' own heaps. */
  readonly memoryReserveMiB: number;
  /** Disk space kept free on the data directory's filesystem. */
  readonly diskReserveMiB: number;
}

export const DEFAULT_CAPACITY_CONFIG: CapacityConfig = {
  cpuOvercommit: 4,
  memoryReserveMiB: 1024,
  diskReserveMiB: 1024,
};

export interface HostCapacity {
  readonly cores: number;
  readonly cpuOvercommit: number;
  /** cores × cpuOvercommit, rounded down. */
  readonly vcpus: number;
  readonly totalMemoryMiB: number;
  /** totalMemoryMiB − reserve (at least 0). */
  readonly memoryMiB: number;
  /** Free space on the data directory's filesystem when measured, minus the reserve (at least 0). */
  readonly diskFreeMiB: number;
}

export class InvalidCapacityConfigError extends HypervisorError {
  constructor(problem: string) {
    super("invalid-config", `the capacity configuration is unusable: ${problem}`);
  }
}

/** Validates a (partial, e.g. read from config.json) configuration and fills in the defaults. */
export function capacityConfig(raw: unknown): CapacityConfig {
  if (raw === undefined) return DEFAULT_CAPACITY_CONFIG;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw))
    throw new InvalidCapacityConfigError("it must be an object");
  const r = raw as Record<string, unknown>;
  const num = (key: keyof CapacityConfig, min: number, max: number): number => {
    const v = r[key] ?? DEFAULT_CAPACITY_CONFIG[key];
    if (typeof v !== "number" || !Number.isFinite(v) || v < min || v > max)
      throw new InvalidCapacityConfigError(`'${key}' must be a number from ${min} to ${max}`);
    return v;
  };
  return {
    cpuOvercommit: num("cpuOvercommit", 0.1, 64),
    memoryReserveMiB: num("memoryReserveMiB", 0, 1 << 30),
    diskReserveMiB: num("diskReserveMiB", 0, 1 << 30),
  };
}

/** Capacity from explicit host figures; separate from measuring so that admission is testable exactly. */
export function hostCapacity(
  config: CapacityConfig,
  host: { cores: number; totalMemoryMiB: number; diskAvailableMiB: number },
): HostCapacity {
  return {
    cores: host.cores,
    cpuOvercommit: config.cpuOvercommit,
    vcpus: Math.floor(host.cores * config.cpuOvercommit),
    totalMemoryMiB: host.totalMemoryMiB,
    memoryMiB: Math.max(0, host.totalMemoryMiB - config.memoryReserveMiB),
    diskFreeMiB: Math.max(0, host.diskAvailableMiB - config.diskReserveMiB),
  };
}

/** Measures this host: cores, total memory, and the space available to us where `dataDir` lives. */
export async function measureHostCapacity(config: CapacityConfig, dataDir: string): Promise<HostCapacity> {
  const fs = await statfs(dataDir);
  return hostCapacity(config, {
    cores: availableParallelism(),
    totalMemoryMiB: Math.floor(totalmem() / 1048576),
    diskAvailableMiB: Math.floor((fs.bavail * fs.bsize) / 1048576),
  });
}

/**
 * States in which a VM holds its vCPUs and memory. TERMINATED and SUSPENDED release them ("CPU and memory
 * released, disks kept"); REPAIRING keeps them so that the restart cannot be refused.
 */
const HOLDS_CPU_AND_MEMORY: ReadonlySet<VmStatus> = new Set([
  "PROVISIONING",
  "STAGING",
  "RUNNING",
  "STOPPING",
  "SUSPENDING",
  "REPAIRING",
]);

export function holdsCpuAndMemory(status: VmStatus): boolean {
  return HOLDS_CPU_AND_MEMORY.has(status);
}

export interface VmAllocation {
  readonly name: string;
  readonly status: VmStatus;
  readonly cpus: number;
  readonly memoryMiB: number;
}

export interface HostUsage {
  readonly vcpus: number;
  readonly memoryMiB: number;
}

export function hostUsage(vms: readonly VmAllocation[]): HostUsage {
  let vcpus = 0;
  let memoryMiB = 0;
  for (const vm of vms) {
    if (!holdsCpuAndMemory(vm.status)) continue;
    vcpus += vm.cpus;
    memoryMiB += vm.memoryMiB;
  }
  return { vcpus, memoryMiB };
}

export type CapacityResource = "CPUS" | "MEMORY" | "DISK";

export class CapacityExceededError extends HypervisorError {
  constructor(
    readonly resource: CapacityResource,
    readonly requested: number,
    readonly free: number,
    readonly limit: number,
    message: string,
  ) {
    super("capacity-exceeded", message);
  }
}

export interface AdmissionRequest {
  readonly name: string;
  readonly cpus: number;
  readonly memoryMiB: number;
  /** New disk space the request needs (0 when starting an existing VM: its disk is already there). */
  readonly diskMiB: number;
}

/**
 * Throws CapacityExceededError unless `request` fits beside the VMs in `vms` (the requesting VM itself
 * must not be among the holders). Checked in the order CPUS, MEMORY, DISK; the first shortfall is named.
 */
export function checkAdmission(
  capacity: HostCapacity,
  vms: readonly VmAllocation[],
  request: AdmissionRequest,
): void {
  const used = hostUsage(vms.filter((vm) => vm.name !== request.name));
  const freeCpus = Math.max(0, capacity.vcpus - used.vcpus);
  if (request.cpus > freeCpus)
    throw new CapacityExceededError(
      "CPUS",
      request.cpus,
      freeCpus,
      capacity.vcpus,
      `Insufficient host capacity for 'CPUS': VM '${request.name}' requests ${request.cpus} vCPU` +
        `${request.cpus === 1 ? "" : "s"}, but only ${freeCpus} of ${capacity.vcpus} are free ` +
        `(${capacity.cores} cores × overcommit ${capacity.cpuOvercommit}; ${used.vcpus} in use).`,
    );
  const freeMemory = Math.max(0, capacity.memoryMiB - used.memoryMiB);
  if (request.memoryMiB > freeMemory)
    throw new CapacityExceededError(
      "MEMORY",
      request.memoryMiB,
      freeMemory,
      capacity.memoryMiB,
      `Insufficient host capacity for 'MEMORY': VM '${request.name}' requests ${request.memoryMiB} MiB, ` +
        `but only ${freeMemory} MiB of ${capacity.memoryMiB} MiB are free ` +
        `(${capacity.totalMemoryMiB} MiB total minus the host reserve; ${used.memoryMiB} MiB in use).`,
    );
  if (request.diskMiB > capacity.diskFreeMiB)
    throw new CapacityExceededError(
      "DISK",
      request.diskMiB,
      capacity.diskFreeMiB,
      capacity.diskFreeMiB,
      `Insufficient host capacity for 'DISK': VM '${request.name}' needs ${request.diskMiB} MiB for its disk, ` +
        `but only ${capacity.diskFreeMiB} MiB are free in the data directory (after the host reserve).`,
    );
}
