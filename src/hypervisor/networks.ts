// Private networks: their records ($TSVM_HOME/networks/<name>/network.json), the members file each switch
// admits cards by (members.json beside it), the addresses cards get, and the spec a VMM connects a card to
// its network's switch with. Hypervisor delegates to it; the VMs' cards live in their records, so which
// cards a network has is always computed from those.

import { randomBytes } from "node:crypto";
import { mkdir, readdir, readFile, rename, rm } from "node:fs/promises";
import { join } from "node:path";
import {
  MEMBERS_FORMAT_VERSION,
  MEMBERS_MAGIC,
  NETWORK_FORMAT_VERSION,
  NETWORK_MAGIC,
  NETWORK_NAME_PATTERN,
  type NetworkMember,
  type NetworkMembersFile,
  NetworkRecord,
} from "../api/schemas/network-schemas.ts";
import { schemaCheck } from "../api/schemas/schema-check.ts";
import { NAT_NETWORK } from "../api/schemas/vm-schemas.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import {
  cardAddresses,
  formatIpv4,
  formatSubnet,
  type Ipv4Subnet,
  overlaps,
  parseIpv4,
  parseSubnet,
} from "./ipv4-subnet.ts";
import { syncDir, writeFileAtomic } from "./store.ts";

/** A card as a VM record holds it (VmRecord.networkInterfaces). */
export interface NetworkCard {
  readonly network: string;
  readonly mac: string;
  readonly ipv4?: string;
}

/** What the module needs of a VM: its identity and cards. */
export interface CardHolder {
  readonly id: string;
  readonly name: string;
  readonly networkInterfaces?: readonly NetworkCard[];
}

/** Where default subnets are taken from: the first free /24 of 10.77.0.0 to 10.99.255.0. */
const DEFAULT_SUBNETS_FIRST = 0x0a4d0000;
const DEFAULT_SUBNETS_END = 0x0a640000;
const NETWORK_FILE = "network.json";
const MEMBERS_FILE = "members.json";
export const SWITCH_SOCKET = "switch.sock";
const MAX_NETWORK_FILE_BYTES = 64 * 1024;

export class NetworkNotFoundError extends HypervisorError {
  constructor(name: string) {
    super(
      "not-found",
      `the network '${name.slice(0, 80)}' was not found; create it first (tsvm network create ${name.slice(0, 80)})`,
    );
  }
}

export class NetworkExistsError extends HypervisorError {
  constructor(name: string) {
    super("already-exists", `the network '${name}' already exists`);
  }
}

export class NetworkInUseError extends HypervisorError {
  constructor(name: string, vms: readonly string[]) {
    super(
      "network-in-use",
      `the network '${name}' has cards of ${vms.length === 1 ? "the VM" : "the VMs"} ${vms.map((v) => `'${v}'`).join(", ")}; delete those VMs first`,
    );
  }
}

export class SubnetOverlapError extends HypervisorError {
  constructor(subnet: string, other: string, otherSubnet: string) {
    super(
      "subnet-overlap",
      `the subnet ${subnet} overlaps the network '${other}' (${otherSubnet}); choose another with --subnet`,
    );
  }
}

export class NetworkFullError extends HypervisorError {
  constructor(name: string, subnet: string) {
    super("network-full", `the network '${name}' (${subnet}) has no free address left for another card`);
  }
}

/** Refuses a name that is not a valid network name, or is the NAT card's. */
export function checkNetworkName(name: string): void {
  if (!NETWORK_NAME_PATTERN.test(name))
    throw new HypervisorError(
      "invalid-name",
      `'${name.slice(0, 80)}' is not a valid network name: use 1 to 63 lowercase letters, digits and hyphens, ` +
        "starting with a letter and not ending with a hyphen",
    );
  if (name === NAT_NETWORK)
    throw new HypervisorError(
      "invalid-name",
      `'${NAT_NETWORK}' is reserved for the NAT card (tsvm create's default); choose another network name`,
    );
}

const checkRecord = schemaCheck(NetworkRecord);

/** Reads a network.json of any format this tsvm knows (there is one so far). */
export function parseNetworkRecord(text: string, path: string): NetworkRecord {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    throw new HypervisorError("corrupt-record", `${path} is not valid JSON (${(e as Error).message})`);
  }
  const checked = checkRecord(value);
  if (!checked.ok)
    throw new HypervisorError(
      "corrupt-record",
      `${path} is not a tsvm network record: ${checked.problem.field || "the file"} ${checked.problem.text}`,
    );
  parseSubnet(checked.value.subnet);
  return checked.value;
}

interface LoadedNetwork {
  readonly record: NetworkRecord;
  readonly subnet: Ipv4Subnet;
}

/** What the hypervisor's views of a network hold besides its record. */
export interface NetworkState {
  readonly record: NetworkRecord;
  readonly members: NetworkMember[];
}

