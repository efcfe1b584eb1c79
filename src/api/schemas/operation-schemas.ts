// The shape of an operation (Compute Engine's zoneOperations): what the hypervisor journals and the API
// answers for every long-running request.

import { type Static, Type } from "@sinclair/typebox";
import { StringEnum } from "./string-enum.ts";

export const OPERATION_TYPES = [
  "insert",
  "start",
  "stop",
  "reset",
  "suspend",
  "resume",
  "delete",
  "setMachineType",
  "update",
  "repair",
  "createSnapshot",
  "restoreSnapshot",
  "deleteSnapshot",
  "insertNetwork",
  "deleteNetwork",
  "move",
] as const;
export type OperationType = (typeof OPERATION_TYPES)[number];

export const OPERATION_STATUSES = ["PENDING", "RUNNING", "DONE"] as const;
export type OperationStatus = (typeof OPERATION_STATUSES)[number];

const Time = () => Type.String({ format: "date-time", maxLength: 40 });

/** What a move of a VM to another host took (docs/cluster.md, "Moving VMs"). */
export const MigrationReport = Type.Object(
  {
    from: Type.String({ maxLength: 63, description: "The host the VM left." }),
    to: Type.String({ maxLength: 63, description: "The host the VM is on now." }),
    totalMs: Type.Integer({
      minimum: 0,
      description: "From the move's start to the VM in place (and running again) on the new host.",
    }),
    downtimeMs: Type.Integer({
      minimum: 0,
      description: "How long a RUNNING VM's guest did not run (0 for a VM at rest).",
    }),
    rounds: Type.Integer({
      minimum: 0,
      description:
        "Rounds of the guest's memory written while it ran on, before it stopped: into its saved state on the old host, sent after the stop (0: all of it written while stopped).",
    }),
    bytes: Type.Integer({
      minimum: 0,
      description: "Bytes sent to the new host (disk, saved state, definition).",
    }),
  },
  { $id: "MigrationReport", additionalProperties: false },
);
export type MigrationReport = Static<typeof MigrationReport>;

export const Operation = Type.Object(
  {
    kind: Type.Literal("tsvm#operation"),
    id: Type.String({ maxLength: 100 }),
    operationType: StringEnum(OPERATION_TYPES),
    targetName: Type.String({
      maxLength: 63,
      description: "The VM (or, for insertNetwork and deleteNetwork, the network) the operation acts on.",
    }),
    status: StringEnum(OPERATION_STATUSES),
    progress: Type.Integer({ minimum: 0, maximum: 100, description: "Informational, as on Compute Engine." }),
    statusMessage: Type.String(),
    insertTime: Time(),
    startTime: Type.Union([Time(), Type.Null()]),
    endTime: Type.Union([Time(), Type.Null()]),
    error: Type.Union(
      [
        Type.Object(
          {
            code: Type.String({ description: "An error code of the table in docs/hypervisor.md." }),
            message: Type.String(),
          },
          { additionalProperties: false },
        ),
        Type.Null(),
      ],
      { description: "Set when the operation failed." },
    ),
    migration: Type.Optional(MigrationReport),
  },
  { $id: "Operation", additionalProperties: false },
);
export type Operation = Static<typeof Operation>;

export const OperationList = Type.Object(
  { kind: Type.Literal("tsvm#operationList"), items: Type.Array(Operation) },
  { $id: "OperationList", additionalProperties: false },
);
export type OperationList = Static<typeof OperationList>;
