import assert from "node:assert/strict";
import { tmpdir } from "node:os";
import { test } from "node:test";
import { VM_STATUSES } from "./lifecycle.ts";
import {
  CapacityExceededError,
  capacityConfig,
  checkAdmission,
  DEFAULT_CAPACITY_CONFIG,
  hostCapacity,
  hostUsage,
  InvalidCapacityConfigError,
  measureHostCapacity,
  type VmAllocation,
} from "./resources.ts";

// A 2-core, 4 GiB host with overcommit 2: 4 vCPUs, 3072 MiB after a 1 GiB reserve, 10 GiB disk free.
const capacity = hostCapacity(
  { cpuOvercommit: 2, memoryReserveMiB: 1024, diskReserveMiB: 1024 },
  { cores: 2, totalMemoryMiB: 4096, diskAvailableMiB: 11264 },
);

test("capacity: vCPUs = cores × overcommit, memory = total − reserve, disk = available − reserve", () => {
  assert.deepEqual(capacity, {
    cores: 2,
    cpuOvercommit: 2,
    vcpus: 4,
    totalMemoryMiB: 4096,
    memoryMiB: 3072,
    diskFreeMiB: 10240,
  });
  const tiny = hostCapacity(
    { cpuOvercommit: 1.5, memoryReserveMiB: 8192, diskReserveMiB: 99999 },
    { cores: 3, totalMemoryMiB: 4096, diskAvailableMiB: 10 },
  );
  assert.equal(tiny.vcpus, 4);
  assert.equal(tiny.memoryMiB, 0);
  assert.equal(tiny.diskFreeMiB, 0);
});

test("measuring this host gives positive figures", async () => {
  const c = await measureHostCapacity(DEFAULT_CAPACITY_CONFIG, tmpdir());
  assert.ok(c.cores >= 1 && c.vcpus >= c.cores && c.totalMemoryMiB > 0 && c.diskFreeMiB >= 0);
});

test("only VMs that hold CPU and memory count: TERMINATED and SUSPENDED release them", () => {
  const vms: VmAllocation[] = VM_STATUSES.map((status, i) => ({
    name: `vm${i}`,
    status,
    cpus: 1,
    memoryMiB: 100,
  }));
  assert.deepEqual(hostUsage(vms), { vcpus: 6, memoryMiB: 600 });
});

test("admission: a fitting VM passes; each resource refused with its name, the request and what is free", () => {
  const running: VmAllocation[] = [
    { name: "a", status: "RUNNING", cpus: 2, memoryMiB: 1024 },
    { name: "b", status: "TERMINATED", cpus: 4, memoryMiB: 3072 },
  ];
  assert.doesNotThrow(() =>
    checkAdmission(capacity, running, { name: "c", cpus: 2, memoryMiB: 2048, diskMiB: 10240 }),
  );
  assert.throws(
    () => checkAdmission(capacity, running, { name: "c", cpus: 3, memoryMiB: 128, diskMiB: 0 }),
    (e: unknown) =>
      e instanceof CapacityExceededError &&
      e.code === "capacity-exceeded" &&
      e.resource === "CPUS" &&
      e.requested === 3 &&
      e.free === 2 &&
      e.message.includes("'CPUS'") &&
      e.message.includes("requests 3 vCPUs, but only 2 of 4 are free"),
  );
  assert.throws(
    () => checkAdmission(capacity, running, { name: "c", cpus: 1, memoryMiB: 2049, diskMiB: 0 }),
    (e: unknown) =>
      e instanceof CapacityExceededError &&
      e.resource === "MEMORY" &&
      e.message.includes("requests 2049 MiB, but only 2048 MiB of 3072 MiB are free"),
  );
  assert.throws(
    () => checkAdmission(capacity, running, { name: "c", cpus: 1, memoryMiB: 64, diskMiB: 10241 }),
    (e: unknown) =>
      e instanceof CapacityExceededError &&
      e.resource === "DISK" &&
      e.message.includes("only 10240 MiB are free"),
  );
});

test("a VM being restarted does not count against itself", () => {
  const vms: VmAllocation[] = [{ name: "a", status: "REPAIRING", cpus: 4, memoryMiB: 3072 }];
  assert.doesNotThrow(() =>
    checkAdmission(capacity, vms, { name: "a", cpus: 4, memoryMiB: 3072, diskMiB: 0 }),
  );
  assert.throws(
    () => checkAdmission(capacity, vms, { name: "b", cpus: 1, memoryMiB: 32, diskMiB: 0 }),
    /'CPUS'/,
  );
});

test("capacity configuration: defaults, partial overrides, and bad values refused by name", () => {
  assert.deepEqual(capacityConfig(undefined), DEFAULT_CAPACITY_CONFIG);
  assert.deepEqual(capacityConfig({ cpuOvercommit: 1 }), { ...DEFAULT_CAPACITY_CONFIG, cpuOvercommit: 1 });
  assert.throws(() => capacityConfig({ cpuOvercommit: 0 }), InvalidCapacityConfigError);
  assert.throws(() => capacityConfig({ memoryReserveMiB: "1G" }), /'memoryReserveMiB'/);
  assert.throws(() => capacityConfig([]), InvalidCapacityConfigError);
});
