// The cluster's event log against a real etcd on 127.0.0.1: two hosts' events get one contiguous numbering
// that both hosts see in the same order, replayed history is not published again, events appended while
// etcd is away are published when it returns, and a value that is not an event is ignored.
import assert from "node:assert/strict";
import { test } from "node:test";
import { useTestEtcd } from "../fixtures/test-etcd.ts";
import { EventLog, type VmEvent } from "../event-log.ts";
import { EtcdEventLog } from "./etcd-event-log.ts";

const etcd = useTestEtcd();

function event(vmName: string, message: string): Omit<VmEvent, "seq"> {
  return {
    time: new Date().toISOString(),
    type: "notice",
    vmName,
    vmId: "",
    from: "RUNNING",
    to: "RUNNING",
    message,
  };
}

async function until(what: string, ok: () => boolean, ms = 20_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test("two hosts' events are numbered once for the cluster and seen alike by both; history is not published again", async () => {
  const plane = etcd.plane("events");
  const local1 = new EventLog();
  const local2 = new EventLog();
  local1.append(event("old", "replayed from vm.json at start"));
  const reports: string[] = [];
  const h1 = await EtcdEventLog.open(plane, local1, local1.lastSeq, (l) => reports.push(l));
  const h2 = await EtcdEventLog.open(plane, local2, local2.lastSeq, (l) => reports.push(l));
  try {
    for (let i = 0; i < 30; i++) {
      local1.append(event("web", `h1 ${i}`));
      local2.append(event("db", `h2 ${i}`));
    }
    await until("both hosts have all 60", () => h1.log.lastSeq === 60 && h2.log.lastSeq === 60);
    const seen1 = h1.log.since(0, 1000);
    const seen2 = h2.log.since(0, 1000);
    assert.deepEqual(seen1, seen2, "the same events, the same numbers, the same order on both hosts");
    assert.deepEqual(
      seen1.map((e) => e.seq),
      Array.from({ length: 60 }, (_, i) => i + 1),
      "contiguous",
    );
    assert.ok(!seen1.some((e) => e.vmName === "old"), "replayed history is not published");
    const h1Order = seen1.filter((e) => e.vmName === "web").map((e) => e.message);
    assert.deepEqual(
      h1Order,
      Array.from({ length: 30 }, (_, i) => `h1 ${i}`),
      "a host's events keep its order",
    );
    assert.deepEqual(
      h2.log.since(0, 1000, "web").length,
      30,
      "filtered by instance as a daemon's own log is",
    );

    // A host that joins later starts from etcd's newest events.
    const late = await EtcdEventLog.open(plane, new EventLog(), 0, (l) => reports.push(l));
    assert.equal(late.log.firstSeq, 1);
    assert.equal(late.log.lastSeq, 60);
    await late.close();

    // A value under events/ that is not an event is reported and skipped; the numbering goes on.
    await plane.client.put(plane.key(`events/${"9".repeat(16)}`)).value("{not json");
    await until("the bad value is reported", () => reports.some((r) => r.includes("is not an event")));
    local2.append(event("db", "after the bad value"));
    await until("host 1 sees it", () => h1.log.lastSeq === 61);
    assert.equal(h1.log.since(60)[0]?.message, "after the bad value");
    assert.equal(h1.pending + h2.pending, 0);
  } finally {
    await h1.close();
    await h2.close();
  }
});

test("events appended while etcd is away are published when it returns", async () => {
  const plane = etcd.plane("away");
  const local1 = new EventLog();
  const local2 = new EventLog();
  const h1 = await EtcdEventLog.open(plane, local1, 0, () => {});
  const h2 = await EtcdEventLog.open(plane, local2, 0, () => {});
  try {
    local1.append(event("web", "before"));
    await until("host 2 sees the first", () => h2.log.lastSeq === 1);
    await etcd.server().pause();
    for (let i = 0; i < 5; i++) local1.append(event("web", `while away ${i}`));
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(h1.pending, 5, "kept on the host while etcd is away");
    assert.equal(h2.log.lastSeq, 1);
    await etcd.server().resume();
    await until("host 2 sees them", () => h2.log.lastSeq === 6, 40_000);
    assert.deepEqual(
      h2.log.since(1).map((e) => e.message),
      Array.from({ length: 5 }, (_, i) => `while away ${i}`),
    );
    assert.equal(h1.pending, 0);
  } finally {
    await h1.close();
    await h2.close();
  }
});
