// The shapes of private networks: the record the hypervisor keeps ($TSVM_HOME/networks/<name>/network.json),
// the members file its switch reads beside it, and the networks collection of the API (Compute Engine's
// networks, reduced to one IPv4 subnet each).

import { type Static, Type } from "@sinclair/typebox";
import { VM_NAME_PATTERN } from "./vm-schemas.ts";

export const NETWORK_MAGIC = "tsvm-network";
export const NETWORK_FORMAT_VERSION = 1;
export const MEMBERS_MAGIC = "tsvm-network-members";
export const MEMBERS_FORMAT_VERSION = 1;
/** Network names follow VM names (RFC 1035 labels): also safe as a directory name and a host name. */
export const NETWORK_NAME_PATTERN = VM_NAME_PATTERN;
/** A network's members: every card of every VM on it (a VM has at most 4 cards). */
export const MAX_NETWORK_MEMBERS = 1024;

const Time = () => Type.String({ format: "date-time", maxLength: 40 });
const Name = () => Type.String({ pattern: NETWORK_NAME_PATTERN.source, maxLength: 63 });
const Cidr = () =>
  Type.String({
    pattern: "^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}/\\d{1,2}$",
    maxLength: 18,
    description: "An IPv4 private-range subnet, /16 to /29, e.g. 10.77.0.0/24",
  });
const Ipv4 = () => Type.String({ pattern: "^\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}\\.\\d{1,3}$", maxLength: 15 });
const Mac = () => Type.String({ pattern: "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$" });

/** networks/<name>/network.json. */
export const NetworkRecord = Type.Object(
  {
    magic: Type.Literal(NETWORK_MAGIC),
    formatVersion: Type.Literal(NETWORK_FORMAT_VERSION),
    id: Type.String({ pattern: "^[a-f0-9]{16}$" }),
    name: Name(),
    subnet: Cidr(),
    createdAt: Time(),
  },
  { $id: "NetworkRecord", additionalProperties: false },
);
export type NetworkRecord = Static<typeof NetworkRecord>;

/** One card on the network, as its switch admits it and its DHCP answers it. */
export const NetworkMember = Type.Object(
  {
    vmId: Type.String({ pattern: "^[A-Za-z0-9-]{1,64}$" }),
    vmName: Name(),
    mac: Mac(),
    ipv4: Ipv4(),
  },
  { $id: "NetworkMember", additionalProperties: false },
);
export type NetworkMember = Static<typeof NetworkMember>;

/** networks/<name>/members.json: written by the hypervisor, read by the switch. */
export const NetworkMembersFile = Type.Object(
  {
    magic: Type.Literal(MEMBERS_MAGIC),
    formatVersion: Type.Literal(MEMBERS_FORMAT_VERSION),
    subnet: Cidr(),
    members: Type.Array(NetworkMember, { maxItems: MAX_NETWORK_MEMBERS }),
  },
  { $id: "NetworkMembersFile", additionalProperties: false },
);
export type NetworkMembersFile = Static<typeof NetworkMembersFile>;

/** What the switch counts for one connected card (its stats file). */
export const SwitchPortStats = Type.Object(
  {
    vmName: Name(),
    mac: Mac(),
    rxFrames: Type.Integer({ minimum: 0, description: "Frames the card sent into the switch." }),
    txFrames: Type.Integer({ minimum: 0, description: "Frames the switch delivered to the card." }),
    forgedDropped: Type.Integer({ minimum: 0, description: "Frames dropped for a source MAC not its own." }),
    floodDropped: Type.Integer({ minimum: 0, description: "Broadcasts dropped by its rate limit." }),
    queueDropped: Type.Integer({ minimum: 0, description: "Frames for it dropped: its queue was full." }),
    unknownDropped: Type.Integer({ minimum: 0, description: "Unicasts to no card of the network." }),
    invalidDropped: Type.Integer({
      minimum: 0,
      description: "Frames shorter than 14 or longer than 1514 bytes.",
    }),
  },
  { $id: "SwitchPortStats", additionalProperties: false },
);
export type SwitchPortStats = Static<typeof SwitchPortStats>;

export const Network = Type.Object(
  {
    kind: Type.Literal("tsvm#network"),
    id: Type.String(),
    name: Name(),
    subnet: Cidr(),
    gatewayAddress: Type.String({ description: "The switch's own address (.1): DHCP and ARP, no routing." }),
    creationTimestamp: Time(),
    members: Type.Array(
      Type.Object({ instance: Name(), mac: Mac(), ipv4: Ipv4() }, { additionalProperties: false }),
      { description: "Every card on the network (of VMs in any status)." },
    ),
    switchRunning: Type.Boolean({ description: "Whether its switch process runs now." }),
    ports: Type.Array(SwitchPortStats, { description: "The switch's connected cards and their counters." }),
  },
  { $id: "Network", additionalProperties: false },
);
export type Network = Static<typeof Network>;

export const NetworkList = Type.Object(
  { kind: Type.Literal("tsvm#networkList"), items: Type.Array(Network) },
  { $id: "NetworkList", additionalProperties: false },
);
export type NetworkList = Static<typeof NetworkList>;

export const InsertNetworkRequest = Type.Object(
  {
    name: Type.String({ maxLength: 200 }),
    subnet: Type.Optional(
      Type.String({
        maxLength: 40,
        description: "An IPv4 private-range CIDR, /16 to /29 (default: a free /24 in 10.77.0.0-10.99.255.0)",
      }),
    ),
  },
  { $id: "InsertNetworkRequest", additionalProperties: false },
);
export type InsertNetworkRequest = Static<typeof InsertNetworkRequest>;
