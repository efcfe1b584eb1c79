// The hypervisor: every VM of one data directory, its lifecycle driven through the transition table, its
// VMM process, admission against host capacity, operations and events. One instance per data directory
// (the daemon); every request on one VM is queued behind the previous one, so none is lost or interleaved.

import { existsSync } from "node:fs";
import { readdir, rm, stat } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import type { Duplex } from "node:stream";
import type { InsertNetworkRequest, Network } from "../api/schemas/network-schemas.ts";
import type { Snapshot } from "../api/schemas/snapshot-schemas.ts";
import type { InsertInstanceRequest, Instance, UpdateInstanceRequest } from "../api/schemas/vm-schemas.ts";
import { Clones, type CloneVm, checkCloneRequest, cloneRecord } from "./clones.ts";
import { readConsoleLog } from "./console-log.ts";
import { type CrashOperation, crashPoint, statusWritePoint } from "./crash-point.ts";
import { DiskAdmission } from "./disk-admission.ts";
import {
  ACTIVE_DISK,
  activeDiskInfo,
  activeDiskOf,
  DiskStore,
  reclaimActiveDiskLeaks,
} from "./disk-store.ts";
import { EventLog } from "./event-log.ts";
import { identityOf } from "./guest-identity.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { RevisionConflictError } from "./vm-record-store.ts";
import { checkAction, transition, type VmAction, type VmStatus } from "./lifecycle.ts";
import { DEFAULT_MACHINE_TYPE, machineTypeFor, resolveMachineType } from "./machine-types.ts";
import {
  hasNatCard,
  interfacesForCopy,
  interfacesForInsert,
  interfacesOf,
  macsOf,
  NAT_NETWORK,
} from "./network-interfaces.ts";
import {
  type Operation,
  type OperationJournal,
  OperationRegistry,
  type OperationType,
  type OperationView,
} from "./operations.ts";
import {
  checkAdmission,
  type HostCapacity,
  type HostUsage,
  holdsCpuAndMemory,
  hostUsage,
  type VmAllocation,
} from "./resources.ts";
import type { SwitchEntry } from "./network-switch-process.ts";
import {
  checkForwardsUnshared,
  checkHostPortsFree,
  describeForward,
  forwardsForRequest,
} from "./port-forwards.ts";
import { PrivateNetworks } from "./private-networks.ts";
import { treeNodes } from "./snapshot-tree.ts";
import { Snapshots, type SnapshotVm } from "./snapshots.ts";
import {
  checkVmName,
  NEW_STATE_PREFIX,
  noSharedStorageError,
  RecordWriteError,
  VmExistsError,
  VmNotFoundError,
  type VmPaths,
  type VmStore,
} from "./store.ts";
import { type ImportHost, type ImportOptions, VmArchives } from "./vm-archive/vm-archives.ts";
import type {
  LiveMoveAnswer,
  LiveMoveOffer,
  MoveAnswer,
  MoveOffer,
  MoveTransport,
} from "./cluster/move-transport.ts";
import { takeInSharedVm } from "./cluster/shared-move-in.ts";
import { refuseOnSharedStorage } from "./cluster/shared-storage.ts";
import { type MovingVm, VmMoves } from "./cluster/vm-moves.ts";
import { acceptLiveMove, type LiveMoveInHost, type LiveMovingVm } from "./cluster/live-moves.ts";
import type { ExportOptions } from "./vm-archive/vm-export.ts";
import type { BootFiles } from "./vm-boot-files.ts";
import { TabMachines } from "./tab-machines.ts";
import { newRecordBasics, type VmRecord, withHistory } from "./vm-record.ts";
import type {
  VmmExecOptions,
  VmmExit,
  VmmHandle,
  VmmLauncher,
  VmmSession,
  VmmSessionOptions,
} from "./vmm.ts";
import type { SuspendFigures } from "./vmm-protocol.ts";
import { vmmRunningIn } from "./vmm-running-in.ts";

/** Where a VM's root disk comes from: the images layer (findImage) in the daemon, files in tests. */
export interface ImageCatalog {
  /** Throws HypervisorError `invalid-image` when there is no image of that name; checked before an insert. */
  check(image: string): void;
  /** The template disk of `image`, copied (or reflinked) for each new VM; HypervisorError when unknown. */
  diskTemplate(image: string): Promise<{ readonly path: string; readonly sizeMiB: number }>;
  /**
   * The firmware, kernel and initrd a VM of `image` boots from, when the image has them (an export carries
   * them, so that the VM boots and resumes on a host without its image); undefined otherwise.
   */
  bootFiles?(image: string): BootFiles | undefined;
}

/** An image catalog of named files. */
export class FileImageCatalog implements ImageCatalog {
  /** A Map, not an object: an image a user names `constructor` or `__proto__` must not find Object's. */
  private readonly files: ReadonlyMap<string, string>;

  constructor(files: Readonly<Record<string, string>>) {
    this.files = new Map(Object.entries(files));
  }

  check(image: string): void {
    if (!this.files.has(image))
      throw new HypervisorError(
        "invalid-image",
        `unknown image '${image.slice(0, 80)}'; available: ${[...this.files.keys()].join(", ") || "none"}`,
      );
  }

  async diskTemplate(image: string): Promise<{ path: string; sizeMiB: number }> {
    this.check(image);
    const path = this.files.get(image)!;
    const size = (await stat(path)).size;
    return { path, sizeMiB: Math.ceil(size / 1048576) };
  }
}

/** An insert's request (the schema InsertInstanceRequest; ranges are checked here). */
export type InsertRequest = InsertInstanceRequest;

/** A VM as the API shows it (the schema Instance): its record, plus what runs now. */
export type VmView = Instance;

export interface HypervisorConfig {
  readonly store: VmStore;
  readonly capacity: HostCapacity;
  readonly launcher: VmmLauncher;
  readonly images: ImageCatalog;
  readonly defaultEngine: string;
  readonly defaultImage: string;
  /** How long a stopping guest gets to power off before it is forced (Compute Engine: 90 s). */
  readonly stopTimeoutMs: number;
  /**
   * Measures, at each admission of a new disk, the bytes VMs may use on the data directory's filesystem
   * (free space minus the host reserve); without it `capacity.diskFreeMiB` is used as it is.
   */
  readonly measureDiskFreeBytes?: () => Promise<number>;
  readonly now?: () => Date;
  /** How to run private networks' switch processes (none are started without it). */
  readonly switchEntry?: SwitchEntry;
  /** How VMs move to the cluster's other hosts (cluster/move-transport.ts); none on a single host. */
  readonly moveTransport?: MoveTransport;
}

/**
 * The status an operation leaves its VM in when it succeeds (null: the VM is gone); the operations whose
 * effect cannot be seen in the status (reset, setMachineType) have none, so an interrupted one failed.
 */
const INTERRUPTED_OPERATION_GOALS: Partial<Record<OperationType, VmStatus | null>> = {
  insert: "RUNNING",
  start: "RUNNING",
  resume: "RUNNING",
  repair: "RUNNING",
  stop: "TERMINATED",
  suspend: "SUSPENDED",
  delete: null,
};

/** Refuses a CPU cap or weight outside its bounds (for `cpus` vCPUs), before anything is written. */
function checkScheduling(cpuCapPercent: number | null, cpuWeight: number, cpus: number): void {
  if (
    cpuCapPercent !== null &&
    (!Number.isInteger(cpuCapPercent) || cpuCapPercent < 1 || cpuCapPercent > 100 * cpus)
  )
    throw new HypervisorError(
      "invalid-argument",
      `invalid CPU cap ${cpuCapPercent}%: it is a whole percentage of one core, from 1 to ${100 * cpus} for ${cpus} vCPU(s)`,
    );
  if (!Number.isInteger(cpuWeight) || cpuWeight < 1 || cpuWeight > 10000)
    throw new HypervisorError(
      "invalid-argument",
      `invalid CPU weight ${cpuWeight}: use a whole number from 1 to 10000`,
    );
}

/** How long a restarted daemon waits for a VMM found writing a suspend's state, and for one not (yet) doing so. */
const SUSPEND_IN_FLIGHT_WAIT_MS = 60_000;
const SUSPEND_EXIT_WAIT_MS = 2_000;

/** Compute Engine gives up automatic restarts of a VM that keeps crashing; so do we. */
const CRASH_LOOP_WINDOW_MS = 10 * 60_000;
const CRASH_LOOP_MAX_RESTARTS = 5;

interface VmSlot {
  record: VmRecord;
  vmm: VmmHandle | undefined;
  /** Set while an operation expects the VMM to exit (stop, suspend, delete), so that the exit is not a crash. */
  expectingExit: boolean;
  /** Operations queued or running on this VM. */
  busy: number;
  queue: Promise<void>;
  restarts: number[];
  deleted: boolean;
  /** The type of the operation running on the VM now (names its crash points). */
  operation: OperationType | undefined;
  /**
   * Settles once a restarted daemon's recovery of the VM is done: until then a RUNNING VM has no handle
   * to its VMM yet, and exec, sessions, the console and stats wait rather than say `not-running`.
   */
  recovered: Promise<void>;
}

export class Hypervisor {
  readonly events = new EventLog();
  /** The last event replayed from the VMs' histories at open: events after it happened in this daemon's life. */
  replayedSeq = 0;
  private readonly operations: OperationRegistry;
  private readonly slots = new Map<string, VmSlot>();
  /** vCPUs and memory promised to requests between their admission and their PROVISIONING transition. */
  private readonly reservations = new Map<string, VmAllocation>();
  private readonly broken = new Map<string, HypervisorError>();
  private readonly disks: DiskAdmission;
  /** Set by open(): the data directory's disk nodes, and the snapshots built on them. */
  private nodes!: DiskStore;
  /** The disk nodes on the cluster's shared storage (base nodes of VMs there), when it has one. */
  private sharedNodes: DiskStore | undefined;
  private snapshots!: Snapshots;
  private clones!: Clones;
  private archives!: VmArchives;
  private readonly moves: VmMoves;
  /** Private networks, their switches and hosts blocks (private-networks.ts). */
  private lan!: PrivateNetworks;
  /** The machine in a browser tab: the image it boots, SUSPENDED VMs' states to and from it. */
  tab!: TabMachines;
  private readonly now: () => Date;
  private closed = false;

  private constructor(
    private readonly config: HypervisorConfig,
    journal: OperationJournal,
  ) {
    this.now = config.now ?? (() => new Date());
    this.disks = new DiskAdmission(config.capacity, config.measureDiskFreeBytes);
    this.operations = new OperationRegistry(this.now, { journal });
    this.moves = new VmMoves(config.moveTransport);
  }

