// What Hypervisor delegates private networks to: the networks collection (create, list, get, delete), the
// switches (started before a VM with a card on the network starts, and when the daemon finds such VMs
// running), the members files the switches admit cards by, and the /etc/hosts block that lets VMs on one
// network reach each other by name, kept current through each running member's guest agent.

import type { Network } from "../api/schemas/network-schemas.ts";
import type { VmEvent } from "../api/schemas/event-schemas.ts";
import { NAT_NETWORK } from "../api/schemas/vm-schemas.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { formatIpv4, gatewayOf, parseSubnet } from "./ipv4-subnet.ts";
import { type CardHolder, type NetworkCard, Networks } from "./networks.ts";
import { askSwitchStats, type SwitchEntry, SwitchProcesses } from "./network-switch-process.ts";
import type { VmmExecOptions, VmmLauncher } from "./vmm.ts";

/** A VM as this module sees it: its cards and whether its guest runs. */
export interface NetworkedVm extends CardHolder {
  readonly status: string;
}

export interface PrivateNetworksConfig {
  readonly home: string;
  /** How to run the switch process; without it no switch is started (tests with stand-in VMMs). */
  readonly switchEntry?: SwitchEntry;
  /** Every VM's record as it is now. */
  readonly vms: () => readonly NetworkedVm[];
  /** Runs a command in a running VM's guest through its agent (Hypervisor.exec). */
  readonly exec: (name: string, command: string, options: VmmExecOptions) => Promise<{ exitCode: number }>;
  readonly log: (line: string) => void;
}

export const HOSTS_BEGIN = "# tsvm network begin";
export const HOSTS_END = "# tsvm network end";
/** How long a hosts update waits for the agent of a guest still booting, and for its command. */
const HOSTS_AGENT_WAIT_MS = 180_000;
const HOSTS_TIMEOUT_MS = 30_000;
/** Tries of a hosts update that found the agent running another client's command. */
const HOSTS_BUSY_RETRIES = 20;
/**
 * How often the switches of networks with running members are checked: one that died (killed, or idle
 * just as a member started) is started again, and its cards' VMMs reconnect to it by themselves.
 */
const SWITCH_CHECK_MS = 10_000;

/**
 * The shell command that replaces the tsvm block of the guest's /etc/hosts (between the marker lines) with
 * `lines`, keeping everything else. Names and addresses come from VM records (validated patterns), never
 * from a guest, so they need no quoting beyond the single quotes.
 */
export function hostsCommand(lines: readonly string[]): string {
  const block = [HOSTS_BEGIN, ...lines, HOSTS_END].map((l) => `'${l}'`).join(" ");
  return (
    "t=/etc/.tsvm-hosts.$$; " +
    `{ if [ -f /etc/hosts ]; then sed '/^${HOSTS_BEGIN}$/,/^${HOSTS_END}$/d' /etc/hosts; fi; printf '%s\\n' ${block}; } > $t ` +
    "&& cat $t > /etc/hosts; s=$?; rm -f $t; exit $s"
  );
}

/** The hosts lines for `vm`: every other VM on a network it is on, by name, at its first such address. */
export function hostsLinesFor(vm: CardHolder, vms: readonly CardHolder[]): string[] {
  const mine = new Set(Networks.networksOf(vm));
  const seen = new Map<string, string>();
  for (const other of vms) {
    if (other.id === vm.id) continue;
    for (const c of other.networkInterfaces ?? [])
      if (mine.has(c.network) && c.ipv4 !== undefined && !seen.has(other.name)) seen.set(other.name, c.ipv4);
  }
  return [...seen].sort((a, b) => a[0].localeCompare(b[0])).map(([name, ip]) => `${ip} ${name}`);
}

