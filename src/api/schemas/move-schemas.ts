// The shapes of moving a VM between the hosts of a cluster (docs/cluster.md, "Moving VMs"): the user's
// request, and the answer of the host that takes the VM in.

import { type Static, Type } from "@sinclair/typebox";

export const MoveInstanceRequest = Type.Object(
  {
    host: Type.String({
      minLength: 1,
      maxLength: 63,
      description: "The host of the cluster the VM moves to.",
    }),
  },
  { $id: "MoveInstanceRequest", additionalProperties: false },
);
export type MoveInstanceRequest = Static<typeof MoveInstanceRequest>;

export const MoveInResult = Type.Object(
  {
    kind: Type.Literal("tsvm#moveIn"),
    resumed: Type.Boolean({
      description: "Whether the VM runs again here (it was RUNNING on its old host).",
    }),
    resumeMs: Type.Integer({ minimum: 0, description: "How long the resume here took (0 when not asked)." }),
    resumeError: Type.Union([Type.String(), Type.Null()], {
      description: "Why resuming it failed (the VM is SUSPENDED here, its state kept); null otherwise.",
    }),
  },
  { $id: "MoveInResult", additionalProperties: false },
);
export type MoveInResult = Static<typeof MoveInResult>;

export const LiveMoveInResult = Type.Object(
  {
    kind: Type.Literal("tsvm#liveMoveIn"),
    port: Type.Integer({
      minimum: 1,
      maximum: 65535,
      description: "The TCP port where the VMM waits for the guest's live migration stream.",
    }),
    ticket: Type.String({
      description: 'The one-time secret the stream\'s HELLO must carry (docs/cluster.md "Live migration").',
    }),
  },
  { $id: "LiveMoveInResult", additionalProperties: false },
);
export type LiveMoveInResult = Static<typeof LiveMoveInResult>;