  /**
   * Loads every VM of the store, replays their histories as events, re-attaches to the VMMs that still run
   * and settles VMs left in a transitional state by a daemon that died mid-operation.
   */
  static async open(config: HypervisorConfig): Promise<Hypervisor> {
    const saved = await config.store.openOperations();
    for (const problem of saved.unreadable)
      process.stderr.write(`ignoring an unreadable operation record: ${problem}\n`);
    let hv: Hypervisor | undefined;
    const lan = await PrivateNetworks.open({
      home: config.store.home,
      switchEntry: config.switchEntry,
      vms: () => (hv ? [...hv.slots.values()].map((s) => s.record) : []),
      exec: (name, command, options) => hv!.agentExec(name, command, options),
      log: (line) => process.stderr.write(`${line}\n`),
    });
    hv = new Hypervisor({ ...config, launcher: lan.wrapLauncher(config.launcher) }, saved.journal);
    hv.lan = lan;
    hv.nodes = await DiskStore.open(config.store.home, treeNodes);
    const shared = config.store.sharedVmsDir;
    if (shared !== undefined) hv.sharedNodes = await DiskStore.openShared(dirname(shared), treeNodes);
    hv.snapshots = new Snapshots((vm) => hv!.nodesOf(vm));
    hv.clones = new Clones((vm) => hv!.nodesOf(vm), hv.disks, hv.snapshots);
    hv.archives = new VmArchives(hv.nodes, config.store.home, config.images, hv.now);
    hv.tab = new TabMachines(config.images, config.defaultImage, (name, work) =>
      hv!.holdSuspended(name, work),
    );
    const { vms, broken } = await config.store.list();
    for (const b of broken) hv.broken.set(b.name, b.error);
    const mine = new Set([...vms, ...broken].map((v) => v.name));
    for (const name of await config.store.removeStrays(mine, (dir) => vmmRunningIn(dir) !== undefined))
      process.stderr.write(
        `removed vms/${name}: no VM of this host has that name (a crash mid-move left it)\n`,
      );
    const replay: Array<{ vm: VmRecord; h: VmRecord["history"][number] }> = [];
    for (const vm of vms) for (const h of vm.history) replay.push({ vm, h });
    replay.sort((a, b) => a.h.at.localeCompare(b.h.at));
    for (const { vm, h } of replay)
      hv.events.append({
        time: h.at,
        type: "transition",
        vmName: vm.name,
        vmId: vm.id,
        from: h.from,
        to: h.to,
        message: h.reason,
      });
    hv.replayedSeq = hv.events.lastSeq;
    for (const vm of vms) hv.slots.set(vm.name, hv.newSlot(vm));
    await lan.loaded();
    hv.events.subscribe((e) => lan.onEvent(e));
    for (const slot of hv.slots.values()) {
      const vm = slot.record;
      await hv.holdDisk(slot);
      if (vm.status !== "TERMINATED" && vm.status !== "SUSPENDED") {
        hv.enqueueSystem(slot, "repair", () => hv.recover(slot));
        slot.recovered = slot.queue.then(
          () => {},
          () => {},
        );
      }
      // No VMM may run for a stopped or suspended VM (an orphan is ended first), so what a crash left in its
      // directory is ours to settle.
      else {
        await hv.endOrphan(slot);
        await hv.recoverLeftovers(slot);
      }
    }
    // Disk nodes a crash left unreached (e.g. a VM removed before its nodes were collected) go now.
    await hv.collectDiskGarbage();
    // Operations the previous daemon left unfinished end once their VM's recovery has settled it, so that
    // their final record can say truthfully where the VM ended up.
    for (const op of hv.operations.load(saved.views)) {
      const slot = hv.slots.get(op.targetName);
      const wasRunning = op.status === "RUNNING";
      const settle = () => hv.settleInterrupted(op, wasRunning);
      if (slot) void slot.queue.then(settle);
      else void settle();
    }
    return hv;
  }

  private newSlot(record: VmRecord): VmSlot {
    this.config.store.locate(record);
    return {
      record,
      vmm: undefined,
      expectingExit: false,
      busy: 0,
      queue: Promise.resolve(),
      restarts: [],
      deleted: false,
      operation: undefined,
      recovered: Promise.resolve(),
    };
  }

  // ---- reading -------------------------------------------------------------------------------------

  get(name: string): VmView {
    return this.view(this.slot(name));
  }

  list(): { vms: VmView[]; broken: Array<{ name: string; code: string; message: string }> } {
    return {
      vms: [...this.slots.values()].map((s) => this.view(s)).sort((a, b) => a.name.localeCompare(b.name)),
      broken: [...this.broken].map(([name, e]) => ({ name, code: e.code, message: e.message })),
    };
  }

  capacity(): { capacity: HostCapacity; usage: HostUsage } {
    return {
      capacity: { ...this.config.capacity, diskFreeMiB: this.disks.freeMiB },
      usage: hostUsage(this.allocations()),
    };
  }

  getOperation(id: string): OperationView {
    return this.operations.get(id).view();
  }

  /** Waits until the operation is DONE or `timeoutMs` passed (Compute Engine waits at most 2 minutes). */
  async waitOperation(id: string, timeoutMs: number): Promise<OperationView> {
    const op = this.operations.get(id);
    await op.waitDone(timeoutMs);
    return op.view();
  }

  listOperations(limit?: number): OperationView[] {
    return this.operations.list(limit);
  }

  async stats(name: string): Promise<Record<string, number>> {
    const slot = this.slot(name);
    await slot.recovered;
    if (!slot.vmm) throw new HypervisorError("not-running", `the VM '${name}' has no running VMM`);
    return slot.vmm.stats();
  }

  /** A connection to the VM's serial console (see VmmHandle.attachConsole); the VM must be running. */
  async attachConsole(name: string): Promise<Duplex> {
    const slot = this.slot(name);
    await slot.recovered;
    if (!slot.vmm)
      throw new HypervisorError(
        "not-running",
        `the VM '${name}' is ${slot.record.status}; its console is not running`,
      );
    return slot.vmm.attachConsole();
  }

  /**
   * Runs `sh -c command` in the VM's guest through its agent, streaming the output to `onOutput`, and
   * resolves with the command's exit status. Legal only while RUNNING (IllegalActionError otherwise). Not
   * an operation: it runs beside the VM's queue, and a stop or suspend meanwhile ends it (`not-running`).
   */
  async exec(name: string, command: string, options: VmmExecOptions): Promise<{ exitCode: number }> {
    checkAction("exec", this.slot(name).record.status, name);
    await this.slot(name).recovered;
    // After the hosts update of a private network that may be running on the agent (private-networks.ts).
    return this.lan.userExec(name, () => this.agentExec(name, command, options));
  }

  private async agentExec(
    name: string,
    command: string,
    options: VmmExecOptions,
  ): Promise<{ exitCode: number }> {
    const slot = this.slot(name);
    checkAction("exec", slot.record.status, slot.record.name);
    if (!slot.vmm) throw new HypervisorError("not-running", `the VM '${name}' has no running VMM`);
    return slot.vmm.exec(command, options);
  }

  /**
   * Opens an interactive session (a shell, a command with stdin) in the VM's guest through its agent; the
   * same rules as exec: legal only while RUNNING, ended by a stop or suspend (`not-running`).
   */
  async openSession(name: string, options: VmmSessionOptions): Promise<VmmSession> {
    const slot = this.slot(name);
    await slot.recovered;
    checkAction("exec", slot.record.status, slot.record.name);
    if (!slot.vmm) throw new HypervisorError("not-running", `the VM '${name}' has no running VMM`);
    return slot.vmm.openSession(options);
  }

  /**
   * The serial console's output from byte `start` on (at most `maxBytes`), as Compute Engine's
   * getSerialPortOutput: positions count every byte the VM ever printed; only the last 4-8 MiB are kept
   * (console-log.ts), and a `start` before them answers from the first byte kept, which the answer's
   * `start` says. `next` is where the following call starts.
   */
  async serialPortOutput(
    name: string,
    start: number,
    maxBytes = 1 << 20,
  ): Promise<{ contents: string; start: number; next: number }> {
    const slot = this.slot(name);
    return readConsoleLog(this.config.store.paths(slot.record.name).consoleLog, start, maxBytes);
  }

  // ---- private networks (private-networks.ts) ---------------------------------------------------------

  /** Creates a network (bad names and subnets, and existing networks, are refused at once). */
  insertNetwork(req: InsertNetworkRequest): Promise<OperationView> {
    return this.networkOperation(
      "insertNetwork",
      req.name,
      this.lan.create(req.name, req.subnet, this.now()),
    );
  }

  /** Deletes a network, refused at once while any VM has a card on it. */
  deleteNetwork(name: string): Promise<OperationView> {
    return this.networkOperation("deleteNetwork", name, this.lan.delete(name));
  }

  getNetwork(name: string): Promise<Network> {
    return this.lan.get(name);
  }

  listNetworks(): Promise<Network[]> {
    return this.lan.list();
  }

  private async networkOperation(
    type: OperationType,
    name: string,
    work: Promise<void>,
  ): Promise<OperationView> {
    const op = this.operations.create(type, name);
    await this.operations.run(op, () => work);
    return op.view();
  }

  // ---- actions -------------------------------------------------------------------------------------

