// The shapes of a VM: its definition as the hypervisor persists it (vm.json), as the API shows it, and the
// requests that create or resize it. TypeBox schemas, the one definition the TypeScript types, the OpenAPI
// document and every validator derive from.

import { type Static, Type } from "@sinclair/typebox";
import { StringEnum } from "./string-enum.ts";

/** Compute Engine's instance names (RFC 1035 labels): also safe as a directory name. */
export const VM_NAME_PATTERN = /^[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?$/;

/**
 * Per-VM bounds. RAM sits at 0x8000_0000 on the virt board and the machine addresses it below 4 GiB, so
 * at most 2 GiB; below 32 MiB a Linux kernel does not boot. 8 harts is what the emulated CLINT and PLIC
 * are wired for.
 */
export const VM_LIMITS = { minCpus: 1, maxCpus: 8, minMemoryMiB: 32, maxMemoryMiB: 2048 } as const;

export const VM_RECORD_FORMAT_VERSION = 1;
/** Older entries are dropped so that a VM that flaps for months keeps a bounded definition file. */
export const MAX_HISTORY_ENTRIES = 500;

export const VM_STATUSES = [
  "PROVISIONING",
  "STAGING",
  "RUNNING",
  "STOPPING",
  "TERMINATED",
  "SUSPENDING",
  "SUSPENDED",
  "REPAIRING",
] as const;

export const InstanceStatus = StringEnum(VM_STATUSES, {
  $id: "InstanceStatus",
  description: "Compute Engine's instance states.",
});
export type InstanceStatus = Static<typeof InstanceStatus>;

const Time = (description?: string) =>
  Type.String({ format: "date-time", maxLength: 40, ...(description ? { description } : {}) });
const NullableTime = (description: string) => Type.Union([Time(), Type.Null()], { description });

export const TransitionEntry = Type.Object(
  {
    at: Time("When the transition happened."),
    from: Type.Union([InstanceStatus, Type.Null()], { description: "null for the first entry (creation)." }),
    to: InstanceStatus,
    reason: Type.String({
      description:
        "Why, in a user's words: insert, stop requested, guest powered off, VMM exited with SIGKILL.",
    }),
  },
  { $id: "TransitionEntry", additionalProperties: false },
);
export type TransitionEntry = Static<typeof TransitionEntry>;

/** A machine id as systemd's /etc/machine-id holds it (machine-id(5)): 32 lowercase hex digits. */
export const MACHINE_ID_PATTERN = /^[0-9a-f]{32}$/;

export const GuestIdentity = Type.Object(
  {
    hostname: Type.String({
      pattern: VM_NAME_PATTERN.source,
      description: "The guest's hostname (and /etc/hostname); a new VM's or clone's is its name.",
    }),
    machineId: Type.String({
      pattern: MACHINE_ID_PATTERN.source,
      description: "The guest's /etc/machine-id: 32 lowercase hex digits, new for every VM and every clone.",
    }),
  },
  {
    $id: "GuestIdentity",
    additionalProperties: false,
    description:
      "Who the guest is: given at boot on the kernel command line and, after a restore from memory, through the guest agent.",
  },
);
export type GuestIdentity = Static<typeof GuestIdentity>;

/** The name of the NAT network: a card on it reaches the host's networks through passt (docs/networking.md). */
export const NAT_NETWORK = "nat";
/** The most network cards one VM has (eth0 … eth3). */
export const MAX_NETWORK_INTERFACES = 4;
/** A MAC address as tsvm writes it: six lowercase hex pairs joined by colons. */
export const MAC_PATTERN = /^[0-9a-f]{2}(?::[0-9a-f]{2}){5}$/;

export const NetworkInterface = Type.Object(
  {
    network: Type.String({
      minLength: 1,
      maxLength: 63,
      description: '"nat" (outbound access and port forwards through passt) or a private network\'s name.',
    }),
    mac: Type.String({
      pattern: MAC_PATTERN.source,
      description:
        "The card's MAC address (locally administered unicast, 02:…), made at create, kept across restarts, new for a clone.",
    }),
    ipv4: Type.Optional(
      Type.String({
        maxLength: 15,
        description: "Private networks only: the address the network's DHCP gives this card.",
      }),
    ),
  },
  {
    $id: "NetworkInterface",
    additionalProperties: false,
    description: "One network card of a VM; the first is the guest's eth0, the next eth1, and so on.",
  },
);
export type NetworkInterface = Static<typeof NetworkInterface>;

export const PORT_FORWARD_PROTOCOLS = ["tcp", "udp"] as const;
/** Host ports below this need privileges (and are refused, whoever runs tsvm). */
export const MIN_FORWARD_HOST_PORT = 1024;
export const DEFAULT_FORWARD_HOST_ADDRESS = "127.0.0.1";

const forwardProperties = {
  protocol: StringEnum(PORT_FORWARD_PROTOCOLS, { description: "tcp or udp." }),
  hostAddress: Type.String({
    minLength: 1,
    maxLength: 45,
    description: `The host address passt listens on: an IPv4 or IPv6 literal (default ${DEFAULT_FORWARD_HOST_ADDRESS}; 0.0.0.0 for every interface).`,
  }),
  hostPort: Type.Integer({ minimum: MIN_FORWARD_HOST_PORT, maximum: 65535, description: "The host's port." }),
  guestPort: Type.Integer({ minimum: 1, maximum: 65535, description: "The guest's port it reaches." }),
};

export const PortForward = Type.Object(forwardProperties, {
  $id: "PortForward",
  additionalProperties: false,
  description:
    "A host port whose connections (tcp) or datagrams (udp) go to a guest port on the VM's NAT card.",
});
export type PortForward = Static<typeof PortForward>;

/** A forward as a request gives it: the host address may be left out. */
export const PortForwardRequest = Type.Object(
  {
    ...forwardProperties,
    hostAddress: Type.Optional(forwardProperties.hostAddress),
    // Typed here, bounded by the hypervisor, whose refusal of a privileged port says why (invalid-forward).
    hostPort: Type.Integer({
      minimum: 1,
      maximum: 65535,
      description: `The host's port, ${MIN_FORWARD_HOST_PORT} to 65535 (a privileged port is refused).`,
    }),
  },
  { $id: "PortForwardRequest", additionalProperties: false },
);
export type PortForwardRequest = Static<typeof PortForwardRequest>;

/** The most forwards one VM has. */
export const MAX_PORT_FORWARDS = 64;

/**
 * Compute Engine's scheduling.onHostMaintenance: what `tsvm host drain` does with the VM (docs/cluster.md).
 * Absent in a record means MIGRATE, the default, so records written before it existed read the same.
 */
export const OnHostMaintenance = Type.Union([Type.Literal("MIGRATE"), Type.Literal("TERMINATE")], {
  description:
    "What a drain of the VM's host does with it: MIGRATE (the default) moves it live to another host, TERMINATE stops it.",
});
export type OnHostMaintenance = Static<typeof OnHostMaintenance>;

/** The properties of a VM's definition, shared by the on-disk record and the API's Instance. */
const vmProperties = {
  formatVersion: Type.Literal(VM_RECORD_FORMAT_VERSION, {
    description: "Version of the VM's definition format on disk.",
  }),
  id: Type.String({
    minLength: 1,
    maxLength: 64,
    description: "Stable unique id (a VM deleted and re-created with the same name gets a new one).",
  }),
  name: Type.String({ pattern: VM_NAME_PATTERN.source }),
  host: Type.Optional(
    Type.String({
      pattern: VM_NAME_PATTERN.source,
      description:
        "In a cluster (docs/cluster.md): the host the VM belongs to, where its files are and its VMM runs. Absent on a single host.",
    }),
  ),
  machineType: Type.String({ minLength: 1, maxLength: 64 }),
  cpus: Type.Integer({ minimum: 1, maximum: 1024 }),
  memoryMiB: Type.Integer({ minimum: 1, maximum: 1 << 30 }),
  diskMiB: Type.Integer({ minimum: 0, maximum: 1 << 30 }),
  image: Type.String({ maxLength: 256 }),
  engine: Type.String({ minLength: 1, maxLength: 64 }),
  automaticRestart: Type.Boolean({
    description:
      "Compute Engine's scheduling.automaticRestart: after a VMM crash, boot again or stay TERMINATED.",
  }),
  onHostMaintenance: Type.Optional(OnHostMaintenance),
  sharedStorage: Type.Optional(
    Type.Boolean({
      description:
        "In a cluster with shared storage (docs/cluster.md): the VM's files are there, so another host restarts it when its host goes DOWN. Absent: in its host's data directory.",
    }),
  ),
  cpuCapPercent: Type.Union([Type.Integer({ minimum: 1, maximum: 100 * 1024 }), Type.Null()], {
    description: "CPU cap in percent of one host core (100 = one full core), or null for no cap.",
  }),
  cpuWeight: Type.Integer({
    minimum: 1,
    maximum: 10000,
    description: "Relative share under contention (cgroup v2 cpu.weight semantics), default 100.",
  }),
  status: InstanceStatus,
  statusMessage: Type.String({
    description: 'The last error or notice a user should see next to the status ("" when none).',
  }),
  creationTimestamp: Time(),
  lastStartTimestamp: NullableTime("null until the VM first started."),
  lastStopTimestamp: NullableTime("null until the VM first stopped."),
  lastSuspendedTimestamp: NullableTime("null until the VM was first suspended."),
  history: Type.Array(TransitionEntry, { maxItems: MAX_HISTORY_ENTRIES }),
};

/**
 * vm.json: one VM's definition, status and the recorded history of its transitions. `identity` is absent
 * in records written before clones existed (guest-identity.ts: identityOf gives theirs);
 * `networkInterfaces` and `forwards` in records written before network cards (issue 10): such a VM has
 * no card and no forward.
 */
export const VmRecord = Type.Object(
  {
    ...vmProperties,
    identity: Type.Optional(GuestIdentity),
    networkInterfaces: Type.Optional(Type.Array(NetworkInterface, { maxItems: MAX_NETWORK_INTERFACES })),
    forwards: Type.Optional(Type.Array(PortForward, { maxItems: MAX_PORT_FORWARDS })),
  },
  { $id: "VmRecord", additionalProperties: false },
);
export type VmRecord = Static<typeof VmRecord>;

export const Instance = Type.Object(
  {
    kind: Type.Literal("tsvm#instance"),
    ...vmProperties,
    identity: GuestIdentity,
    networkInterfaces: Type.Array(NetworkInterface, {
      maxItems: MAX_NETWORK_INTERFACES,
      description: "The VM's network cards in order (eth0 first); [] for none.",
    }),
    forwards: Type.Array(PortForward, { maxItems: MAX_PORT_FORWARDS }),
    vmmPid: Type.Union([Type.Integer(), Type.Null()], { description: "The VMM process id while one runs." }),
  },
  { $id: "Instance", additionalProperties: false },
);
export type Instance = Static<typeof Instance>;

export const UnreachableInstance = Type.Object(
  {
    name: Type.String(),
    code: Type.String({ description: "Why it is unusable, e.g. corrupt-record." }),
    message: Type.String(),
  },
  {
    $id: "UnreachableInstance",
    additionalProperties: false,
    description: "A VM directory whose definition is unusable: shown, and only delete is possible.",
  },
);

export const InstanceList = Type.Object(
  {
    kind: Type.Literal("tsvm#instanceList"),
    items: Type.Array(Instance),
    unreachable: Type.Array(UnreachableInstance),
  },
  { $id: "InstanceList", additionalProperties: false },
);
export type InstanceList = Static<typeof InstanceList>;

/**
 * Sizes and the name are checked by the hypervisor (its errors say which bound, with the reasons
 * invalid-name and invalid-machine-type, also for custom machine types), so the request schema only types
 * them and states the bounds.
 */
export const InsertInstanceRequest = Type.Object(
  {
    name: Type.String({
      maxLength: 256,
      description:
        "The VM's name, an RFC 1035 label: a lowercase letter, then up to 62 lowercase letters, digits or hyphens, not ending in a hyphen.",
    }),
    machineType: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          "A predefined type (see machineTypes) or custom-CPUS-MEMORYMIB. Give either this or cpus/memoryMiB.",
      }),
    ),
    cpus: Type.Optional(
      Type.Integer({ description: `vCPUs, ${VM_LIMITS.minCpus} to ${VM_LIMITS.maxCpus}.` }),
    ),
    memoryMiB: Type.Optional(
      Type.Integer({ description: `Memory in MiB, ${VM_LIMITS.minMemoryMiB} to ${VM_LIMITS.maxMemoryMiB}.` }),
    ),
    image: Type.Optional(
      Type.String({ maxLength: 256, description: "Default: the daemon's default image." }),
    ),
    engine: Type.Optional(
      Type.String({ maxLength: 256, description: "Default: the daemon's default engine." }),
    ),
    automaticRestart: Type.Optional(Type.Boolean({ default: true })),
    onHostMaintenance: Type.Optional(OnHostMaintenance),
    sharedStorage: Type.Optional(
      Type.Boolean({
        description:
          "Keep the VM's files on the cluster's shared storage (docs/cluster.md), so that it restarts on another host when its host goes DOWN. Default false: its host's data directory.",
      }),
    ),
    cpuCapPercent: Type.Optional(
      Type.Union([Type.Integer({ minimum: 1 }), Type.Null()], {
        description: "Percent of one host core, 1 to 100 × cpus; null (the default) for no cap.",
      }),
    ),
    cpuWeight: Type.Optional(
      Type.Integer({
        minimum: 1,
        maximum: 10000,
        default: 100,
        description: "Relative share under contention (cgroup v2 cpu.weight semantics).",
      }),
    ),
    networkInterfaces: Type.Optional(
      Type.Array(
        Type.Object(
          {
            network: Type.String({
              maxLength: 256,
              description: '"nat" or the name of a private network (tsvm network create).',
            }),
          },
          { additionalProperties: false },
        ),
        {
          maxItems: MAX_NETWORK_INTERFACES,
          description: `The VM's cards in order (eth0 first): default one NAT card, [{ "network": "nat" }]; [] for none; at most ${MAX_NETWORK_INTERFACES}, "nat" at most once. Each gets a new MAC. A clone has its source's networks (with new MACs) and leaves this out.`,
        },
      ),
    ),
    forwards: Type.Optional(
      Type.Array(PortForwardRequest, {
        maxItems: MAX_PORT_FORWARDS,
        description:
          "Host ports forwarded to the guest through its NAT card (which it must have). A host port another VM forwards, or any process holds, is refused. Default none; a clone's default is none too (its source's ports are taken).",
      }),
    ),
    sourceInstance: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          "Clone this VM (TERMINATED or SUSPENDED): the new VM shares its disk as it is now (copy-on-write) and gets a new identity; from a SUSPENDED VM it resumes where its source was. Machine type, image and engine are the source's (give none of machineType, cpus, memoryMiB, image, engine); automaticRestart, cpuCapPercent and cpuWeight default to the source's.",
      }),
    ),
    sourceSnapshot: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          "With sourceInstance: clone that VM's snapshot of this name instead of its present disk; from a snapshot with memory the new VM resumes where its source was when it was taken.",
      }),
    ),
    host: Type.Optional(
      Type.String({
        maxLength: 256,
        description:
          "The host to place the VM on (docs/cluster.md); without it the scheduler picks the UP host with the most free memory. A single host is named 'local'.",
      }),
    ),
  },
  { $id: "InsertInstanceRequest", additionalProperties: false },
);
export type InsertInstanceRequest = Static<typeof InsertInstanceRequest>;

