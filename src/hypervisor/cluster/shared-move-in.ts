// The target's side of moving a VM on the cluster's shared storage (docs/cluster.md "Moving VMs"): its
// files are already where every host sees them, so nothing is copied. The source has stopped using them (a
// RUNNING VM was suspended first: its saved state is in its directory, its VMM gone and with it the disk's
// lock) and sent an empty body; this host reads the VM's record from etcd, checks it is the one offered,
// takes the record over at the source's revision (the same transaction as every move), and resumes the VM
// when it ran. Until that takeover succeeds nothing here has changed and the VM is still the source's.

import { type VmRecord, withHistory } from "../vm-record.ts";
import type { StoredVmRecord } from "../vm-record-store.ts";
import { HypervisorError } from "../hypervisor-error.ts";
import type { MoveOffer } from "./move-transport.ts";

/** What taking in a shared VM asks of the Hypervisor. */
export interface SharedMoveInHost {
  /** Whether this host sees the cluster's shared storage. */
  readonly hasSharedStorage: boolean;
  /** The VM's record as etcd has it now. */
  read(name: string): Promise<StoredVmRecord>;
  checkNameFree(name: string): void;
  /** Its cards on this host, private networks' addresses taken until `release` (as an import's). */
  cardsFor(record: VmRecord): { readonly cards: VmRecord["networkInterfaces"]; readonly release: () => void };
  /** Writes `record` as this host's at `revision` (RevisionConflictError when it changed), and makes it known. */
  adopt(record: VmRecord, revision: number, entry: VmRecord["history"][number]): Promise<void>;
}

/** Takes the shared VM `offer` names over; resolves once it is this host's (not yet resumed). */
export async function takeInSharedVm(host: SharedMoveInHost, offer: MoveOffer, at: string): Promise<void> {
  const refuse = (why: string) =>
    new HypervisorError(
      "move-failed",
      `this host cannot take VM '${offer.name}' from host '${offer.from}': ${why}`,
    );
  if (!host.hasSharedStorage)
    throw refuse(
      "this host does not see the cluster's shared storage (start its daemon with --shared-storage)",
    );
  host.checkNameFree(offer.name);
  const { record, revision } = await host.read(offer.name);
  if (!record.sharedStorage) throw refuse("its record says it is not on shared storage");
  if (record.host !== offer.from) throw refuse(`its record says it is on host '${record.host ?? "none"}'`);
  if (revision !== offer.revision)
    throw refuse(`its record changed since the move began (revision ${revision}, not ${offer.revision})`);
  if (record.status !== "TERMINATED" && record.status !== "SUSPENDED")
    throw refuse(`it is ${record.status}; only a VM at rest is handed over`);
  const entry = {
    at,
    from: record.status,
    to: record.status,
    reason: `moved here from host '${offer.from}'`,
  };
  const { cards, release } = host.cardsFor(record);
  const { host: _old, ...rest } = record;
  const moved: VmRecord = {
    ...rest,
    ...(cards === undefined ? {} : { networkInterfaces: cards }),
    history: withHistory(record, entry),
  };
  try {
    await host.adopt(moved, offer.revision, entry);
  } catch (e) {
    release();
    throw e;
  }
}