  insert(req: InsertRequest): OperationView {
    this.checkNameFree(req.name);
    checkCloneRequest(req);
    if (req.sourceInstance !== undefined) {
      const source = this.slot(req.sourceInstance).record;
      // Its disk is an overlay on its source's nodes, so it goes where they are.
      if (req.sharedStorage !== undefined && req.sharedStorage !== (source.sharedStorage === true))
        throw new HypervisorError(
          "invalid-argument",
          source.sharedStorage
            ? `a clone of '${source.name}' is on the cluster's shared storage, as its source is (its disk shares the source's nodes)`
            : `a clone of '${source.name}' cannot go on shared storage: its disk shares its source's nodes, which are on this host's own storage`,
        );
      return this.insertClone(req, req.sourceInstance);
    }
    if (req.sharedStorage && !this.sharedNodes)
      throw new HypervisorError(
        "invalid-argument",
        "this host has no shared storage: start the cluster's daemons with --shared-storage DIR",
      );
    const type = this.sizeOf(req);
    const cpuCapPercent = req.cpuCapPercent ?? null;
    const cpuWeight = req.cpuWeight ?? 100;
    checkScheduling(cpuCapPercent, cpuWeight, type.cpus);
    const image = req.image ?? this.config.defaultImage;
    const engine = req.engine ?? this.config.defaultEngine;
    // Both are refused here, before anything is written, rather than as a failed operation later.
    const engines = this.config.launcher.engines();
    if (!engines.includes(engine))
      throw new HypervisorError(
        "invalid-engine",
        `unknown engine '${engine.slice(0, 80)}'; available: ${engines.join(", ") || "none"}`,
      );
    this.config.images.check(image);
    // Private cards get their addresses now, before the first await, so that no other insert takes them.
    const networkInterfaces = this.lan.assignAddresses(
      interfacesForInsert(req.networkInterfaces, {
        takenMacs: macsOf(this.records()),
        checkNetwork: (network) => this.lan.checkNetwork(network),
      }),
    );
    const forwards = forwardsForRequest(
      req.forwards,
      networkInterfaces.some((nic) => nic.network === NAT_NETWORK),
    );
    checkForwardsUnshared(req.name, forwards, this.records());
    // Only a rough disk figure is known before the image is looked up; the copy is checked again below.
    checkAdmission(this.config.capacity, this.allocations(), {
      name: req.name,
      cpus: type.cpus,
      memoryMiB: type.memoryMiB,
      diskMiB: 0,
    });
    const at = this.now().toISOString();
    const record: VmRecord = {
      ...newRecordBasics(req.name, at, "insert: resources reserved"),
      machineType: type.name,
      cpus: type.cpus,
      memoryMiB: type.memoryMiB,
      diskMiB: 0,
      image,
      engine,
      automaticRestart: req.automaticRestart ?? true,
      ...(req.onHostMaintenance === undefined ? {} : { onHostMaintenance: req.onHostMaintenance }),
      ...(req.sharedStorage ? { sharedStorage: true } : {}),
      cpuCapPercent,
      cpuWeight,
      networkInterfaces,
      forwards,
    };
    // The slot exists from now on: the name and the resources are taken before the first await.
    const slot = this.newSlot(record);
    this.slots.set(req.name, slot);
    return this.submit(
      slot,
      "insert",
      null,
      () => {},
      async (op) => {
        const { store } = this.config;
        const paths = store.paths(req.name);
        try {
          // Before anything is written: a port some process holds would fail the VM's first start.
          await checkHostPortsFree(req.name, forwards);
          const template = await this.config.images.diskTemplate(image);
          // The image's base node when it is not converted yet (once, however many inserts wait for it),
          // and what the new disk may grow to (its image's size), which stays reserved for the VM.
          // A VM on shared storage has its base node there too: every host reaches its whole chain.
          const nodes = this.nodesOf(slot.record);
          const base = await nodes.baseNodePath(template.path);
          const releaseBase = existsSync(base)
            ? () => {}
            : await this.disks.admit(`${image} (image base)`, template.sizeMiB, base, { shared: true });
          let release: () => void;
          try {
            release = await this.disks.admit(req.name, template.sizeMiB, paths.disk);
          } catch (e) {
            releaseBase();
            throw e;
          }
          try {
            slot.record = { ...slot.record, diskMiB: template.sizeMiB };
            await this.createVmDirectory(slot.record);
            crashPoint("insert:after-record");
            try {
              op.statusMessage = "creating the root disk";
              await nodes.exclusive(async () =>
                nodes.createOverlay(paths.disk, await nodes.baseNode(template.path)),
              );
            } catch (e) {
              await store.remove(req.name);
              await this.collectDiskGarbage();
              throw new HypervisorError(
                "disk-copy-failed",
                `could not create the root disk of VM '${req.name}' at ${paths.disk} (${(e as Error).message}); nothing was created`,
              );
            }
          } catch (e) {
            release();
            throw e;
          } finally {
            releaseBase();
          }
          await this.holdDisk(slot);
          crashPoint("insert:after-disk-copy");
        } catch (e) {
          // Nothing is left half-created: no directory, no slot, no reservation.
          this.slots.delete(req.name);
          throw e;
        }
        this.events.append({
          time: at,
          type: "transition",
          vmName: req.name,
          vmId: record.id,
          from: null,
          to: "PROVISIONING",
          message: "insert: resources reserved",
        });
        op.progress = 30;
        await this.bootFromProvisioning(slot, op, "insert");
      },
    );
  }

  start(name: string): OperationView {
    const slot = this.slot(name);
    return this.submit(
      slot,
      "start",
      "start",
      () => this.admit(slot),
      async (op) => {
        try {
          // passt could not listen on a port another process took while the VM was stopped: said here, clearly.
          await checkHostPortsFree(name, slot.record.forwards ?? []);
          await this.setStatus(slot, "PROVISIONING", "start: resources reserved", { statusMessage: "" });
        } finally {
          this.reservations.delete(name);
        }
        await this.bootFromProvisioning(slot, op, "start");
      },
    );
  }

  stop(name: string): OperationView {
    const slot = this.slot(name);
    return this.submit(
      slot,
      "stop",
      "stop",
      () => {},
      async () => {
        await this.stopSlot(slot, "stop requested");
      },
    );
  }

  reset(name: string): OperationView {
    const slot = this.slot(name);
    return this.submit(
      slot,
      "reset",
      "reset",
      () => {},
      async () => {
        if (!slot.vmm) throw new HypervisorError("not-running", `the VM '${name}' has no running VMM`);
        crashPoint("reset:before-vmm-reset");
        await slot.vmm.reset();
        crashPoint("reset:after-vmm-reset");
        this.events.append({
          time: this.now().toISOString(),
          type: "reset",
          vmName: name,
          vmId: slot.record.id,
          from: "RUNNING",
          to: "RUNNING",
          message: "reset requested: the machine was reset",
        });
      },
    );
  }

  suspend(name: string): OperationView {
    const slot = this.slot(name);
    return this.submit(
      slot,
      "suspend",
      "suspend",
      () => {},
      async () => {
        await this.suspendSlot(slot);
      },
    );
  }

  /**
   * RUNNING → SUSPENDING → SUSPENDED: the VMM writes the state and exits (on the VM's queue). Resolves with
   * the VMM's figures (vmm.ts).
   */
  private async suspendSlot(slot: VmSlot): Promise<SuspendFigures | undefined> {
    const name = slot.record.name;
    const vmm = slot.vmm;
    // RUNNING without a VMM: it exited just before, and the operation that handles its exit (repair,
    // or STOPPING for a guest power-off) is queued behind this one. Nothing is suspended; changing
    // nothing leaves that operation to settle the VM (repairing here reported a suspend that never
    // happened as done).
    if (!vmm)
      throw new HypervisorError(
        "not-running",
        `the VMM of '${name}' has exited, so nothing was suspended; its exit is being handled`,
      );
    await this.setStatus(slot, "SUSPENDING", "suspend requested");
    slot.expectingExit = true;
    let figures: SuspendFigures | undefined;
    try {
      figures = await vmm.suspend();
    } catch (e) {
      const message = `suspend failed: ${(e as Error).message}`;
      // A VMM that still answers kept its guest running; one that does not is gone or going.
      const alive = await vmm.stats().then(
        () => true,
        () => false,
      );
      if (alive) {
        slot.expectingExit = false;
        await this.setStatus(slot, "RUNNING", message, { statusMessage: message });
        throw new HypervisorError("suspend-failed", message);
      }
      // This operation repairs the VM, so its VMM's exit must not also be taken as a crash (that queued
      // a second repair, which booted another VMM over this one's and leaked it): expect the exit until
      // it has come.
      const exit = await vmm.exited;
      slot.vmm = undefined;
      slot.expectingExit = false;
      await this.setStatus(slot, "REPAIRING", exit.detail, { statusMessage: message });
      await this.repair(slot, exit);
      throw new HypervisorError("suspend-failed", message);
    }
    crashPoint("suspend:after-vmm-exit");
    slot.vmm = undefined;
    slot.expectingExit = false;
    const at = this.now().toISOString();
    await this.setStatus(slot, "SUSPENDED", "suspended: CPU and memory released, state written", {
      lastSuspendedTimestamp: at,
      statusMessage: "",
    });
    return figures;
  }

  resume(name: string): OperationView {
    const slot = this.slot(name);
    return this.submit(
      slot,
      "resume",
      "resume",
      () => this.admit(slot),
      () => this.resumeSlot(slot, "resume"),
    );
  }

  /** SUSPENDED → PROVISIONING → STAGING → RUNNING from the saved state; admit(slot) first. */
  private async resumeSlot(slot: VmSlot, why: string): Promise<void> {
    try {
      await this.setStatus(slot, "PROVISIONING", `${why}: resources reserved`, { statusMessage: "" });
    } finally {
      this.reservations.delete(slot.record.name);
    }
    await this.stageFromSaved(slot, why);
  }

  /** PROVISIONING → STAGING → RUNNING restoring the saved state, which is consumed; SUSPENDED on failure. */
  private async stageFromSaved(slot: VmSlot, why: string): Promise<void> {
    await this.setStatus(slot, "STAGING", `${why}: restoring the saved state`);
    const paths = this.config.store.paths(slot.record.name);
    let vmm: VmmHandle;
    try {
      vmm = await this.config.launcher.launch(slot.record, paths, "restore");
    } catch (e) {
      // The saved state stays as it was, and so does the VM: still SUSPENDED, with the reason.
      const message = `${why} failed: ${(e as Error).message}`;
      await this.setStatus(slot, "SUSPENDED", message, { statusMessage: message });
      throw e;
    }
    crashPoint("resume:after-vmm-spawn");
    this.attach(slot, vmm);
    try {
      await this.commitRunning(slot, vmm, why === "resume" ? "resumed" : `${why}: resumed`);
    } finally {
      // The state was consumed: the guest ran from it and may have written its disk, so restoring it
      // again later (also after a RUNNING that could not be recorded) would roll it back behind its disk.
      // The new VMM runs on a mapping of state/'s RAM file (snapshot-file.ts): removing it only unlinks
      // it, and the mapping keeps its pages. Nothing ever writes into a state file after it is complete.
      await rm(paths.stateDir, { recursive: true, force: true });
    }
    crashPoint("resume:after-state-removed");
  }

  delete(name: string): OperationView {
    checkVmName(name);
    if (!this.slots.has(name) && this.broken.has(name)) return this.deleteBroken(name);
    const slot = this.slot(name);
    return this.submit(
      slot,
      "delete",
      "delete",
      () => {},
      async () => {
        if (slot.record.status === "RUNNING" || slot.vmm) {
          try {
            await this.stopSlot(slot, "delete requested");
          } catch (e) {
            // On a full disk the stop cannot be recorded, but the record is about to go anyway (and
            // deleting is how space is freed): the VMM is ended all the same.
            if (!(e instanceof RecordWriteError)) throw e;
            await this.endVmm(slot);
          }
        }
        crashPoint("delete:before-remove");
        await this.config.store.remove(name);
        crashPoint("delete:after-remove");
        slot.deleted = true;
        this.slots.delete(name);
        this.disks.release(name);
        await this.collectDiskGarbage();
        this.events.append({
          time: this.now().toISOString(),
          type: "deleted",
          vmName: name,
          vmId: slot.record.id,
          from: slot.record.status,
          to: null,
          message: "deleted: the VM's directory, disk and state were removed",
        });
      },
    );
  }

