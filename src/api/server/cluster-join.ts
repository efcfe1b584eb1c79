// A daemon joining a cluster (`tsvm daemon --cluster URL --host NAME --listen ADDR:PORT --token-file FILE`,
// docs/cluster.md): the cluster's token, its etcd, this host's membership with a lease kept alive, and the
// store options that put the VM records and operations in etcd.

import { readFile } from "node:fs/promises";
import { ControlPlane } from "../../hypervisor/cluster/control-plane.ts";
import { EtcdOperationJournal } from "../../hypervisor/cluster/etcd-operation-journal.ts";
import { EtcdVmRecords } from "../../hypervisor/cluster/etcd-vm-records.ts";
import { type HostMembership, HostInventory } from "../../hypervisor/cluster/host-inventory.ts";
import { joinSharedStorage, type SharedStorage } from "../../hypervisor/cluster/shared-storage.ts";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";
import type { HostCapacity } from "../../hypervisor/resources.ts";
import type { VmStoreOptions } from "../../hypervisor/store.ts";
import { HOST_NAME_PATTERN } from "../schemas/host-schemas.ts";
import type { ClusterMember } from "./cluster-routing.ts";

export interface ClusterOptions {
  /** etcd's client URLs, comma-separated. */
  readonly url: string;
  readonly host: string;
  /** Where this host's API listens on TCP for clients and the other hosts: ADDRESS:PORT. */
  readonly listen: string;
  readonly tokenFile: string;
  /** The host's lease, in seconds (DEFAULT_LEASE_TTL_SECONDS unless given). */
  readonly leaseTtlSeconds?: number;
  /** `--shared-storage DIR`: the cluster's shared directory as this host sees it (shared-storage.ts). */
  readonly sharedStorage?: string;
}

export interface JoinedCluster {
  readonly member: ClusterMember;
  readonly storeOptions: VmStoreOptions;
  readonly listen: { readonly host: string; readonly port: number };
  readonly membership: HostMembership;
  /** The cluster's shared storage, when it has one. */
  readonly sharedStorage: SharedStorage | undefined;
  leave(): Promise<void>;
}

/** Shortest token accepted: a cluster's token guards every host's API and the forwarding between them. */
const MIN_TOKEN_CHARS = 16;

function configError(problem: string): HypervisorError {
  return new HypervisorError("invalid-config", `cannot join the cluster: ${problem}`);
}

/** ADDRESS:PORT (an IPv6 address in brackets) → its parts; invalid-config naming what is wrong. */
export function parseListen(listen: string): { host: string; port: number } {
  const m = /^(\[[0-9a-fA-F:.]+\]|[^:[\]]+):(\d{1,5})$/.exec(listen);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535)
    throw configError(`--listen '${listen.slice(0, 80)}' is not ADDRESS:PORT (e.g. 127.0.0.1:7101)`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port };
}

async function readToken(path: string): Promise<string> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    throw configError(`the token file ${path} cannot be read (${(e as Error).message})`);
  }
  const token = text.trim();
  if (token.length < MIN_TOKEN_CHARS || /\s/.test(token))
    throw configError(
      `the token file ${path} must hold one token of at least ${MIN_TOKEN_CHARS} characters without spaces`,
    );
  return token;
}

/** Joins: checks the options, reaches etcd and registers this host (HostNameTakenError while its name is live). */
export async function joinCluster(
  options: ClusterOptions,
  capacity: HostCapacity,
  log: (line: string) => void,
): Promise<JoinedCluster> {
  if (!HOST_NAME_PATTERN.test(options.host))
    throw configError(
      `'${options.host.slice(0, 80)}' is not a valid host name: use 1 to 63 lowercase letters, digits and hyphens, starting with a letter`,
    );
  for (const url of options.url.split(","))
    if (!/^https?:\/\/[^/\s]+\/?$/.test(url))
      throw configError(`--cluster '${url.slice(0, 80)}' is not an etcd URL (http://HOST:PORT)`);
  const listen = parseListen(options.listen);
  const token = await readToken(options.tokenFile);
  const plane = new ControlPlane(options.url);
  const inventory = new HostInventory(plane, options.leaseTtlSeconds);
  let membership: HostMembership;
  let sharedStorage: SharedStorage | undefined;
  try {
    // Before the host registers: a host that sees the shared storage otherwise than the cluster never joins.
    sharedStorage = await joinSharedStorage(plane, options.sharedStorage);
    membership = await inventory.join({
      name: options.host,
      address: `http://${listen.host.includes(":") ? `[${listen.host}]` : listen.host}:${listen.port}`,
      capacity: { vcpus: capacity.vcpus, memoryMiB: capacity.memoryMiB },
      sharedStorage: sharedStorage !== undefined,
    });
  } catch (e) {
    plane.close();
    throw e;
  }
  // Fencing (lease-fence.ts, started by the daemon) has stopped the VMMs well before etcd3 reports the loss.
  membership.onLost((reason) => log(`${reason}; this host shows DOWN until the daemon restarts`));
  const records = new EtcdVmRecords(plane, options.host);
  return {
    member: { host: options.host, token, plane, records, inventory },
    storeOptions: {
      records: () => records,
      operations: () => EtcdOperationJournal.open(plane, options.host),
      ...(sharedStorage ? { sharedDir: sharedStorage.dir } : {}),
    },
    sharedStorage,
    listen,
    membership,
    leave: async () => {
      await membership.leave();
      plane.close();
    },
  };
}
