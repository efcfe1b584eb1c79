// The shapes of a VM's snapshots: the tree as the hypervisor persists it (vms/<name>/snapshots.json), as the
// API shows it (a snapshots collection under the instance, in Compute Engine's style), and the request that
// creates one.

import { type Static, Type } from "@sinclair/typebox";
import { VM_NAME_PATTERN } from "./vm-schemas.ts";

export const SNAPSHOTS_MAGIC = "tsvm-snapshots";
export const SNAPSHOTS_FORMAT_VERSION = 1;
/** Snapshot names follow VM names (RFC 1035 labels): also safe as a directory name. */
export const SNAPSHOT_NAME_PATTERN = VM_NAME_PATTERN;
export const MAX_SNAPSHOT_DESCRIPTION = 2048;
/** Snapshots of one VM (each adds a layer to its disk's chain, which may be at most 64 deep). */
export const MAX_SNAPSHOTS = 50;

const Time = () => Type.String({ format: "date-time", maxLength: 40 });
const Name = () => Type.String({ pattern: SNAPSHOT_NAME_PATTERN.source, maxLength: 63 });
const Id = () => Type.String({ pattern: "^[a-f0-9]{16}$" });

/** One snapshot in snapshots.json. */
export const SnapshotEntry = Type.Object(
  {
    id: Id(),
    name: Name(),
    parentId: Type.Union([Id(), Type.Null()], {
      description: "The snapshot the VM was at (last taken or restored) when this one was taken.",
    }),
    description: Type.String({ maxLength: MAX_SNAPSHOT_DESCRIPTION }),
    creationTimestamp: Time(),
    diskNode: Type.String({
      pattern: "^[a-z0-9-]{1,80}$",
      description: "The frozen disk node (disks/<id>.qcow2) holding the VM's disk at that moment.",
    }),
    memory: Type.Boolean({ description: "Whether snapshots/<id>/state holds the guest's memory." }),
    vmStatus: Type.String({ description: "The VM's status when taken (RUNNING, SUSPENDED, TERMINATED)." }),
    machineType: Type.String({ minLength: 1, maxLength: 64 }),
    cpus: Type.Integer({ minimum: 1, maximum: 1024 }),
    memoryMiB: Type.Integer({ minimum: 1, maximum: 1 << 30 }),
  },
  { $id: "SnapshotEntry", additionalProperties: false },
);
export type SnapshotEntry = Static<typeof SnapshotEntry>;

/** vms/<name>/snapshots.json. */
export const SnapshotsFile = Type.Object(
  {
    magic: Type.Literal(SNAPSHOTS_MAGIC),
    formatVersion: Type.Literal(SNAPSHOTS_FORMAT_VERSION),
    vmId: Type.String({ minLength: 1, maxLength: 64 }),
    currentId: Type.Union([Id(), Type.Null()], {
      description: "The snapshot the VM's disk descends from: the last taken or restored (null: none).",
    }),
    snapshots: Type.Array(SnapshotEntry, { maxItems: MAX_SNAPSHOTS }),
  },
  { $id: "SnapshotsFile", additionalProperties: false },
);
export type SnapshotsFile = Static<typeof SnapshotsFile>;

export const Snapshot = Type.Object(
  {
    kind: Type.Literal("tsvm#snapshot"),
    name: Name(),
    id: Id(),
    instance: Type.String({ description: "The VM the snapshot belongs to." }),
    parent: Type.Union([Name(), Type.Null()], {
      description: "The snapshot the VM was at when this one was taken (null: the tree's root).",
    }),
    current: Type.Boolean({ description: "The VM's disk descends from it (the last taken or restored)." }),
    description: Type.String(),
    creationTimestamp: Time(),
    memory: Type.Boolean({
      description: "Holds the guest's memory: a restore resumes its processes (else it restores the disk).",
    }),
    vmStatus: Type.String({ description: "The VM's status when taken." }),
    machineType: Type.String(),
    diskSizeBytes: Type.Integer({ minimum: 0, description: "Space its own disk layer takes on disk." }),
    memorySizeBytes: Type.Integer({ minimum: 0, description: "Space its saved memory takes on disk." }),
  },
  { $id: "Snapshot", additionalProperties: false },
);
export type Snapshot = Static<typeof Snapshot>;

export const SnapshotList = Type.Object(
  { kind: Type.Literal("tsvm#snapshotList"), items: Type.Array(Snapshot) },
  { $id: "SnapshotList", additionalProperties: false },
);
export type SnapshotList = Static<typeof SnapshotList>;

export const InsertSnapshotRequest = Type.Object(
  {
    name: Type.String({
      maxLength: 256,
      description: "The snapshot's name, unique within its VM: an RFC 1035 label, as VM names.",
    }),
    description: Type.Optional(Type.String({ maxLength: MAX_SNAPSHOT_DESCRIPTION })),
  },
  { $id: "InsertSnapshotRequest", additionalProperties: false },
);
export type InsertSnapshotRequest = Static<typeof InsertSnapshotRequest>;
