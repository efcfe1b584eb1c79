// The target's checks when a VM on shared storage is handed to it: each offer that does not match the
// record as etcd has it is refused by name and nothing is adopted; a matching one is adopted with the
// history entry and the cards the host gives it.
import assert from "node:assert/strict";
import { test } from "node:test";
import { fixtureVmRecord } from "../fixtures/fixture-vm-record.ts";
import type { VmRecord } from "../vm-record.ts";
import { type SharedMoveInHost, takeInSharedVm } from "./shared-move-in.ts";

function hostWith(record: VmRecord, revision = 7, options: { shared?: boolean } = {}) {
  const adopted: Array<{ record: VmRecord; revision: number }> = [];
  let released = 0;
  const host: SharedMoveInHost = {
    hasSharedStorage: options.shared ?? true,
    read: async () => ({ record, revision }),
    checkNameFree: () => {},
    cardsFor: (r) => ({ cards: r.networkInterfaces, release: () => void released++ }),
    adopt: async (r, rev) => {
      if (rev !== revision) throw new Error("revision conflict");
      adopted.push({ record: r, revision: rev });
    },
  };
  return { host, adopted, released: () => released };
}

const offer = { name: "web", revision: 7, from: "h1", resume: true, shared: true };
const at = "2026-12-07T23:00:00.000Z";

test("a shared VM at rest on the offering host, at the offered revision, is adopted with its history", async () => {
  const record = fixtureVmRecord("web", { status: "SUSPENDED", sharedStorage: true, host: "h1" });
  const { host, adopted } = hostWith(record);
  await takeInSharedVm(host, offer, at);
  assert.equal(adopted.length, 1);
  const moved = adopted[0]!.record;
  assert.equal(moved.host, undefined, "the store writes this host's name");
  assert.equal(moved.status, "SUSPENDED");
  assert.deepEqual(moved.history.at(-1), {
    at,
    from: "SUSPENDED",
    to: "SUSPENDED",
    reason: "moved here from host 'h1'",
  });
});

test("an offer the record does not match is refused by name, and nothing is adopted", async () => {
  const cases: Array<[Partial<VmRecord>, number, boolean, RegExp]> = [
    [{ status: "SUSPENDED", host: "h1" }, 7, true, /its record says it is not on shared storage/],
    [{ status: "SUSPENDED", host: "h3", sharedStorage: true }, 7, true, /its record says it is on host 'h3'/],
    [
      { status: "SUSPENDED", host: "h1", sharedStorage: true },
      9,
      true,
      /changed since the move began \(revision 9, not 7\)/,
    ],
    [
      { status: "RUNNING", host: "h1", sharedStorage: true },
      7,
      true,
      /it is RUNNING; only a VM at rest is handed over/,
    ],
    [
      { status: "SUSPENDED", host: "h1", sharedStorage: true },
      7,
      false,
      /does not see the cluster's shared storage/,
    ],
  ];
  for (const [patch, revision, shared, why] of cases) {
    const { host, adopted } = hostWith(fixtureVmRecord("web", patch), revision, { shared });
    await assert.rejects(takeInSharedVm(host, offer, at), why);
    assert.equal(adopted.length, 0);
  }
});

test("a failed takeover gives back the cards' addresses", async () => {
  const record = fixtureVmRecord("web", { status: "TERMINATED", sharedStorage: true, host: "h1" });
  const { host, released } = hostWith(record);
  await assert.rejects(
    takeInSharedVm({ ...host, adopt: async () => Promise.reject(new Error("revision conflict")) }, offer, at),
    /revision conflict/,
  );
  assert.equal(released(), 1);
});
