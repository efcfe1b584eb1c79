// The shape of a VM event (a transition, reset, deletion or notice) with its sequence number, as the
// hypervisor's event log keeps it and the API lists and streams it.

import { type Static, Type } from "@sinclair/typebox";
import { StringEnum } from "./string-enum.ts";
import { InstanceStatus } from "./vm-schemas.ts";

export const VM_EVENT_TYPES = ["transition", "reset", "deleted", "notice"] as const;

export const VmEvent = Type.Object(
  {
    seq: Type.Integer({
      minimum: 1,
      description:
        "Increases by one per event. On a single host, within a daemon's life (a restarted daemon's new events start above the replayed history); in a cluster, the cluster's number, the same on every host.",
    }),
    time: Type.String({ format: "date-time", maxLength: 40 }),
    type: StringEnum(VM_EVENT_TYPES),
    vmName: Type.String(),
    vmId: Type.String({ description: "Empty for a VM deleted while its definition was unusable." }),
    from: Type.Union([InstanceStatus, Type.Null()]),
    to: Type.Union([InstanceStatus, Type.Null()]),
    message: Type.String(),
  },
  { $id: "VmEvent", additionalProperties: false },
);
export type VmEvent = Static<typeof VmEvent>;

export const EventList = Type.Object(
  {
    kind: Type.Literal("tsvm#eventList"),
    items: Type.Array(VmEvent),
    lastSeq: Type.Integer({
      minimum: 0,
      description: "The newest sequence number; pass it as `after` to get only later events.",
    }),
  },
  { $id: "EventList", additionalProperties: false },
);
export type EventList = Static<typeof EventList>;

export const EventStreamGap = Type.Object(
  { dropped: Type.Integer({ minimum: 1 }) },
  {
    $id: "EventStreamGap",
    additionalProperties: false,
    description:
      "A line of the watched event stream: this many events (of any instance) were lost at this point, because the client fell further behind than the daemon keeps events.",
  },
);
export type EventStreamGap = Static<typeof EventStreamGap>;

/** One line of the watched (NDJSON) event stream. */
export const EventStreamLine = Type.Union([VmEvent, EventStreamGap], {
  $id: "EventStreamLine",
  description: "A line of the watched event stream: an event, or a gap of lost events.",
});
export type EventStreamLine = Static<typeof EventStreamLine>;