  /**
   * Deletes a VM whose definition is unusable (listed as unreachable): its directory goes, unless a VMM
   * still runs from it (`vmm-running`, checked now so the answer says so at once). Its id is unknown, so
   * the "deleted" event has an empty vmId.
   */
  private deleteBroken(name: string): OperationView {
    const { dir } = this.config.store.paths(name);
    const pid = vmmRunningIn(dir);
    if (pid !== undefined)
      throw new HypervisorError(
        "vmm-running",
        `the VM '${name}' has an unusable definition but its VMM (pid ${pid}) still runs from ${dir}; ` +
          `end that process first (kill ${pid}), then delete the VM`,
      );
    const error = this.broken.get(name)!;
    // From now on the name is this operation's: a second delete finds nothing.
    this.broken.delete(name);
    const op = this.operations.create("delete", name);
    void this.operations.run(op, async () => {
      try {
        await this.config.store.remove(name);
      } catch (e) {
        if (e instanceof VmNotFoundError) return;
        this.broken.set(name, error);
        throw e;
      }
      this.events.append({
        time: this.now().toISOString(),
        type: "deleted",
        vmName: name,
        vmId: "",
        from: null,
        to: null,
        message: "deleted: the VM's definition was unusable; its directory was removed",
      });
    });
    return op.view();
  }

  /**
   * Exports the VM (TERMINATED or SUSPENDED) as one file (docs/export-format.md): `consume` gets the
   * archive's exact size and its bytes as a stream, read as fast as it takes them. The VM is held meanwhile
   * (its operations wait behind the export) and nothing of it is changed. Not an operation: a download.
   */
  async exportVm<T>(
    name: string,
    options: ExportOptions,
    consume: (archive: { readonly bytes: number; readonly stream: AsyncIterable<Buffer> }) => Promise<T>,
  ): Promise<T> {
    const slot = this.slot(name);
    // A running guest writes its disk and memory as they would be read: the user pauses it, knowingly.
    if (slot.busy === 0 && slot.record.status === "RUNNING")
      throw new HypervisorError(
        "illegal-action",
        `cannot export VM '${name}' while it is RUNNING: suspend it (its memory goes along) or stop it first`,
      );
    return this.hold(slot, "export", async () =>
      consume(
        await this.archives.export(
          slot.record,
          this.config.store.paths(name),
          options,
          this.nodesOf(slot.record).dir,
        ),
      ),
    );
  }

  /**
   * Recreates a VM from an export file read from `input` (Compute Engine's insert with a source): as the
   * same VM (id, definition, disk, saved state, snapshots) under its name or `options.name`. Resolves, once
   * the whole file is verified and the VM is in place, with the insert operation, DONE. Bad input rejects
   * (`bad-archive`) and a failed write (`import-failed`) too, having created nothing; so does a name taken,
   * and a card on a private network this host does not have (`invalid-network`; unless
   * `dropMissingNetworks` leaves such cards out). The same VM moved (it keeps its id) keeps its MACs; a
   * second copy gets new ones; private cards get addresses of this host's networks.
   */
  importVm(input: AsyncIterable<Uint8Array>, options: ImportOptions = {}): Promise<OperationView> {
    return this.archives.import(input, options, {
      ...this.importSteps(),
      idTaken: (id) => [...this.slots.values()].some((s) => s.record.id === id),
      insert: async (record, commit) => {
        // An export file never says so (export leaves the flag out); one that does was made by hand.
        refuseOnSharedStorage(record, "import");
        const op = this.operations.create("insert", record.name);
        await this.operations.run(op, async () => {
          const giveBack = await this.config.store.claim(record);
          try {
            await commit();
          } catch (e) {
            await giveBack().catch(() => {});
            throw e;
          }
          await this.welcome(record, record.history[record.history.length - 1]!);
        });
        return op.view();
      },
    });
  }

  /**
   * Moves the VM to another host of the cluster (cluster/vm-moves.ts; docs/cluster.md "Moving VMs"):
   * checked at once (a cluster, another host that is UP with room, a VM RUNNING, TERMINATED or SUSPENDED
   * with no other move in flight), then queued as the operation `move`. Without `host` the scheduler picks
   * one among the other hosts. The `failover` drain calls it too.
   */
  async move(name: string, host?: string): Promise<OperationView> {
    const slot = this.slot(name);
    if (slot.busy === 0) checkAction("move", slot.record.status, name);
    const target = await this.moves.begin(name, host, {
      cpus: slot.record.cpus,
      memoryMiB: slot.record.memoryMiB,
    });
    let view: OperationView;
    try {
      view = this.submit(
        slot,
        "move",
        "move",
        () => {},
        (op) => this.moves.run(op, this.movingVm(slot), target),
      );
    } catch (e) {
      this.moves.end(name);
      throw e;
    }
    // The VM's queue settles once this operation has, however it ended (also when its check failed).
    const end = () => this.moves.end(name);
    void slot.queue.then(end, end);
    return view;
  }

  /** The steps of a move, on this host's side, lent to VmMoves.run. */
  private movingVm(slot: VmSlot): MovingVm {
    const name = slot.record.name;
    const shared = slot.record.sharedStorage === true;
    return {
      name,
      shared,
      status: () => slot.record.status,
      revision: async () =>
        this.config.store.revisionOf(name) ?? (await this.config.store.records.read(name)).revision,
      suspend: () => this.suspendSlot(slot),
      resumeHere: async (why) => {
        this.admit(slot);
        await this.resumeSlot(slot, why);
      },
      archive: async () =>
        shared
          ? { bytes: 0, stream: (async function* () {})() }
          : this.archives.export(slot.record, this.config.store.paths(name), {}),
      // On shared storage its disk need not move: handed over suspended (shared-move-in.ts), not live.
      ...(shared ? {} : { live: this.liveMovingVm(slot) }),
      forget: async (to) => {
        slot.deleted = true;
        this.slots.delete(name);
        this.disks.release(name);
        if (shared) this.config.store.letGo(name);
        else {
          await this.config.store.release(name);
          await this.collectDiskGarbage();
        }
        this.events.append({
          time: this.now().toISOString(),
          type: "notice",
          vmName: name,
          vmId: slot.record.id,
          from: slot.record.status,
          to: slot.record.status,
          message: shared
            ? `moved to host '${to}': its files stay on the shared storage, where that host runs it`
            : `moved to host '${to}': its files were removed here`,
        });
      },
    };
  }

  /** A RUNNING VM's steps of a live move, on this host's side (cluster/live-moves.ts). */
  private liveMovingVm(slot: VmSlot): LiveMovingVm {
    const paths = this.config.store.paths(slot.record.name);
    return {
      canMigrateLive: async () => (await slot.vmm?.canMigrateLive?.()) ?? false,
      diskBytes: async () => {
        const info = await activeDiskInfo(paths.dir);
        return info.format === "qcow2" && basename(info.path) === ACTIVE_DISK ? info.virtualSize : undefined;
      },
      archive: () => this.archives.export(slot.record, paths, { activeDisk: false }),
      migrateOut: async (target) => {
        const vmm = slot.vmm;
        if (!vmm?.migrateOut)
          throw new HypervisorError("not-running", `the VMM of '${slot.record.name}' has exited`);
        // Its exit ("migrated") is this move's, not one to repair.
        slot.expectingExit = true;
        try {
          const figures = await vmm.migrateOut(target);
          slot.vmm = undefined;
          return figures;
        } catch (e) {
          if ((e as HypervisorError).code !== "migration-unconfirmed") slot.expectingExit = false;
          throw e;
        }
      },
      settle: async (resume) => {
        await slot.vmm!.migrateSettle!(resume);
        if (resume) slot.expectingExit = false;
        else slot.vmm = undefined;
      },
      fence: async () => {
        try {
          await this.config.store.write(slot.record);
          return true;
        } catch (e) {
          if (e instanceof RevisionConflictError) return false;
          throw e;
        }
      },
    };
  }

  /**
   * Takes in a VM another host of the cluster moves here (its export file from `input`, verified whole):
   * its files go into place, then its record is taken over at the revision the old host last saw
   * (RevisionConflictError, and nothing kept, when it changed meanwhile), and it is resumed when it was
   * RUNNING there. Resolves once the VM is this host's.
   */
  async moveIn(input: AsyncIterable<Uint8Array>, offer: MoveOffer): Promise<MoveAnswer> {
    let adopted: VmSlot | undefined;
    const view = offer.shared
      ? await this.moveInShared(input, offer, (slot) => {
          adopted = slot;
        })
      : await this.archives.import(
          input,
          { name: offer.name },
          {
            ...this.importSteps(),
            // The same VM, not a copy: it keeps its id (and so its MACs).
            idTaken: () => false,
            insert: async (record, commit) => {
              refuseOnSharedStorage(record, "move in");
              const op = this.operations.create("move", record.name);
              await this.operations.run(op, async () => {
                const entry = {
                  at: this.now().toISOString(),
                  from: record.status,
                  to: record.status,
                  reason: `moved here from host '${offer.from}'`,
                };
                const { host: _oldHost, ...rest } = record;
                const moved: VmRecord = { ...rest, history: [...record.history.slice(0, -1), entry] };
                await commit();
                try {
                  await this.config.store.adopt(moved, offer.revision);
                } catch (e) {
                  await this.config.store.release(record.name).catch(() => {});
                  await this.collectDiskGarbage().catch(() => {});
                  throw e;
                }
                adopted = await this.welcome(moved, entry);
              });
              return op.view();
            },
          },
        );
    if (view.error) throw new HypervisorError(view.error.code, view.error.message);
    if (!offer.resume || !adopted)
      return { kind: "tsvm#moveIn", resumed: false, resumeMs: 0, resumeError: null };
    const resumeStarted = Date.now();
    const resume = this.resume(offer.name);
    await this.operations.get(resume.id).waitDone(600_000);
    const done = this.operations.get(resume.id).view();
    return {
      kind: "tsvm#moveIn",
      resumed: done.status === "DONE" && done.error === null,
      resumeMs: Date.now() - resumeStarted,
      resumeError: done.error ? `${done.error.code}: ${done.error.message}` : null,
    };
  }

