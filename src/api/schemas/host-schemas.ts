// The shapes of a cluster's hosts (docs/cluster.md): the record each host keeps in etcd while it is a
// member, and the hosts collection of the API (/v1/hosts), which adds liveness and what the host's VMs use.

import { type Static, Type } from "@sinclair/typebox";
import { VM_NAME_PATTERN } from "./vm-schemas.ts";

export const HOST_RECORD_FORMAT_VERSION = 1;
/** Host names are RFC 1035 labels, as VM names are. */
export const HOST_NAME_PATTERN = VM_NAME_PATTERN;

const Name = () => Type.String({ pattern: HOST_NAME_PATTERN.source, maxLength: 63 });
const Time = () => Type.String({ format: "date-time", maxLength: 40 });
const Resources = (what: string) =>
  Type.Object(
    {
      vcpus: Type.Integer({ minimum: 0, description: `vCPUs ${what}.` }),
      memoryMiB: Type.Integer({ minimum: 0, description: `Memory ${what}, in MiB.` }),
    },
    { additionalProperties: false },
  );

/** `<prefix>hosts/<name>` in etcd: written at each join, kept after the host leaves (then it shows DOWN). */
export const HostRecord = Type.Object(
  {
    formatVersion: Type.Literal(HOST_RECORD_FORMAT_VERSION),
    name: Name(),
    address: Type.String({
      maxLength: 200,
      description: "The host's API, http://ADDRESS:PORT, where other hosts forward requests for its VMs.",
    }),
    capacity: Resources("the host may give to VMs (after overcommit and reserve)"),
    draining: Type.Boolean({ description: "Set by a drain: the host takes no new VMs." }),
    sharedStorage: Type.Optional(
      Type.Boolean({
        description:
          "The host sees the cluster's shared storage (--shared-storage): a DOWN host's VMs there may restart on it.",
      }),
    ),
    joinedAt: Time(),
  },
  { $id: "HostRecord", additionalProperties: false },
);
export type HostRecord = Static<typeof HostRecord>;

export const HostStatus = Type.Union([Type.Literal("UP"), Type.Literal("DRAINING"), Type.Literal("DOWN")], {
  description: "UP: its lease is alive; DRAINING: alive, taking no new VMs; DOWN: its lease expired.",
});
export type HostStatus = Static<typeof HostStatus>;

export const ClusterHost = Type.Object(
  {
    kind: Type.Literal("tsvm#clusterHost"),
    name: Name(),
    status: HostStatus,
    address: Type.String({ maxLength: 200 }),
    capacity: Resources("the host may give to VMs"),
    used: Resources("taken by the host's VMs that hold resources (not TERMINATED or SUSPENDED)"),
    vms: Type.Array(Name(), { description: "The names of the host's VMs." }),
    sharedStorage: Type.Boolean({
      description:
        "Whether the host sees the cluster's shared storage (a DOWN host's VMs there may restart on it).",
    }),
    joinedAt: Time(),
  },
  { $id: "ClusterHost", additionalProperties: false },
);
export type ClusterHost = Static<typeof ClusterHost>;

export const ClusterHostList = Type.Object(
  { kind: Type.Literal("tsvm#hostList"), items: Type.Array(ClusterHost) },
  { $id: "ClusterHostList", additionalProperties: false },
);
export type ClusterHostList = Static<typeof ClusterHostList>;

export const HostDrainResult = Type.Object(
  {
    kind: Type.Literal("tsvm#hostDrain"),
    host: ClusterHost,
    stopped: Type.Array(Name(), {
      description: "VMs with onHostMaintenance TERMINATE that the drain stopped.",
    }),
    moved: Type.Array(Type.Object({ name: Name(), to: Name() }, { additionalProperties: false }), {
      description: "VMs with onHostMaintenance MIGRATE moved to another host, and where.",
    }),
    remaining: Type.Array(
      Type.Object(
        { name: Name(), reason: Type.String({ maxLength: 1000 }) },
        { additionalProperties: false },
      ),
      { description: "VMs still on the host that hold resources, each with why the drain left it." },
    ),
  },
  { $id: "HostDrainResult", additionalProperties: false },
);
export type HostDrainResult = Static<typeof HostDrainResult>;