export class PrivateNetworks {
  private readonly switches: SwitchProcesses | undefined;
  /** The hosts lines last applied per VM id; a VM whose guest (re)started is applied again. */
  private readonly applied = new Map<string, string>();
  /** VMs with an update running, and those that need another once it ends. */
  private readonly updating = new Set<string>();
  private readonly dirty = new Set<string>();
  /** The networks each VM was last seen on (a deleted VM's record is gone when its event comes). */
  private readonly lastNetworks = new Map<string, string[]>();
  /**
   * Per VM, the agent command running now (a hosts update or a user's exec) and when it ends: the agent
   * runs one command at a time, so a user's exec waits for a hosts update instead of failing `agent-busy`,
   * and a hosts update waits for the user's commands.
   */
  private readonly agentTurns = new Map<string, Promise<void>>();
  private switchCheck: NodeJS.Timeout | undefined;
  /** Cards of imports still reading their file (not yet VMs): their addresses and networks are in use. */
  private readonly reserved = new Set<CardHolder>();

  private constructor(
    private readonly config: PrivateNetworksConfig,
    readonly networks: Networks,
  ) {
    this.switches = config.switchEntry ? new SwitchProcesses(config.switchEntry) : undefined;
  }

  /** Loads the networks; `loaded` is called once the VMs are (config.vms() answers before that with none). */
  static async open(config: PrivateNetworksConfig): Promise<PrivateNetworks> {
    return new PrivateNetworks(config, await Networks.open(config.home, config.log));
  }

  /** Once the VMs are loaded: the members files as their records say, what each VM is on. */
  async loaded(): Promise<void> {
    await this.networks.syncMembers(this.config.vms());
    for (const vm of this.config.vms()) this.lastNetworks.set(vm.name, Networks.networksOf(vm));
    if (this.switches)
      this.switchCheck = setInterval(() => void this.checkSwitches(), SWITCH_CHECK_MS).unref();
  }

  /** Stops the periodic switch check (the daemon is shutting down; switches run on). */
  close(): void {
    clearInterval(this.switchCheck);
  }

  private async checkSwitches(): Promise<void> {
    const names = new Set<string>();
    for (const vm of this.config.vms())
      if (vm.status === "RUNNING") for (const n of Networks.networksOf(vm)) names.add(n);
    for (const name of names)
      if (this.networks.has(name))
        await this.switches
          ?.ensure(this.networks.pathOf(name))
          .catch((e: Error) => this.config.log(`network '${name}': ${e.message}`));
  }

  /** Throws at once for a bad name or subnet, or an existing network; settles once it is written. */
  create(name: string, subnet: string | undefined, now: Date): Promise<void> {
    return this.networks.create(name, subnet, now).then(() => {});
  }

  /** Throws at once for an unknown network or one with cards (naming their VMs); its switch is stopped. */
  delete(name: string): Promise<void> {
    return this.networks.delete(name, this.cardHolders(), async () => {
      await this.switches?.stop(this.networks.pathOf(name));
    });
  }

  async get(name: string): Promise<Network> {
    const record = this.networks.get(name);
    const ports = await askSwitchStats(this.networks.socketOf(name));
    return {
      kind: "tsvm#network",
      id: record.id,
      name: record.name,
      subnet: record.subnet,
      gatewayAddress: formatIpv4(gatewayOf(parseSubnet(record.subnet))),
      creationTimestamp: record.createdAt,
      members: this.networks
        .membersOf(name, this.config.vms())
        .map((m) => ({ instance: m.vmName, mac: m.mac, ipv4: m.ipv4 })),
      switchRunning: ports !== undefined,
      ports: ports ?? [],
    };
  }

  async list(): Promise<Network[]> {
    return Promise.all(this.networks.list().map((r) => this.get(r.name)));
  }

  /** Refuses a card on a private network that does not exist (`invalid-network`, naming the command). */
  checkNetwork(name: string): void {
    if (!this.networks.has(name))
      throw new HypervisorError(
        "invalid-network",
        `the network '${name.slice(0, 80)}' was not found; create it first (tsvm network create ${name.slice(0, 80)})`,
      );
  }

  /** A new VM's cards with their addresses (see Networks.assignAddresses); throws for an unknown network. */
  assignAddresses<C extends NetworkCard>(cards: readonly C[]): C[] {
    return this.networks.assignAddresses(cards, this.cardHolders());
  }

  /** Every VM's cards, and those reserved for imports still being read. */
  private cardHolders(): CardHolder[] {
    return [...this.config.vms(), ...this.reserved];
  }

