// The event stream (GET /v1/events?watch=true): VmEvent lines as NDJSON, following new events, with
// back-pressure: while the client is behind, nothing more is queued for it; once it has caught up, the
// events it has not seen are read from the daemon's event log. Only events that left the log while the
// client lagged (it keeps the last 10,000) are lost, and a `{"dropped": N}` line says how many.

import type { ServerResponse } from "node:http";
import type { VmEvent, VmEventSource } from "../../hypervisor/event-log.ts";

/** Event lines queued for one client past which no more are written until it drains. */
export const EVENT_STREAM_HIGH_WATER_BYTES = 64 * 1024;
/** Events read from the log at a time while catching up. */
const CATCH_UP_BATCH = 500;

/**
 * Streams the events after `after` (of instance `vm` when given) to `res`, then new ones as they come,
 * until the response closes. The head must be written already.
 */
export function followEvents(res: ServerResponse, events: VmEventSource, after: number, vm?: string): void {
  /**
   * The newest sequence number the client has been sent (or that was not its to receive). Events older
   * than the log's window when the stream begins are simply not there, as for a plain list.
   */
  let sent = Math.max(after, events.firstSeq - 1);
  let waiting = false;
  const write = (line: string): void => {
    res.write(line);
    if (res.writableLength >= EVENT_STREAM_HIGH_WATER_BYTES && !waiting) {
      waiting = true;
      res.once("drain", () => {
        waiting = false;
        catchUp();
      });
    }
  };
  const catchUp = (): void => {
    while (!waiting && !res.destroyed) {
      const first = events.firstSeq;
      if (first > sent + 1) {
        // The client fell so far behind that the log let go of events it was owed.
        write(`${JSON.stringify({ dropped: first - 1 - sent })}\n`);
        sent = first - 1;
      }
      const batch = events.since(sent, CATCH_UP_BATCH, vm);
      for (const e of batch) {
        write(`${JSON.stringify(e)}\n`);
        sent = e.seq;
        if (waiting) return;
      }
      if (batch.length < CATCH_UP_BATCH) {
        // Caught up: events of other instances up to the newest are not the client's to receive.
        sent = Math.max(sent, events.lastSeq);
        return;
      }
    }
  };
  const onEvent = (e: VmEvent): void => {
    if (waiting || res.destroyed) return; // read from the log once the client has drained
    if (e.seq !== sent + 1) catchUp();
    else {
      sent = e.seq;
      if (vm === undefined || e.vmName === vm) write(`${JSON.stringify(e)}\n`);
    }
  };
  const unsubscribe = events.subscribe(onEvent);
  res.on("close", unsubscribe);
  catchUp();
}
