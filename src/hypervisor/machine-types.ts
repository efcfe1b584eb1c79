// The machine types a VM can be created with, named and sized after Compute Engine's (shared-core and
// standard families, and `custom-CPUS-MEMORY`), and the per-VM limits of the RV64 virt board.

import { type MachineType, VM_LIMITS } from "../api/schemas/vm-schemas.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export { type MachineType, VM_LIMITS };

/** The documented table (docs/hypervisor.md); sized for an emulated RISC-V guest, not for cloud servers. */
export const MACHINE_TYPES: readonly MachineType[] = [
  { name: "t1-micro", cpus: 1, memoryMiB: 128, description: "1 vCPU, 128 MiB" },
  { name: "t1-small", cpus: 1, memoryMiB: 256, description: "1 vCPU, 256 MiB" },
  { name: "t1-medium", cpus: 2, memoryMiB: 512, description: "2 vCPUs, 512 MiB" },
  { name: "t1-standard-2", cpus: 2, memoryMiB: 1024, description: "2 vCPUs, 1 GiB" },
  { name: "t1-standard-4", cpus: 4, memoryMiB: 2048, description: "4 vCPUs, 2 GiB" },
];

export const DEFAULT_MACHINE_TYPE = "t1-small";

export class InvalidMachineTypeError extends HypervisorError {
  constructor(message: string) {
    super("invalid-machine-type", message);
  }
}

const CUSTOM = /^custom-(\d{1,4})-(\d{1,7})$/;

/** Checks a cpus/memory pair against VM_LIMITS; throws InvalidMachineTypeError saying which bound. */
export function checkVmSize(cpus: number, memoryMiB: number): void {
  if (!Number.isInteger(cpus) || cpus < VM_LIMITS.minCpus || cpus > VM_LIMITS.maxCpus)
    throw new InvalidMachineTypeError(
      `invalid vCPU count ${cpus}: a VM has ${VM_LIMITS.minCpus} to ${VM_LIMITS.maxCpus} vCPUs`,
    );
  if (
    !Number.isInteger(memoryMiB) ||
    memoryMiB < VM_LIMITS.minMemoryMiB ||
    memoryMiB > VM_LIMITS.maxMemoryMiB
  )
    throw new InvalidMachineTypeError(
      `invalid memory size ${memoryMiB} MiB: a VM has ${VM_LIMITS.minMemoryMiB} MiB to ` +
        `${VM_LIMITS.maxMemoryMiB} MiB of memory (whole MiB)`,
    );
}

/** A predefined type by name, or a `custom-CPUS-MEMORYMIB` one; throws InvalidMachineTypeError. */
export function resolveMachineType(name: string): MachineType {
  const predefined = MACHINE_TYPES.find((t) => t.name === name);
  if (predefined) return predefined;
  const m = CUSTOM.exec(name);
  if (!m)
    throw new InvalidMachineTypeError(
      `unknown machine type '${name.slice(0, 80)}'; use one of ${MACHINE_TYPES.map((t) => t.name).join(", ")} ` +
        "or custom-CPUS-MEMORYMIB",
    );
  const cpus = Number(m[1]);
  const memoryMiB = Number(m[2]);
  checkVmSize(cpus, memoryMiB);
  return { name, cpus, memoryMiB, description: `${cpus} vCPU${cpus === 1 ? "" : "s"}, ${memoryMiB} MiB` };
}

/** The name for a cpus/memory pair: the predefined type of that size if there is one, else custom-…. */
export function machineTypeFor(cpus: number, memoryMiB: number): MachineType {
  checkVmSize(cpus, memoryMiB);
  return (
    MACHINE_TYPES.find((t) => t.cpus === cpus && t.memoryMiB === memoryMiB) ??
    resolveMachineType(`custom-${cpus}-${memoryMiB}`)
  );
}