  /**
   * Takes in a RUNNING VM another host of the cluster moves here live (cluster/live-moves.ts): its live
   * move's file from `input`; resolves with where its VMM waits for the guest's stream (on `listenHost`).
   */
  moveInLive(
    input: AsyncIterable<Uint8Array>,
    offer: LiveMoveOffer,
    listenHost: string,
  ): Promise<LiveMoveAnswer> {
    return acceptLiveMove(this.liveMoveInSteps(), input, offer, listenHost);
  }

  /** The steps of a live move in, on this host's side, lent to acceptLiveMove. */
  private liveMoveInSteps(): LiveMoveInHost {
    return {
      importLive: async (input, name, prepared) => {
        const view = await this.archives.import(
          input,
          { name, live: true },
          {
            ...this.importSteps(),
            idTaken: () => false,
            insert: async (record, commit) => {
              refuseOnSharedStorage(record, "move in");
              checkAdmission(this.config.capacity, this.allocations(), { ...record, diskMiB: 0 });
              const op = this.operations.create("move", record.name);
              await this.operations.run(op, () => commit(() => prepared(record)));
              return op.view();
            },
          },
        );
        if (view.error) throw new HypervisorError(view.error.code, view.error.message);
      },
      paths: (name) => this.config.store.paths(name),
      launch: (record, paths, incoming) =>
        this.config.launcher.launch(record, paths, "restore", { incoming }),
      takeOver: async (record, offer) => {
        const entry = {
          at: this.now().toISOString(),
          from: record.status,
          to: record.status,
          reason: `moved here live from host '${offer.from}'`,
        };
        const { host: _oldHost, ...rest } = record;
        const moved: VmRecord = { ...rest, history: [...record.history.slice(0, -1), entry] };
        await this.config.store.adopt(moved, offer.revision);
        return moved;
      },
      welcome: async (record, vmm) => {
        this.attach(await this.welcome(record, record.history[record.history.length - 1]!), vmm);
      },
      discard: async (name) => {
        await this.config.store.release(name);
        // Queued behind the live move's hold on disk garbage collection: its nodes go once it let go.
        void this.collectDiskGarbage();
      },
      lost: async (record, why) => {
        const slot = await this.welcome(record, record.history[record.history.length - 1]!);
        await this.setStatus(slot, "TERMINATED", why, {
          statusMessage: why,
          lastStopTimestamp: this.now().toISOString(),
        });
      },
    };
  }

  /** moveIn of a VM on the cluster's shared storage (shared-move-in.ts): its files are where they were. */
  private async moveInShared(
    input: AsyncIterable<Uint8Array>,
    offer: MoveOffer,
    adopted: (slot: VmSlot) => void,
  ): Promise<OperationView> {
    for await (const chunk of input)
      if (chunk.length > 0)
        throw new HypervisorError("invalid-argument", "a move of a VM on shared storage sends no files");
    const { store } = this.config;
    const op = this.operations.create("move", offer.name);
    await this.operations.run(op, () =>
      takeInSharedVm(
        {
          hasSharedStorage: this.sharedNodes !== undefined,
          read: (name) => store.records.read(name),
          checkNameFree: (name) => this.checkNameFree(name),
          cardsFor: (record) =>
            this.importSteps().cardsFor(record, record, {
              dropMissingNetworks: false,
              savedMemory: record.status === "SUSPENDED",
            }),
          adopt: async (record, revision, entry) => {
            await store.adopt(record, revision);
            adopted(await this.welcome(record, entry));
          },
        },
        offer,
        this.now().toISOString(),
      ),
    );
    return op.view();
  }

  /** The steps imports and moves share (ImportHost). */
  private importSteps(): Pick<ImportHost, "checkNameFree" | "engines" | "cardsFor"> {
    return {
      checkNameFree: (name) => this.checkNameFree(name),
      engines: () => this.config.launcher.engines(),
      cardsFor: (exported, vm, cardOptions) => {
        if (exported.networkInterfaces === undefined) return { cards: undefined, release: () => {} };
        const cards =
          vm.id === exported.id
            ? exported.networkInterfaces
            : interfacesForCopy(exported.networkInterfaces, macsOf(this.records()))!;
        return this.lan.cardsForImport(
          { ...vm, cards },
          { dropMissing: cardOptions.dropMissingNetworks, savedMemory: cardOptions.savedMemory },
        );
      },
    };
  }

  /** Makes a VM whose files were just put in place (import, move) known: its slot, its disk held, an event. */
  private async welcome(record: VmRecord, entry: VmRecord["history"][number]): Promise<VmSlot> {
    const slot = this.newSlot(record);
    this.slots.set(record.name, slot);
    await this.holdDisk(slot);
    this.events.append({
      time: entry.at,
      type: "transition",
      vmName: record.name,
      vmId: record.id,
      from: entry.from,
      to: record.status,
      message: entry.reason,
    });
    return slot;
  }

  /** Where the VM's disk nodes are: this host's disks/, or the shared storage's for a VM there. */
  private nodesOf(record: VmRecord): DiskStore {
    if (!record.sharedStorage) return this.nodes;
    if (!this.sharedNodes) throw noSharedStorageError(record.name);
    return this.sharedNodes;
  }

  /** Whether this host has room now for `record`'s vCPUs and memory (a DOWN host's VM, host-failover.ts). */
  hasRoomFor(record: VmRecord): boolean {
    if (this.slots.has(record.name)) return false;
    try {
      checkAdmission(this.config.capacity, this.allocations(), { ...record, diskMiB: 0 });
      return true;
    } catch {
      return false;
    }
  }

  /**
   * Restarts here a VM on shared storage whose record host-failover.ts just took over from a DOWN host
   * (REPAIRING, its host this one): what its dead VMM left in its directory is settled, then it boots from
   * its disk as an automatic restart does. Resolves once it runs (or the restart failed, as its record says).
   */
  async restartFromDownHost(name: string, reason: string): Promise<void> {
    const record = await this.config.store.read(name);
    const slot = await this.welcome(record, {
      at: this.now().toISOString(),
      from: record.status,
      to: record.status,
      reason,
    });
    const done = new Promise<void>((resolve) => {
      this.enqueueSystem(slot, "repair", async () => {
        try {
          await this.recoverLeftovers(slot);
          await this.repair(slot, { reason: "crashed", detail: reason });
        } finally {
          resolve();
        }
      });
    });
    await done;
  }

  setMachineType(name: string, machineType: string): OperationView {
    const slot = this.slot(name);
    const type = resolveMachineType(machineType);
    return this.submit(
      slot,
      "setMachineType",
      "setMachineType",
      () => {},
      async () => {
        await this.changeRecord(
          slot,
          { ...slot.record, machineType: type.name, cpus: type.cpus, memoryMiB: type.memoryMiB },
          `machine type set to ${type.name} (${type.description})`,
          "setMachineType",
        );
      },
    );
  }

  /**
   * Changes a TERMINATED VM's definition (Compute Engine's instances.update): its port forwards, replaced
   * whole. Checked as an insert's are (format, other VMs' forwards at once; ports held by a process in the
   * operation); takes effect at the next start.
   */
  update(name: string, req: UpdateInstanceRequest): OperationView {
    const slot = this.slot(name);
    const check = () => {
      const forwards = forwardsForRequest(req.forwards, hasNatCard(slot.record));
      checkForwardsUnshared(name, forwards, this.records());
      return forwards;
    };
    if (req.forwards !== undefined && slot.busy === 0) check();
    return this.submit(
      slot,
      "update",
      "update",
      () => {},
      async () => {
        if (req.forwards === undefined) return;
        const forwards = check();
        await checkHostPortsFree(name, forwards);
        await this.changeRecord(
          slot,
          { ...slot.record, forwards },
          forwards.length === 0
            ? "port forwards removed"
            : `port forwards set to ${forwards.map(describeForward).join(", ")}`,
        );
      },
    );
  }

  // ---- snapshots (snapshots.ts) ---------------------------------------------------------------------

  async listSnapshots(name: string): Promise<Snapshot[]> {
    const slot = this.slot(name);
    return this.snapshots.list(slot.record, this.config.store.paths(name));
  }

  async getSnapshot(name: string, snapshot: string): Promise<Snapshot> {
    const slot = this.slot(name);
    return this.snapshots.get(slot.record, this.config.store.paths(name), snapshot);
  }

  /** Takes snapshot `snapshot` of the VM (RUNNING: with its memory, the guest runs on; else its disk). */
  async createSnapshot(name: string, snapshot: string, description = ""): Promise<OperationView> {
    const slot = this.slot(name);
    await this.snapshots.checkNew(slot.record, this.config.store.paths(name), snapshot);
    return this.submit(
      slot,
      "createSnapshot",
      "createSnapshot",
      () => {},
      async (op) => {
        // Memory is the part a snapshot may add at once: it is admitted against the free space first.
        const memoryMiB = slot.record.status === "TERMINATED" ? 0 : slot.record.memoryMiB;
        const paths = this.config.store.paths(name);
        const release = await this.disks.admit(`${name} (snapshot)`, memoryMiB, join(paths.dir, "snapshots"));
        try {
          op.statusMessage = await this.snapshots.create(this.snapshotVm(slot), snapshot, description);
        } finally {
          release();
        }
        this.notice(slot, op.statusMessage);
      },
    );
  }

  /** Makes the VM what it was at the snapshot (see Snapshots.restore). */
  restoreSnapshot(name: string, snapshot: string): Promise<OperationView> {
    return this.onExistingSnapshot(name, snapshot, "restoreSnapshot", (vm) =>
      this.snapshots.restore(vm, snapshot),
    );
  }

  deleteSnapshot(name: string, snapshot: string): Promise<OperationView> {
    return this.onExistingSnapshot(name, snapshot, "deleteSnapshot", (vm) =>
      this.snapshots.delete(vm, snapshot),
    );
  }

  /** Submits `work` on one of the VM's existing snapshots; what it returns is the operation's message. */
  private async onExistingSnapshot(
    name: string,
    snapshot: string,
    type: "restoreSnapshot" | "deleteSnapshot",
    work: (vm: SnapshotVm) => Promise<string>,
  ): Promise<OperationView> {
    const slot = this.slot(name);
    await this.snapshots.checkExisting(slot.record, this.config.store.paths(name), snapshot);
    return this.submit(
      slot,
      type,
      type,
      () => {},
      async (op) => {
        op.statusMessage = await work(this.snapshotVm(slot));
        this.notice(slot, op.statusMessage);
      },
    );
  }