export const SetMachineTypeRequest = Type.Object(
  {
    machineType: Type.String({ maxLength: 256, description: "A predefined or custom-CPUS-MEMORYMIB type." }),
  },
  { $id: "SetMachineTypeRequest", additionalProperties: false },
);
export type SetMachineTypeRequest = Static<typeof SetMachineTypeRequest>;

/**
 * A change to a TERMINATED VM's definition (PATCH /v1/instances/{name}): each field given replaces the
 * VM's; fields left out stay as they are.
 */
export const UpdateInstanceRequest = Type.Object(
  {
    forwards: Type.Optional(
      Type.Array(PortForwardRequest, {
        maxItems: MAX_PORT_FORWARDS,
        description: "The VM's new list of port forwards ([] removes them all).",
      }),
    ),
  },
  { $id: "UpdateInstanceRequest", additionalProperties: false },
);
export type UpdateInstanceRequest = Static<typeof UpdateInstanceRequest>;

export const MachineType = Type.Object(
  {
    name: Type.String(),
    cpus: Type.Integer({ minimum: VM_LIMITS.minCpus, maximum: VM_LIMITS.maxCpus }),
    memoryMiB: Type.Integer({ minimum: VM_LIMITS.minMemoryMiB, maximum: VM_LIMITS.maxMemoryMiB }),
    description: Type.String(),
  },
  { $id: "MachineType", additionalProperties: false },
);
export type MachineType = Static<typeof MachineType>;

export const MachineTypeList = Type.Object(
  { kind: Type.Literal("tsvm#machineTypeList"), items: Type.Array(MachineType) },
  { $id: "MachineTypeList", additionalProperties: false },
);
export type MachineTypeList = Static<typeof MachineTypeList>;