export class Networks {
  private readonly networks = new Map<string, LoadedNetwork>();
  /** Names being created (their subnet counts as taken) or deleted. */
  private readonly pending = new Map<string, Ipv4Subnet | undefined>();
  /** The members file last written per network (not rewritten when unchanged). */
  private readonly written = new Map<string, string>();

  private constructor(readonly dir: string) {}

  /** Loads every network of `home`; an unreadable one is reported through `warn` and left alone. */
  static async open(home: string, warn: (line: string) => void = () => {}): Promise<Networks> {
    const n = new Networks(join(home, "networks"));
    await mkdir(n.dir, { recursive: true, mode: 0o700 });
    for (const entry of await readdir(n.dir)) {
      const path = join(n.dir, entry, NETWORK_FILE);
      if (entry.startsWith(".tmp-")) {
        await rm(join(n.dir, entry), { recursive: true, force: true });
        continue;
      }
      try {
        const text = await readFile(path, "utf8");
        if (text.length > MAX_NETWORK_FILE_BYTES) throw new Error(`${path} is too large`);
        const record = parseNetworkRecord(text, path);
        if (record.name !== entry) throw new Error(`${path} names the network '${record.name}'`);
        n.networks.set(entry, { record, subnet: parseSubnet(record.subnet) });
      } catch (e) {
        warn(`ignoring the network directory ${join(n.dir, entry)}: ${(e as Error).message}`);
      }
    }
    return n;
  }

  pathOf(name: string): string {
    return join(this.dir, name);
  }

  socketOf(name: string): string {
    return join(this.dir, name, SWITCH_SOCKET);
  }

  list(): NetworkRecord[] {
    return [...this.networks.values()].map((n) => n.record).sort((a, b) => a.name.localeCompare(b.name));
  }

  get(name: string): NetworkRecord {
    const n = this.networks.get(name);
    if (!n) throw new NetworkNotFoundError(name);
    return n.record;
  }

  has(name: string): boolean {
    return this.networks.has(name);
  }

  /**
   * Creates the network. Its name and subnet are checked (throwing at once) and taken before anything is
   * written; the promise settles once it is on disk.
   */
  create(name: string, subnetText: string | undefined, now: Date): Promise<NetworkRecord> {
    checkNetworkName(name);
    if (this.networks.has(name) || this.pending.has(name)) throw new NetworkExistsError(name);
    const subnet = subnetText === undefined ? this.freeDefaultSubnet() : parseSubnet(subnetText);
    this.checkNoOverlap(subnet);
    const record: NetworkRecord = {
      magic: NETWORK_MAGIC,
      formatVersion: NETWORK_FORMAT_VERSION,
      id: randomBytes(8).toString("hex"),
      name,
      subnet: formatSubnet(subnet),
      createdAt: now.toISOString(),
    };
    this.pending.set(name, subnet);
    return this.write(record, subnet);
  }

  private async write(record: NetworkRecord, subnet: Ipv4Subnet): Promise<NetworkRecord> {
    const { name } = record;
    try {
      // Assembled under a temp name, then renamed: a crash leaves no half-made network.
      const temp = join(this.dir, `.tmp-${randomBytes(6).toString("hex")}`);
      await mkdir(temp, { mode: 0o700 });
      try {
        await writeFileAtomic(join(temp, NETWORK_FILE), `${JSON.stringify(record, null, 2)}\n`, 0o600);
        await writeFileAtomic(join(temp, MEMBERS_FILE), membersText(record, []), 0o600);
        await rename(temp, this.pathOf(name));
      } catch (e) {
        await rm(temp, { recursive: true, force: true });
        throw e;
      }
      await syncDir(this.dir);
      this.networks.set(name, { record, subnet });
      this.written.set(name, membersText(record, []));
      return record;
    } finally {
      this.pending.delete(name);
    }
  }

  /**
   * Deletes the network, refused while any VM (in any status) has a card on it. `beforeRemove` runs once
   * the name is taken from the table (its switch is stopped there).
   */
  delete(name: string, vms: readonly CardHolder[], beforeRemove: () => Promise<void>): Promise<void> {
    checkNetworkName(name);
    const n = this.networks.get(name);
    if (!n) throw new NetworkNotFoundError(name);
    const users = vms
      .filter((vm) => vm.networkInterfaces?.some((c) => c.network === name))
      .map((vm) => vm.name);
    if (users.length > 0) throw new NetworkInUseError(name, users.sort());
    this.networks.delete(name);
    this.pending.set(name, undefined);
    return this.remove(n, beforeRemove);
  }

  private async remove(n: LoadedNetwork, beforeRemove: () => Promise<void>): Promise<void> {
    const { name } = n.record;
    try {
      await beforeRemove();
      const temp = join(this.dir, `.tmp-${randomBytes(6).toString("hex")}`);
      await rename(this.pathOf(name), temp);
      await syncDir(this.dir);
      this.written.delete(name);
      await rm(temp, { recursive: true, force: true });
    } catch (e) {
      this.networks.set(name, n);
      throw e;
    } finally {
      this.pending.delete(name);
    }
  }