  /** The lifecycle steps a snapshot operation may take on the VM (it runs in the VM's queue). */
  private snapshotVm(slot: VmSlot): SnapshotVm {
    return {
      get record() {
        return slot.record;
      },
      paths: this.config.store.paths(slot.record.name),
      get vmm() {
        return slot.vmm;
      },
      // The current guest is being replaced: it is forced off at once, not asked to power off.
      stop: (reason) => this.stopSlot(slot, reason, 0),
      resumeSaved: async (reason, patch) => {
        const { name, cpus, memoryMiB } = { ...slot.record, ...patch };
        try {
          checkAdmission(this.config.capacity, this.allocations(), { name, cpus, memoryMiB, diskMiB: 0 });
        } catch (e) {
          // Not resumed: the VM stays TERMINATED with the restored disk, and boots fresh when started.
          await rm(this.config.store.paths(name).stateDir, { recursive: true, force: true });
          throw e;
        }
        // Held until PROVISIONING counts it, as admit() does for start and resume.
        this.reservations.set(name, { name: `${name} (reserved)`, status: "PROVISIONING", cpus, memoryMiB });
        // "resume …": a daemon restarted meanwhile returns the VM to SUSPENDED, its state being in place.
        const why = `resume from ${reason.replace(/^restoring /, "")}`;
        try {
          await this.setStatus(slot, "PROVISIONING", why, { ...patch, statusMessage: "" });
        } finally {
          this.reservations.delete(name);
        }
        await this.stageFromSaved(slot, why);
      },
    };
  }

  /**
   * Writes `next` (the slot's record with a changed definition, same status) and records a notice saying
   * what changed. `crashOperation` names the crash points `<operation>:before-write` and `:after-write`
   * around the write (crash-point.ts), for an operation the crash test walks.
   */
  private async changeRecord(
    slot: VmSlot,
    next: VmRecord,
    message: string,
    crashOperation?: CrashOperation,
  ): Promise<void> {
    if (crashOperation) crashPoint(`${crashOperation}:before-write`);
    await this.config.store.write(next);
    if (crashOperation) crashPoint(`${crashOperation}:after-write`);
    slot.record = next;
    this.notice(slot, message);
  }

  /** An event saying what an operation did to the VM without changing its status. */
  private notice(slot: VmSlot, message: string): void {
    const { name, id, status } = slot.record;
    this.events.append({
      time: this.now().toISOString(),
      type: "notice",
      vmName: name,
      vmId: id,
      from: status,
      to: status,
      message,
    });
  }

  /** Reserves what the VM's active disk may still grow by (disk-admission.ts), from its virtual size. */
  private async holdDisk(slot: VmSlot): Promise<void> {
    const dir = this.config.store.paths(slot.record.name).dir;
    const info = await activeDiskInfo(dir).catch(() => undefined);
    if (info) this.disks.hold(slot.record.name, info.virtualSize, () => activeDiskOf(dir));
  }

  /** Removes the disk nodes nothing reaches any more; a failure is logged, never the caller's. */
  private async collectDiskGarbage(): Promise<void> {
    for (const nodes of this.sharedNodes ? [this.nodes, this.sharedNodes] : [this.nodes])
      try {
        await nodes.exclusive(() => nodes.collectGarbage());
      } catch (e) {
        process.stderr.write(`disk garbage collection in ${nodes.dir} failed: ${(e as Error).message}\n`);
      }
  }

  // ---- clones (clones.ts) ----------------------------------------------------------------------------

  /**
   * insert with a source: a new VM sharing the source's disk and saved state, with a new identity, booted
   * (from a TERMINATED source) or resumed where the source was (from a SUSPENDED one). The source's part
   * runs in the source's queue, so no operation changes it meanwhile.
   */
  private insertClone(req: InsertRequest, sourceName: string): OperationView {
    const source = this.slot(sourceName);
    const action = req.sourceSnapshot === undefined ? "clone" : "cloneSnapshot";
    if (source.busy === 0) checkAction(action, source.record.status, sourceName);
    const copy = cloneRecord(source.record, req, this.now().toISOString(), macsOf(this.records()));
    const record = copy.networkInterfaces
      ? { ...copy, networkInterfaces: this.lan.assignAddresses(copy.networkInterfaces) }
      : copy;
    checkForwardsUnshared(record.name, record.forwards ?? [], this.records());
    checkScheduling(record.cpuCapPercent, record.cpuWeight, record.cpus);
    checkAdmission(this.config.capacity, this.allocations(), {
      name: record.name,
      cpus: record.cpus,
      memoryMiB: record.memoryMiB,
      diskMiB: 0,
    });
    const slot = this.newSlot(record);
    this.slots.set(record.name, slot);
    return this.submit(
      slot,
      "insert",
      null,
      () => {},
      async (op) => {
        let resume = false;
        try {
          resume = await this.onQueueOf(source, async () => {
            if (source.deleted) throw new VmNotFoundError(sourceName);
            checkAction(action, source.record.status, sourceName);
            await checkHostPortsFree(record.name, record.forwards ?? []);
            op.statusMessage = `sharing the disk of '${sourceName}'`;
            const resumes = await this.clones.makeFiles(this.cloneVm(source, slot), req.sourceSnapshot);
            await this.holdDisk(slot);
            return resumes;
          });
        } catch (e) {
          // Nothing is left half-created: no directory, no slot, no reservation; the source is as it was.
          this.slots.delete(record.name);
          throw e;
        }
        crashPoint("insert:after-disk-copy");
        this.events.append({
          time: record.creationTimestamp,
          type: "transition",
          vmName: record.name,
          vmId: record.id,
          from: null,
          to: "PROVISIONING",
          message: record.history[0]!.reason,
        });
        op.progress = 30;
        if (resume) await this.stageClone(slot, sourceName);
        else await this.bootFromProvisioning(slot, op, `clone of '${sourceName}'`);
      },
    );
  }

  /** The steps making a clone's files may take on the clone and its source (in the source's queue). */
  private cloneVm(source: VmSlot, slot: VmSlot): CloneVm {
    const { store } = this.config;
    return {
      get record() {
        return slot.record;
      },
      set record(record) {
        slot.record = record;
      },
      paths: store.paths(slot.record.name),
      source: { record: source.record, paths: store.paths(source.record.name) },
      admit: (cpus, memoryMiB) => {
        const others = this.allocations().filter((a) => a.name !== slot.record.name);
        checkAdmission(this.config.capacity, others, { name: slot.record.name, cpus, memoryMiB, diskMiB: 0 });
      },
      createDirectory: () => this.createVmDirectory(slot.record),
      removeDirectory: () => store.remove(slot.record.name),
      collectGarbage: () => this.collectDiskGarbage(),
    };
  }

  /** Creates the new VM's directory with its record; a failure (e.g. a full disk) is record-write-failed. */
  private async createVmDirectory(record: VmRecord): Promise<void> {
    const { store } = this.config;
    await store.create(record).catch((e: Error) => {
      if (e instanceof HypervisorError) throw e;
      throw new HypervisorError(
        "record-write-failed",
        `could not create the directory of VM '${record.name}' in ${(record.sharedStorage && store.sharedVmsDir) || store.vmsDir} (${e.message}); nothing was created`,
      );
    });
  }

  /** PROVISIONING → STAGING → RUNNING from the clone's saved state; SUSPENDED (state kept) on failure. */
  private async stageClone(slot: VmSlot, sourceName: string): Promise<void> {
    // "resume …": a daemon restarted meanwhile returns the clone to SUSPENDED, its state being in place.
    await this.setStatus(slot, "STAGING", `resume of a clone of '${sourceName}': restoring the saved state`);
    const paths = this.config.store.paths(slot.record.name);
    let vmm: VmmHandle;
    try {
      vmm = await this.config.launcher.launch(slot.record, paths, "restore");
    } catch (e) {
      const message = `resume failed: ${(e as Error).message}`;
      await this.setStatus(slot, "SUSPENDED", message, { statusMessage: message });
      throw e;
    }
    this.attach(slot, vmm);
    try {
      await this.commitRunning(slot, vmm, `clone of '${sourceName}': resumed with a new identity`);
    } finally {
      // As resume: the guest ran from the state and may have written its disk.
      await rm(paths.stateDir, { recursive: true, force: true });
    }
  }

  /** Runs `work` in the VM's queue, behind its operations (no operation record: the caller's op reports it). */
  private onQueueOf<T>(slot: VmSlot, work: () => Promise<T>): Promise<T> {
    slot.busy++;
    const run = slot.queue.then(work);
    slot.queue = run.then(
      () => {},
      () => {},
    );
    void slot.queue.finally(() => slot.busy--);
    return run;
  }

  /** Lets go of every VMM (they keep running) once queued operations have settled; for daemon shutdown. */
  async close(): Promise<void> {
    // From now on a VMM's exit is left to the next daemon (no repair is started by this one).
    this.closed = true;
    this.lan.close();
    await Promise.all([...this.slots.values()].map((s) => s.queue));
    for (const slot of this.slots.values()) {
      slot.vmm?.detach();
      slot.vmm = undefined;
    }
  }

  // ---- internals -----------------------------------------------------------------------------------

  /** Throws unless `name` is a valid VM name that no VM, unusable VM directory or import in flight has. */
  private checkNameFree(name: string): void {
    checkVmName(name);
    if (this.slots.has(name) || this.broken.has(name) || this.archives.isImporting(name))
      throw new VmExistsError(name);
  }

  /**
   * Runs `work` on the VM's queue where `action` is legal, not as an operation: nothing else runs on the
   * VM until it settles. An idle VM's legality is checked at once, so an illegal request fails before it
   * waits.
   */
  private hold<T>(slot: VmSlot, action: VmAction, work: () => Promise<T>): Promise<T> {
    const check = () => {
      if (slot.deleted) throw new VmNotFoundError(slot.record.name);
      checkAction(action, slot.record.status, slot.record.name);
    };
    if (slot.busy === 0) check();
    slot.busy++;
    const run = slot.queue.then(async () => {
      check();
      return work();
    });
    slot.queue = run
      .then(
        () => {},
        () => {},
      )
      .finally(() => {
        slot.busy--;
      });
    return run;
  }

  /** Runs `work` with the SUSPENDED VM `name` held at rest (nothing else runs on it meanwhile). */
  private holdSuspended<T>(name: string, work: (record: VmRecord, paths: VmPaths) => Promise<T>): Promise<T> {
    const slot = this.slot(name);
    const check = () => {
      if (slot.record.status !== "SUSPENDED")
        throw new HypervisorError(
          "illegal-action",
          `the VM '${name}' is ${slot.record.status}: only a SUSPENDED VM's state moves to or from a browser tab (suspend it first)`,
        );
    };
    if (slot.busy === 0) check();
    return this.hold(slot, "export", async () => {
      check();
      return work(slot.record, this.config.store.paths(name));
    });
  }