  /**
   * The cards an imported VM gets here, in the exported order: each private card needs its network on
   * this host, where it gets an address of that network's subnet (its exported one when that is inside
   * and free: the same VM moved between hosts with the same subnets keeps it). A card on a network this
   * host lacks is refused (`invalid-network`, naming every such network and both ways on), or with
   * `dropMissing` left out, which a VM with saved memory (suspended, or memory snapshots) cannot be: its
   * machine had the card. The addresses stay taken until `release`, called once the VM is in the records
   * or the import failed.
   */
  cardsForImport<C extends NetworkCard>(
    vm: { readonly id: string; readonly name: string; readonly cards: readonly C[] },
    options: { readonly dropMissing: boolean; readonly savedMemory: boolean },
  ): { readonly cards: C[]; readonly release: () => void } {
    const missing = [
      ...new Set(
        vm.cards
          .filter((c) => c.network !== NAT_NETWORK && !this.networks.has(c.network))
          .map((c) => c.network),
      ),
    ];
    if (missing.length > 0) {
      const names = missing.map((n) => `'${n}'`).join(", ");
      const which = missing.length === 1 ? `the network ${names}` : `the networks ${names}`;
      if (!options.dropMissing)
        throw new HypervisorError(
          "invalid-network",
          `the exported VM '${vm.name}' has a card on ${which}, which this host does not have: create ${missing.length === 1 ? "it" : "them"} first (tsvm network create ${missing[0]}), or import with --drop-missing-networks to leave such cards out; nothing was created`,
        );
      if (options.savedMemory)
        throw new HypervisorError(
          "invalid-network",
          `the exported VM '${vm.name}' has a card on ${which}, which this host does not have, and saved memory (suspended, or memory snapshots) of a machine with that card, so the card cannot be left out: create ${missing.length === 1 ? "the network" : "the networks"} first (tsvm network create ${missing[0]}); nothing was created`,
        );
    }
    const kept = vm.cards.filter((c) => !missing.includes(c.network));
    const cards = this.assignAddresses(kept);
    const holder: CardHolder = { id: vm.id, name: vm.name, networkInterfaces: cards };
    this.reserved.add(holder);
    return { cards, release: () => this.reserved.delete(holder) };
  }

  /** Rewrites the members files after VM records were made or removed. */
  async syncMembers(): Promise<void> {
    await this.networks.syncMembers(this.config.vms());
  }

  /** `inner`, with each VM's switches running and its network's members current before its VMM starts. */
  wrapLauncher(inner: VmmLauncher): VmmLauncher {
    return {
      engines: () => inner.engines(),
      launch: async (vm, paths, mode, options) => {
        await this.prepare(vm);
        return inner.launch(vm, paths, mode, options);
      },
      reattach: async (vm, paths) => {
        // A running VM found by a restarted daemon: its switch normally outlived the daemon too.
        await this.prepare(vm).catch((e: Error) => this.config.log(`${vm.name}: ${e.message}`));
        return inner.reattach(vm, paths);
      },
    };
  }

  private async prepare(vm: CardHolder): Promise<void> {
    const names = Networks.networksOf(vm);
    if (names.length === 0) return;
    await this.syncMembers();
    if (!this.switches) return;
    for (const name of names)
      if (this.networks.has(name)) await this.switches.ensure(this.networks.pathOf(name));
  }

  /**
   * Keeps the hosts blocks current: a VM that starts, stops, resets, is made or deleted changes the block
   * of every running VM sharing a network with it (and its own, when it starts).
   */
  onEvent(e: VmEvent): void {
    const relevant =
      e.type === "deleted" ||
      e.type === "reset" ||
      (e.type === "transition" && (e.to === "RUNNING" || e.from === "RUNNING"));
    if (!relevant) return;
    const vms = this.config.vms();
    const self = vms.find((v) => v.name === e.vmName);
    const networks = new Set([
      ...(this.lastNetworks.get(e.vmName) ?? []),
      ...(self ? Networks.networksOf(self) : []),
    ]);
    if (self) this.lastNetworks.set(e.vmName, Networks.networksOf(self));
    else this.lastNetworks.delete(e.vmName);
    if (networks.size === 0) return;
    if (e.type === "deleted") void this.syncMembers().catch((err: Error) => this.config.log(err.message));
    // Its guest booted or was reset: whatever its disk holds is applied again.
    if (self && (e.type === "reset" || e.to === "RUNNING")) this.applied.delete(self.id);
    for (const vm of vms)
      if (vm.status === "RUNNING" && Networks.networksOf(vm).some((n) => networks.has(n)))
        this.updateHosts(vm.name);
  }