  /**
   * The cards of a new VM (insert, clone, import) with their addresses: each private card's network must
   * exist, and keeps the address it has when that is one of the subnet's card addresses and free (an
   * imported VM's), else gets the lowest free address of its subnet from .2 up (free: no card of `others`
   * has it). Checked
   * and computed synchronously, so two inserts in flight cannot take the same address as long as the
   * caller adds the new record to `others` before its next await.
   */
  assignAddresses<C extends NetworkCard>(cards: readonly C[], others: readonly CardHolder[]): C[] {
    const taken = new Map<string, Set<number>>();
    const usedOn = (network: string): Set<number> => {
      let used = taken.get(network);
      if (!used) {
        used = new Set();
        for (const vm of others)
          for (const c of vm.networkInterfaces ?? []) {
            const ip = c.network === network && c.ipv4 !== undefined ? parseIpv4(c.ipv4) : undefined;
            if (ip !== undefined) used.add(ip);
          }
        taken.set(network, used);
      }
      return used;
    };
    return cards.map((card) => {
      if (card.network === NAT_NETWORK) {
        const { ipv4: _, ...rest } = card;
        return rest as C;
      }
      const n = this.networks.get(card.network);
      if (!n) throw new NetworkNotFoundError(card.network);
      const used = usedOn(card.network);
      const { first, last } = cardAddresses(n.subnet);
      const own = card.ipv4 === undefined ? undefined : parseIpv4(card.ipv4);
      if (own !== undefined && own >= first && own <= last && !used.has(own)) {
        used.add(own);
        return card;
      }
      for (let ip = first; ip <= last; ip++)
        if (!used.has(ip)) {
          used.add(ip);
          return { ...card, ipv4: formatIpv4(ip) };
        }
      throw new NetworkFullError(card.network, n.record.subnet);
    });
  }

  /** Every card on `name` among `vms`, sorted by VM name (what its members file lists). */
  membersOf(name: string, vms: readonly CardHolder[]): NetworkMember[] {
    const members: NetworkMember[] = [];
    for (const vm of vms)
      for (const c of vm.networkInterfaces ?? [])
        if (c.network === name && c.ipv4 !== undefined)
          members.push({ vmId: vm.id, vmName: vm.name, mac: c.mac, ipv4: c.ipv4 });
    return members.sort((a, b) => a.vmName.localeCompare(b.vmName) || a.mac.localeCompare(b.mac));
  }

  /**
   * Rewrites the members file of every network whose cards changed (atomically; its switch re-reads it
   * when a card it does not know says hello). Called whenever VM records are made or removed.
   */
  async syncMembers(vms: readonly CardHolder[]): Promise<void> {
    for (const [name, n] of this.networks) {
      const text = membersText(n.record, this.membersOf(name, vms));
      if (this.written.get(name) === text) continue;
      await writeFileAtomic(join(this.pathOf(name), MEMBERS_FILE), text, 0o600);
      this.written.set(name, text);
    }
  }

  /** The private networks a VM's cards are on (each once, in card order). */
  static networksOf(vm: CardHolder): string[] {
    const names = (vm.networkInterfaces ?? []).map((c) => c.network).filter((n) => n !== NAT_NETWORK);
    return [...new Set(names)];
  }

  private freeDefaultSubnet(): Ipv4Subnet {
    for (let base = DEFAULT_SUBNETS_FIRST; base < DEFAULT_SUBNETS_END; base += 256) {
      const candidate = { base, prefix: 24 };
      if (!this.takenSubnets().some((s) => overlaps(s.subnet, candidate))) return candidate;
    }
    throw new HypervisorError(
      "invalid-subnet",
      "no free /24 is left in 10.77.0.0-10.99.255.0 for a default subnet; give one with --subnet",
    );
  }

  private takenSubnets(): Array<{ name: string; subnet: Ipv4Subnet }> {
    const all = [...this.networks].map(([name, n]) => ({ name, subnet: n.subnet }));
    for (const [name, subnet] of this.pending) if (subnet) all.push({ name, subnet });
    return all;
  }

  private checkNoOverlap(subnet: Ipv4Subnet): void {
    for (const other of this.takenSubnets())
      if (overlaps(other.subnet, subnet))
        throw new SubnetOverlapError(formatSubnet(subnet), other.name, formatSubnet(other.subnet));
  }
}

function membersText(record: NetworkRecord, members: NetworkMember[]): string {
  const file: NetworkMembersFile = {
    magic: MEMBERS_MAGIC,
    formatVersion: MEMBERS_FORMAT_VERSION,
    subnet: record.subnet,
    members,
  };
  return `${JSON.stringify(file, null, 2)}\n`;
}