  /** Every VM's record (for what must be unique across VMs: MACs, forwarded host ports). */
  private records(): VmRecord[] {
    return [...this.slots.values()].map((s) => s.record);
  }

  private slot(name: string): VmSlot {
    checkVmName(name);
    const slot = this.slots.get(name);
    if (slot) return slot;
    const broken = this.broken.get(name);
    if (broken) throw broken;
    throw new VmNotFoundError(name);
  }

  private view(slot: VmSlot): VmView {
    return {
      kind: "tsvm#instance",
      ...slot.record,
      identity: identityOf(slot.record),
      networkInterfaces: interfacesOf(slot.record),
      forwards: slot.record.forwards ?? [],
      vmmPid: slot.vmm?.pid ?? null,
    };
  }

  private sizeOf(req: InsertRequest): { name: string; cpus: number; memoryMiB: number; description: string } {
    if (req.machineType !== undefined) {
      const type = resolveMachineType(req.machineType);
      if (
        (req.cpus !== undefined && req.cpus !== type.cpus) ||
        (req.memoryMiB !== undefined && req.memoryMiB !== type.memoryMiB)
      )
        throw new HypervisorError(
          "invalid-argument",
          `machine type ${type.name} has ${type.description}; give either a machine type or cpus and memory, not both`,
        );
      return type;
    }
    if (req.cpus === undefined && req.memoryMiB === undefined)
      return resolveMachineType(DEFAULT_MACHINE_TYPE);
    const fallback = resolveMachineType(DEFAULT_MACHINE_TYPE);
    return machineTypeFor(req.cpus ?? fallback.cpus, req.memoryMiB ?? fallback.memoryMiB);
  }

  private allocations(): VmAllocation[] {
    const out: VmAllocation[] = [...this.reservations.values()];
    for (const s of this.slots.values())
      out.push({
        name: s.record.name,
        status: s.record.status,
        cpus: s.record.cpus,
        memoryMiB: s.record.memoryMiB,
      });
    return out;
  }

  /** Admission for start/resume: synchronous check and reservation, so no other request can take the room. */
  private admit(slot: VmSlot): void {
    const { name, cpus, memoryMiB } = slot.record;
    checkAdmission(this.config.capacity, this.allocations(), { name, cpus, memoryMiB, diskMiB: 0 });
    this.reservations.set(name, { name: `${name} (reserved)`, status: "PROVISIONING", cpus, memoryMiB });
  }

  /**
   * Queues `work` as an operation on the VM. When the VM is idle the action's legality (and `prepare`,
   * e.g. admission) is checked now, so an illegal request fails at once and changes nothing; a request
   * queued behind others is checked when its turn comes, and fails as an operation error.
   */
  private submit(
    slot: VmSlot,
    type: OperationType,
    action: VmAction | null,
    prepare: () => void,
    work: (op: Operation) => Promise<void>,
  ): OperationView {
    const check = () => {
      if (slot.deleted) throw new VmNotFoundError(slot.record.name);
      if (action) checkAction(action, slot.record.status, slot.record.name);
      prepare();
    };
    let checked = false;
    if (slot.busy === 0) {
      check();
      checked = true;
    }
    const op = this.operations.create(type, slot.record.name);
    // A delete runs even when its record cannot be written: deleting is how a full disk gets space back,
    // and the VM's absence records it.
    this.enqueue(
      slot,
      op,
      async () => {
        if (!checked) check();
        await work(op);
      },
      type !== "delete",
    );
    return op.view();
  }

  private enqueueSystem(slot: VmSlot, type: OperationType, work: () => Promise<void>): void {
    this.enqueue(slot, this.operations.create(type, slot.record.name), work);
  }

  /** Queues `work` behind the VM's other operations; `mustRecord`: see OperationRegistry.run. */
  private enqueue(slot: VmSlot, op: Operation, work: () => Promise<void>, mustRecord = false): void {
    slot.busy++;
    slot.queue = slot.queue
      .then(() => {
        slot.operation = op.operationType;
        return this.operations.run(op, work, mustRecord);
      })
      .finally(() => {
        slot.operation = undefined;
        slot.busy--;
      });
  }

  private async setStatus(
    slot: VmSlot,
    to: VmStatus,
    reason: string,
    patch: Partial<VmRecord> = {},
  ): Promise<void> {
    const from = slot.record.status;
    transition(from, to);
    const at = this.now().toISOString();
    const next: VmRecord = {
      ...slot.record,
      ...patch,
      status: to,
      history: withHistory(slot.record, { at, from, to, reason }),
    };
    statusWritePoint(slot.operation, to, "before-write");
    try {
      await this.config.store.write(next);
    } catch (e) {
      // Not on disk, so it did not happen: the VM keeps its recorded status (in memory too).
      if (e instanceof HypervisorError) throw e;
      throw new RecordWriteError(next.name, from, to, this.config.store.paths(next.name).definition, e);
    }
    statusWritePoint(slot.operation, to, "after-write");
    slot.record = next;
    // A start's or resume's reservation ends in the same turn as the status that now counts the VM: ended a
    // microtask later (the caller's finally), a host usage read in between counted the VM twice.
    if (holdsCpuAndMemory(to)) this.reservations.delete(next.name);
    this.events.append({
      time: at,
      type: "transition",
      vmName: next.name,
      vmId: next.id,
      from,
      to,
      message: reason,
    });
  }

  /** PROVISIONING → STAGING → RUNNING with a fresh boot; a VMM that cannot start leaves the VM TERMINATED. */
  private async bootFromProvisioning(slot: VmSlot, op: Operation, why: string): Promise<void> {
    await this.setStatus(slot, "STAGING", `${why}: starting the VMM`);
    op.progress = 60;
    await this.bootFromStaging(slot, why);
  }

  private async bootFromStaging(slot: VmSlot, why: string): Promise<void> {
    let vmm: VmmHandle;
    try {
      vmm = await this.config.launcher.launch(slot.record, this.config.store.paths(slot.record.name), "boot");
    } catch (e) {
      const message = (e as Error).message;
      await this.setStatus(slot, "TERMINATED", message, {
        statusMessage: message,
        lastStopTimestamp: this.now().toISOString(),
      });
      throw e;
    }
    crashPoint(`${slot.operation}:after-vmm-spawn`);
    this.attach(slot, vmm);
    await this.commitRunning(slot, vmm, `${why}: the guest is booting`);
  }

  /**
   * STAGING → RUNNING now that `vmm` runs the guest. A guest must not run while its VM is recorded as not
   * running: when the record cannot be written (a full disk), the VMM is ended and the VM stays in its
   * recorded status, with no operation running, where stop and delete are legal (lifecycle.ts).
   */
  private async commitRunning(slot: VmSlot, vmm: VmmHandle, reason: string): Promise<void> {
    try {
      await this.setStatus(slot, "RUNNING", reason, { lastStartTimestamp: this.now().toISOString() });
    } catch (e) {
      slot.expectingExit = true;
      vmm.kill();
      await vmm.exited;
      slot.expectingExit = false;
      slot.vmm = undefined;
      throw e;
    }
  }

  /** Makes `vmm` the VM's VMM and watches for its exit. */
  private attach(slot: VmSlot, vmm: VmmHandle): void {
    slot.vmm = vmm;
    vmm.onNotice?.((message) => {
      if (slot.vmm !== vmm || slot.deleted) return;
      const { status, name, id } = slot.record;
      const time = this.now().toISOString();
      this.events.append({ time, type: "notice", vmName: name, vmId: id, from: status, to: status, message });
    });
    vmm.onAgentHello?.(() => {
      if (slot.vmm === vmm && !slot.deleted) this.lan.agentStarted(slot.record.name);
    });
    void vmm.exited.then((exit) => {
      if (slot.vmm !== vmm || slot.deleted || this.closed) return;
      if (slot.expectingExit) return; // the operation that expects it handles it
      slot.vmm = undefined;
      const type =
        exit.reason === "poweroff" || exit.reason === "migrated"
          ? "stop"
          : exit.reason === "suspended"
            ? "suspend"
            : "repair";
      this.enqueueSystem(slot, type, () => this.onUnexpectedExit(slot, exit));
    });
  }

  /**
   * Ends an operation that a previous daemon left PENDING or RUNNING. One whose goal the VM has reached
   * (after recovery) completed; any other failed, and says so: the daemon restarted while it ran.
   */
  private async settleInterrupted(op: Operation, wasRunning: boolean): Promise<void> {
    const slot = this.slots.get(op.targetName);
    const status = slot?.record.status ?? null;
    const where = slot
      ? `the VM '${op.targetName}' is ${status} (${slot.record.history.at(-1)?.reason ?? "no history"})`
      : `the VM '${op.targetName}' does not exist`;
    const goal = INTERRUPTED_OPERATION_GOALS[op.operationType];
    if (wasRunning && goal !== undefined && goal === status) {
      await this.operations.settle(op, undefined, `completed across a daemon restart: ${where}`);
      return;
    }
    const message = wasRunning
      ? `the tsvm daemon restarted while this ${op.operationType} ran; afterwards ${where}`
      : `the tsvm daemon restarted before this ${op.operationType} ran, so it was not carried out; ${where}`;
    await this.operations.settle(op, new HypervisorError("daemon-restarted", message));
  }

  private async onUnexpectedExit(slot: VmSlot, exit: VmmExit): Promise<void> {
    // A VMM attached since this exit (operations queued before this one, e.g. a stop then a start, already
    // gave the VM a new one) means the exit is settled; repairing now would boot a second VMM over it.
    if (slot.record.status !== "RUNNING" || slot.vmm) return;
    if (exit.reason === "suspended") {
      // A suspend whose daemon died meanwhile: the VMM finished it (its state is written) and exited.
      await this.setStatus(slot, "SUSPENDING", "suspend requested by a previous daemon");
      await this.setStatus(slot, "SUSPENDED", "suspended (completed after a daemon restart)", {
        lastSuspendedTimestamp: this.now().toISOString(),
        statusMessage: "",
      });
      return;
    }
    if (exit.reason === "poweroff") {
      // As on Compute Engine, a guest that shuts itself down goes STOPPING → TERMINATED.
      await this.setStatus(slot, "STOPPING", exit.detail);
      await this.setStatus(slot, "TERMINATED", "stopped: CPU and memory released", {
        lastStopTimestamp: this.now().toISOString(),
      });
      return;
    }
    if (exit.reason === "migrated") {
      // The guest runs in another VMM now (a live migration this daemon did not see end): repairing would
      // boot it a second time. It is let be here; the move's takeover of the record decides where it is.
      const why = `its VMM handed the guest over and exited (${exit.detail}); it is not restarted here`;
      await this.setStatus(slot, "STOPPING", why);
      await this.setStatus(slot, "TERMINATED", why, {
        statusMessage: why,
        lastStopTimestamp: this.now().toISOString(),
      });
      return;
    }
    await this.setStatus(slot, "REPAIRING", exit.detail, { statusMessage: exit.detail });
    await this.repair(slot, exit);
  }

