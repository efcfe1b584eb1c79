import assert from "node:assert/strict";
import { test } from "node:test";
import {
  checkVmSize,
  DEFAULT_MACHINE_TYPE,
  InvalidMachineTypeError,
  MACHINE_TYPES,
  machineTypeFor,
  resolveMachineType,
  VM_LIMITS,
} from "./machine-types.ts";

test("every predefined type resolves to itself and lies within the VM limits", () => {
  for (const t of MACHINE_TYPES) {
    assert.deepEqual(resolveMachineType(t.name), t);
    assert.doesNotThrow(() => checkVmSize(t.cpus, t.memoryMiB));
  }
  assert.ok(MACHINE_TYPES.some((t) => t.name === DEFAULT_MACHINE_TYPE));
});

test("custom-CPUS-MEMORY types are parsed and bounded", () => {
  assert.deepEqual(resolveMachineType("custom-3-768"), {
    name: "custom-3-768",
    cpus: 3,
    memoryMiB: 768,
    description: "3 vCPUs, 768 MiB",
  });
  assert.throws(() => resolveMachineType("custom-0-256"), /invalid vCPU count 0/);
  assert.throws(() => resolveMachineType("custom-1-0"), /invalid memory size 0 MiB/);
  assert.throws(() => resolveMachineType("custom-1-1048576"), /invalid memory size 1048576 MiB/);
  assert.throws(
    () => resolveMachineType("n1-standard-96"),
    (e: unknown) =>
      e instanceof InvalidMachineTypeError && /unknown machine type 'n1-standard-96'/.test(e.message),
  );
});

test("a size pair is named after the predefined type of that size, else custom", () => {
  assert.equal(machineTypeFor(1, 128).name, "t1-micro");
  assert.equal(machineTypeFor(2, 256).name, "custom-2-256");
  assert.throws(() => machineTypeFor(VM_LIMITS.maxCpus + 1, 128), InvalidMachineTypeError);
  assert.throws(() => machineTypeFor(1, 1.5), InvalidMachineTypeError);
  assert.throws(() => machineTypeFor(1, VM_LIMITS.minMemoryMiB - 1), InvalidMachineTypeError);
});
