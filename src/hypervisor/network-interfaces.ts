// A VM's network cards (docs/networking.md): the list an insert asks for checked and given MAC addresses,
// new MACs for a clone, the cards of records from before issue 10 (none), and what the VMM attaches each
// card to (VmmSpec.nics): passt for the NAT card, a private network's switch for the others.

import { randomBytes } from "node:crypto";
import { join } from "node:path";
import {
  MAC_PATTERN,
  MAX_NETWORK_INTERFACES,
  NAT_NETWORK,
  type NetworkInterface,
  type PortForward,
  VM_NAME_PATTERN,
} from "../api/schemas/vm-schemas.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import type { VmRecord } from "./vm-record.ts";

export type { NetworkInterface } from "../api/schemas/vm-schemas.ts";
export { NAT_NETWORK } from "../api/schemas/vm-schemas.ts";

/** What a VMM connects one card to (VmmSpec.nics). */
export type NicAttachment =
  | { readonly kind: "passt"; readonly forwards: readonly PortForward[] }
  | { readonly kind: "switch"; readonly socketPath: string; readonly hello: string };

export interface NicSpec {
  readonly mac: string;
  readonly attach: NicAttachment;
}

/**
 * A new MAC address: 02 as the first octet (IEEE 802: bit 1 set = locally administered, bit 0 clear =
 * unicast), so it never collides with a vendor's address, then 40 random bits; not one of `taken`.
 */
export function newMac(taken: ReadonlySet<string> = new Set()): string {
  for (;;) {
    const mac = ["02", ...[...randomBytes(5)].map((b) => b.toString(16).padStart(2, "0"))].join(":");
    if (!taken.has(mac)) return mac;
  }
}

/** The cards of `record`: those of a record from before network cards (no `networkInterfaces`) are none. */
export function interfacesOf(record: Pick<VmRecord, "networkInterfaces">): NetworkInterface[] {
  return record.networkInterfaces ?? [];
}

/** Whether `record` has a NAT card (which its forwards need). */
export function hasNatCard(record: Pick<VmRecord, "networkInterfaces">): boolean {
  return interfacesOf(record).some((nic) => nic.network === NAT_NETWORK);
}

/** Every MAC the VMs of `records` have, so a new one is unique on this host too. */
export function macsOf(records: Iterable<Pick<VmRecord, "networkInterfaces">>): Set<string> {
  const macs = new Set<string>();
  for (const r of records) for (const nic of interfacesOf(r)) macs.add(nic.mac);
  return macs;
}

/**
 * The cards of a new VM from the networks an insert names (default: one NAT card): at most
 * MAX_NETWORK_INTERFACES, "nat" at most once, a private network at most once, each name an RFC 1035
 * label checked by `checkNetwork` (the private networks module: it exists). Each card gets a new MAC.
 */
export function interfacesForInsert(
  requested: readonly { readonly network: string }[] | undefined,
  options: { readonly takenMacs: ReadonlySet<string>; readonly checkNetwork: (name: string) => void },
): NetworkInterface[] {
  const networks = (requested ?? [{ network: NAT_NETWORK }]).map((r) => r.network);
  if (networks.length > MAX_NETWORK_INTERFACES)
    throw new HypervisorError(
      "invalid-network",
      `a VM has at most ${MAX_NETWORK_INTERFACES} network cards (${networks.length} were asked for)`,
    );
  const seen = new Set<string>();
  for (const network of networks) {
    if (!VM_NAME_PATTERN.test(network))
      throw new HypervisorError(
        "invalid-network",
        `'${network.slice(0, 80)}' is not a network name ("nat" or a private network's name: a lowercase letter, then lowercase letters, digits or hyphens)`,
      );
    if (seen.has(network))
      throw new HypervisorError(
        "invalid-network",
        `the network '${network}' is named twice: a VM has at most one card on each network`,
      );
    seen.add(network);
    if (network !== NAT_NETWORK) options.checkNetwork(network);
  }
  const taken = new Set(options.takenMacs);
  return networks.map((network) => {
    const mac = newMac(taken);
    taken.add(mac);
    return { network, mac };
  });
}

/**
 * The cards of a copy of `source` (a clone, an import given a new id): the same networks in the same order,
 * each with a new MAC and without the source's private address (the networks module gives a new one).
 * Undefined stays undefined: a copy of a VM from before network cards has none either.
 */
export function interfacesForCopy(
  source: readonly NetworkInterface[] | undefined,
  takenMacs: ReadonlySet<string>,
): NetworkInterface[] | undefined {
  if (source === undefined) return undefined;
  const taken = new Set(takenMacs);
  return source.map(({ network }) => {
    const mac = newMac(taken);
    taken.add(mac);
    return { network, mac };
  });
}

/** Where the switch of private network `network` listens, for a VM whose directory is `vmDir` ($TSVM_HOME/vms/NAME). */
export function switchSocketPath(vmDir: string, network: string): string {
  return join(vmDir, "..", "..", "networks", network, "switch.sock");
}

/** The line a VMM sends a private network's switch first: who it is (the switch admits members only). */
export function switchHello(vmId: string, mac: string): string {
  return `tsvm-switch 1 ${vmId} ${mac}\n`;
}

/** What the VMM of `record` attaches each card to, in the cards' order (eth0 first). */
export function nicsSpecOf(record: VmRecord, vmDir: string): NicSpec[] {
  return interfacesOf(record).map((nic) => {
    if (!MAC_PATTERN.test(nic.mac)) throw new Error(`the MAC address '${nic.mac}' is malformed`);
    return {
      mac: nic.mac,
      attach:
        nic.network === NAT_NETWORK
          ? { kind: "passt", forwards: record.forwards ?? [] }
          : {
              kind: "switch",
              socketPath: switchSocketPath(vmDir, nic.network),
              hello: switchHello(record.id, nic.mac),
            },
    };
  });
}

/** A MAC address's six bytes (for the machine's card). */
export function macBytes(mac: string): Uint8Array {
  if (!MAC_PATTERN.test(mac)) throw new Error(`the MAC address '${mac}' is malformed`);
  return Uint8Array.from(mac.split(":").map((h) => Number.parseInt(h, 16)));
}