  /** From REPAIRING: a fresh boot when automaticRestart allows it (and the VM is not crash-looping). */
  private async repair(slot: VmSlot, exit: VmmExit): Promise<void> {
    await this.reclaimDiskLeaks(slot);
    const nowMs = this.now().getTime();
    slot.restarts = slot.restarts.filter((t) => nowMs - t < CRASH_LOOP_WINDOW_MS);
    let refusal: string | undefined;
    if (!slot.record.automaticRestart)
      refusal = `automaticRestart is off; the VM stays down after: ${exit.detail}`;
    else if (slot.restarts.length >= CRASH_LOOP_MAX_RESTARTS)
      refusal = `restarted ${slot.restarts.length} times in ${CRASH_LOOP_WINDOW_MS / 60_000} minutes; automatic restart gave up after: ${exit.detail}`;
    if (refusal) {
      await this.setStatus(slot, "TERMINATED", refusal, {
        statusMessage: refusal,
        lastStopTimestamp: this.now().toISOString(),
      });
      return;
    }
    slot.restarts.push(nowMs);
    await this.setStatus(slot, "STAGING", "automatic restart: starting a fresh VMM");
    await this.bootFromStaging(slot, "automatic restart");
  }

  /**
   * → STOPPING → TERMINATED; a running guest is asked to power off, then forced. Also ends a VM that a failed
   * record write left in a transitional status (its VMM, if any, is stopped the same way).
   */
  private async stopSlot(slot: VmSlot, reason: string, timeoutMs = this.config.stopTimeoutMs): Promise<void> {
    const mayHaveState = slot.record.status !== "RUNNING";
    if (slot.record.status !== "STOPPING") await this.setStatus(slot, "STOPPING", reason);
    const vmm = slot.vmm;
    let how = "stopped";
    if (vmm) {
      slot.expectingExit = true;
      try {
        const exit = await vmm.stop(timeoutMs);
        how =
          exit.reason === "poweroff" ? "the guest powered off" : `the guest was forced off (${exit.detail})`;
      } finally {
        slot.expectingExit = false;
        slot.vmm = undefined;
      }
      crashPoint("stop:after-vmm-exit");
    }
    // A stopped VM boots fresh: a saved state (of a SUSPENDED VM, or left by an unfinished suspend or
    // resume) would be behind its disk by then.
    const stateDir = this.config.store.paths(slot.record.name).stateDir;
    if (
      mayHaveState &&
      (await stat(stateDir).then(
        () => true,
        () => false,
      ))
    ) {
      await rm(stateDir, { recursive: true, force: true });
      how = "the saved state was discarded";
    }
    await this.setStatus(slot, "TERMINATED", `${how}; CPU and memory released`, {
      lastStopTimestamp: this.now().toISOString(),
      statusMessage: "",
    });
  }

  /** Stops the VM's VMM, if one runs, without recording anything. */
  private async endVmm(slot: VmSlot): Promise<void> {
    const vmm = slot.vmm;
    if (!vmm) return;
    slot.expectingExit = true;
    try {
      await vmm.stop(this.config.stopTimeoutMs);
    } finally {
      slot.expectingExit = false;
      slot.vmm = undefined;
    }
  }

  /**
   * A VM found SUSPENDING with its VMM alive: the VMM may be writing the state (a `.tmp-state-*` directory
   * exists until the swap) or about to exit after it. Waits for its exit (up to a minute while it writes,
   * a moment otherwise); undefined when it runs on, i.e. the suspend request never reached it.
   */
  private async awaitSuspendInFlight(slot: VmSlot, vmm: VmmHandle): Promise<VmmExit | undefined> {
    const dir = this.config.store.paths(slot.record.name).dir;
    const saving = (await readdir(dir).catch(() => [])).some((e) => e.startsWith(NEW_STATE_PREFIX));
    let timer: NodeJS.Timeout | undefined;
    slot.expectingExit = true;
    try {
      return await Promise.race([
        vmm.exited,
        new Promise<undefined>((resolve) => {
          timer = setTimeout(
            () => resolve(undefined),
            saving ? SUSPEND_IN_FLIGHT_WAIT_MS : SUSPEND_EXIT_WAIT_MS,
          );
        }),
      ]);
    } finally {
      clearTimeout(timer);
      slot.expectingExit = false;
    }
  }

  /** After its VMM died: the disk's leaked clusters back (an event says so); a failure is only an event. */
  private async reclaimDiskLeaks(slot: VmSlot): Promise<void> {
    const dir = this.config.store.paths(slot.record.name).dir;
    try {
      for (const what of await reclaimActiveDiskLeaks(dir)) this.recoveryNotice(slot, what);
    } catch (e) {
      this.notice(slot, `could not reclaim the disk's leaked clusters: ${(e as Error).message}`);
    }
  }

  /** Settles the temp files a crash left in the VM's directory (no VMM may run for it); each is an event. */
  private async recoverLeftovers(slot: VmSlot): Promise<void> {
    const paths = this.config.store.paths(slot.record.name);
    for (const what of await this.snapshots.recover(slot.record, paths)) this.recoveryNotice(slot, what);
    for (const what of await this.config.store.recoverLeftovers(slot.record.name))
      this.recoveryNotice(slot, what);
    await this.reclaimDiskLeaks(slot);
  }

  /** An event saying what recovery settled for the VM (its status unchanged). */
  private recoveryNotice(slot: VmSlot, what: string): void {
    this.notice(slot, `recovered after a crash: ${what}`);
  }

  /**
   * Ends a VMM found running for a VM recorded TERMINATED or SUSPENDED: a daemon that died while starting
   * it left it unrecorded, and its start was (or will be) reported failed (`daemon-restarted`). It is ended
   * rather than adopted, so that the VM is what its record and its operation said, with no capacity taken
   * behind the books; a suspended VM's orphan is suspended again (its guest may have written the disk since
   * the old state was saved, so only a fresh state matches the disk), a stopped VM's is stopped.
   */
  private async endOrphan(slot: VmSlot): Promise<void> {
    const { name, status } = slot.record;
    const found = await this.config.launcher.reattach(slot.record, this.config.store.paths(name));
    if (!("pid" in found)) return;
    let how = "stopped it";
    if (status === "SUSPENDED") {
      try {
        await found.suspend();
        how = "suspended it again, so that the saved state matches the disk";
      } catch (e) {
        await found.stop(0);
        how = `stopped it (suspending it failed: ${(e as Error).message}); the saved state was kept`;
      }
    } else await found.stop(0);
    this.recoveryNotice(slot, `found its VMM (pid ${found.pid}) running unrecorded and ${how}`);
  }

  /** After a daemon restart: re-attach to a VM's VMM and settle whatever the old daemon left mid-way. */
  private async recover(slot: VmSlot): Promise<void> {
    const paths = this.config.store.paths(slot.record.name);
    const found = await this.config.launcher.reattach(slot.record, paths);
    const status = slot.record.status;
    if ("pid" in found) {
      this.attach(slot, found);
      const note = "re-attached to its running VMM after a daemon restart";
      if (status === "RUNNING") return;
      if (status === "STOPPING") {
        slot.expectingExit = true;
        try {
          await found.stop(this.config.stopTimeoutMs);
        } finally {
          slot.expectingExit = false;
          slot.vmm = undefined;
        }
        await this.setStatus(slot, "TERMINATED", "stopped (completed after a daemon restart)", {
          lastStopTimestamp: this.now().toISOString(),
        });
        return;
      }
      if (status === "SUSPENDING") {
        const exit = await this.awaitSuspendInFlight(slot, found);
        if (exit) {
          slot.vmm = undefined;
          if (exit.reason === "suspended")
            return this.setStatus(slot, "SUSPENDED", "suspended (completed after a daemon restart)", {
              lastSuspendedTimestamp: this.now().toISOString(),
              statusMessage: "",
            });
          await this.setStatus(slot, "REPAIRING", exit.detail, { statusMessage: exit.detail });
          return this.repair(slot, exit);
        }
        // The suspend request died with the old daemon before the VMM began it: the guest runs on.
      }
      if (status === "PROVISIONING") await this.setStatus(slot, "STAGING", note);
      if (status === "REPAIRING") await this.setStatus(slot, "STAGING", note);
      await this.setStatus(slot, "RUNNING", note);
      return;
    }
    const exit = found.exit;
    await this.recoverLeftovers(slot);
    if (status === "PROVISIONING" && slot.record.history.length === 1) {
      // The insert itself was interrupted (its disk may be half copied): as a failed insert, it leaves nothing.
      await this.config.store.remove(slot.record.name);
      slot.deleted = true;
      this.slots.delete(slot.record.name);
      this.events.append({
        time: this.now().toISOString(),
        type: "deleted",
        vmName: slot.record.name,
        vmId: slot.record.id,
        from: status,
        to: null,
        message: "the insert was interrupted by a daemon restart; the half-created VM was removed",
      });
      return;
    }
    const hasState = await stat(paths.stateDir).then(
      () => true,
      () => false,
    );
    switch (status) {
      case "RUNNING":
        return this.onUnexpectedExit(slot, exit);
      case "STOPPING":
        return this.setStatus(slot, "TERMINATED", "stopped (completed after a daemon restart)", {
          lastStopTimestamp: this.now().toISOString(),
        });
      case "SUSPENDING":
        if (exit.reason === "suspended")
          return this.setStatus(slot, "SUSPENDED", "suspended (completed after a daemon restart)", {
            lastSuspendedTimestamp: this.now().toISOString(),
          });
        await this.setStatus(slot, "REPAIRING", exit.detail, { statusMessage: exit.detail });
        return this.repair(slot, exit);
      case "REPAIRING":
        return this.repair(slot, exit);
      case "PROVISIONING":
      case "STAGING": {
        // Only an interrupted resume goes back to SUSPENDED (its state is still there: it is removed only
        // once the guest runs); a start or an automatic restart goes back to TERMINATED.
        const began = [...slot.record.history]
          .reverse()
          .find((h) => h.to === "PROVISIONING" || h.to === "STAGING");
        const resuming = hasState && /^resume/.test(began?.reason ?? "");
        const message = `the ${resuming ? "resume" : "start"} was interrupted by a daemon restart`;
        return this.setStatus(slot, resuming ? "SUSPENDED" : "TERMINATED", message, {
          statusMessage: message,
        });
      }
      default:
        return;
    }
  }
}
