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
] as const;
export type OperationType = (typeof OPERATION_TYPES)[number];

export const OPERATION_STATUSES = ["PENDING", "RUNNING", "DONE"] as const;
export type OperationStatus = (typeof OPERATION_STATUSES)[number];

const Time = () => Type.String({ format: "date-time", maxLength: 40 });

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
  },
  { $id: "Operation", additionalProperties: false },
);
export type Operation = Static<typeof Operation>;

export const OperationList = Type.Object(
  { kind: Type.Literal("tsvm#operationList"), items: Type.Array(Operation) },
  { $id: "OperationList", additionalProperties: false },
);
export type OperationList = Static<typeof OperationList>;