  /**
   * The VM's guest agent said HELLO: its guest booted. After a reboot the guest did by itself (no status
   * changed) its block is written again, as after a start; at a first boot the start's update, waiting for
   * this agent, already writes it.
   */
  agentStarted(name: string): void {
    const vm = this.config.vms().find((v) => v.name === name);
    if (!vm || vm.status !== "RUNNING" || Networks.networksOf(vm).length === 0) return;
    this.applied.delete(vm.id);
    this.updateHosts(name);
  }

  /**
   * Runs `work` (a user's exec) once the hosts update running on the VM, if any, has ended; hosts updates
   * wait for it in turn. User execs do not wait for each other (a second one is refused as before).
   */
  async userExec<T>(name: string, work: () => Promise<T>): Promise<T> {
    const turn = this.agentTurns.get(name);
    if (turn) await turn;
    let done!: () => void;
    const mine = new Promise<void>((resolve) => {
      done = resolve;
    });
    const previous = this.agentTurns.get(name);
    const chained = previous ? Promise.all([previous, mine]).then(() => {}) : mine;
    this.agentTurns.set(name, chained);
    try {
      return await work();
    } finally {
      done();
      if (this.agentTurns.get(name) === chained) this.agentTurns.delete(name);
    }
  }

  /** Runs a hosts update's command in its turn, retrying while the agent is busy with another client. */
  private async hostsExec(name: string, command: string): Promise<number> {
    for (let attempt = 0; ; attempt++) {
      const turn = this.agentTurns.get(name);
      if (turn) {
        await turn;
        continue;
      }
      let done!: () => void;
      const mine = new Promise<void>((resolve) => {
        done = resolve;
      });
      this.agentTurns.set(name, mine);
      try {
        const { exitCode } = await this.config.exec(name, command, {
          onOutput: () => {},
          agentWaitMs: HOSTS_AGENT_WAIT_MS,
          timeoutMs: HOSTS_TIMEOUT_MS,
        });
        return exitCode;
      } catch (e) {
        if ((e as { code?: string }).code !== "agent-busy" || attempt >= HOSTS_BUSY_RETRIES) throw e;
      } finally {
        done();
        if (this.agentTurns.get(name) === mine) this.agentTurns.delete(name);
      }
      await new Promise((r) => setTimeout(r, 500 + Math.random() * 1500));
    }
  }

  private updateHosts(name: string): void {
    if (this.updating.has(name)) {
      this.dirty.add(name);
      return;
    }
    this.updating.add(name);
    void (async () => {
      try {
        do {
          this.dirty.delete(name);
          const vms = this.config.vms();
          const vm = vms.find((v) => v.name === name);
          if (!vm || vm.status !== "RUNNING") return;
          const lines = hostsLinesFor(vm, vms);
          const key = lines.join("\n");
          if (this.applied.get(vm.id) === key) continue;
          const exitCode = await this.hostsExec(name, hostsCommand(lines));
          if (exitCode === 0) this.applied.set(vm.id, key);
          else this.config.log(`${name}: updating /etc/hosts failed (status ${exitCode})`);
        } while (this.dirty.has(name));
      } catch (e) {
        this.config.log(`${name}: could not update /etc/hosts: ${(e as Error).message}`);
      } finally {
        this.updating.delete(name);
        // A change during a failed update (e.g. the guest rebooted under it: AGENT_RESTARTED) is applied now.
        if (this.dirty.has(name)) this.updateHosts(name);
      }
    })();
  }
}
