import assert from "node:assert/strict";
import { test } from "node:test";
import {
  canTransition,
  checkAction,
  firstStatusOf,
  IllegalActionError,
  IllegalTransitionError,
  isActionLegal,
  transition,
  VM_ACTIONS,
  VM_STATUSES,
  type VmAction,
  type VmStatus,
} from "./lifecycle.ts";

// Written out independently of lifecycle.ts so that a change to the table must be made in both places.
const EXPECTED_EDGES = new Set([
  "PROVISIONING>STAGING",
  "PROVISIONING>TERMINATED",
  "PROVISIONING>SUSPENDED",
  "PROVISIONING>STOPPING",
  "STAGING>RUNNING",
  "STAGING>TERMINATED",
  "STAGING>SUSPENDED",
  "STAGING>REPAIRING",
  "STAGING>STOPPING",
  "RUNNING>STOPPING",
  "RUNNING>SUSPENDING",
  "RUNNING>REPAIRING",
  "STOPPING>TERMINATED",
  "TERMINATED>PROVISIONING",
  "SUSPENDING>SUSPENDED",
  "SUSPENDING>RUNNING",
  "SUSPENDING>REPAIRING",
  "SUSPENDING>STOPPING",
  "SUSPENDED>PROVISIONING",
  "SUSPENDED>STOPPING",
  "REPAIRING>STAGING",
  "REPAIRING>TERMINATED",
  "REPAIRING>STOPPING",
]);

const EXPECTED_LEGAL: Record<VmAction, VmStatus[]> = {
  start: ["TERMINATED"],
  // A VM stranded in a transitional status by a record write that failed can always be stopped.
  stop: ["RUNNING", "SUSPENDED", "PROVISIONING", "STAGING", "STOPPING", "SUSPENDING", "REPAIRING"],
  reset: ["RUNNING"],
  suspend: ["RUNNING"],
  resume: ["SUSPENDED"],
  delete: [...VM_STATUSES],
  setMachineType: ["TERMINATED"],
  update: ["TERMINATED"],
  exec: ["RUNNING"],
  export: ["TERMINATED", "SUSPENDED"],
  createSnapshot: ["RUNNING", "TERMINATED", "SUSPENDED"],
  restoreSnapshot: ["RUNNING", "TERMINATED", "SUSPENDED"],
  deleteSnapshot: ["RUNNING", "TERMINATED", "SUSPENDED"],
  clone: ["TERMINATED", "SUSPENDED"],
  cloneSnapshot: ["RUNNING", "TERMINATED", "SUSPENDED"],
  move: ["RUNNING", "TERMINATED", "SUSPENDED"],
};

test("every (from, to) pair: legal ones return the target, illegal ones throw naming both states", () => {
  let legal = 0;
  for (const from of VM_STATUSES) {
    for (const to of VM_STATUSES) {
      const key = `${from}>${to}`;
      if (EXPECTED_EDGES.has(key)) {
        assert.equal(transition(from, to), to, key);
        assert.equal(canTransition(from, to), true, key);
        legal++;
      } else {
        assert.equal(canTransition(from, to), false, key);
        assert.throws(
          () => transition(from, to),
          (e: unknown) =>
            e instanceof IllegalTransitionError &&
            e.code === "illegal-transition" &&
            e.from === from &&
            e.to === to &&
            e.message.includes(from) &&
            e.message.includes(to),
          key,
        );
      }
    }
  }
  assert.equal(legal, EXPECTED_EDGES.size);
});

test("the Compute Engine paths are walkable: create, stop/start, suspend/resume, repair", () => {
  const walk = (path: VmStatus[]) => {
    for (let i = 1; i < path.length; i++) transition(path[i - 1]!, path[i]!);
  };
  walk([
    "PROVISIONING",
    "STAGING",
    "RUNNING",
    "STOPPING",
    "TERMINATED",
    "PROVISIONING",
    "STAGING",
    "RUNNING",
  ]);
  walk(["RUNNING", "SUSPENDING", "SUSPENDED", "PROVISIONING", "STAGING", "RUNNING"]);
  walk(["RUNNING", "REPAIRING", "STAGING", "RUNNING"]);
  walk(["RUNNING", "REPAIRING", "TERMINATED"]);
  walk(["SUSPENDED", "STOPPING", "TERMINATED"]);
  // A VM stranded by a status change that could not be written is stopped from where it is.
  for (const stranded of ["PROVISIONING", "STAGING", "SUSPENDING", "REPAIRING"] as const)
    walk([stranded, "STOPPING", "TERMINATED"]);
});

test("no status is a dead end: from each, some action is legal", () => {
  for (const status of VM_STATUSES)
    assert.ok(
      VM_ACTIONS.some((a) => isActionLegal(a, status)),
      `no action is legal while ${status}`,
    );
});

test("every (status, action) pair: legal where listed, IllegalActionError naming action and status elsewhere", () => {
  for (const action of VM_ACTIONS) {
    for (const status of VM_STATUSES) {
      const expected = EXPECTED_LEGAL[action].includes(status);
      assert.equal(isActionLegal(action, status), expected, `${action} in ${status}`);
      if (expected) {
        assert.doesNotThrow(() => checkAction(action, status, "web"));
      } else {
        assert.throws(
          () => checkAction(action, status, "web"),
          (e: unknown) =>
            e instanceof IllegalActionError &&
            e.code === "illegal-action" &&
            e.message.includes(`cannot ${action} VM 'web' while it is ${status}`),
          `${action} in ${status}`,
        );
      }
    }
  }
});

test("each action's first status is reachable by a legal transition from every status it is legal in", () => {
  for (const action of VM_ACTIONS) {
    const first = firstStatusOf(action);
    if (first === undefined) continue;
    for (const status of EXPECTED_LEGAL[action]) {
      // A stop of a VM already STOPPING only finishes it.
      if (status === first) continue;
      assert.equal(canTransition(status, first), true, `${action}: ${status} → ${first}`);
    }
  }
  assert.equal(firstStatusOf("reset"), undefined);
  assert.equal(firstStatusOf("setMachineType"), undefined);
  assert.equal(firstStatusOf("exec"), undefined);
  assert.equal(firstStatusOf("clone"), undefined);
});
