// The stream of VM events (transitions, resets, creations, deletions) with sequence numbers, so that a
// watcher can ask for everything after the last event it saw and then follow new ones.

import type { VmEvent } from "../api/schemas/event-schemas.ts";

export type { VmEvent };

/** Events kept in memory for `since` queries; the VM histories in vm.json are the durable record. */
export const MAX_KEPT_EVENTS = 10000;

/** What the API reads and follows: this daemon's log, or a cluster's (cluster/etcd-event-log.ts). */
export type VmEventSource = Pick<EventLog, "since" | "lastSeq" | "firstSeq" | "subscribe">;

export class EventLog implements VmEventSource {
  private readonly events: VmEvent[] = [];
  private nextSeq = 1;
  private readonly listeners = new Set<(e: VmEvent) => void>();

  append(event: Omit<VmEvent, "seq">): VmEvent {
    const e: VmEvent = { seq: this.nextSeq, ...event };
    this.adopt(e);
    return e;
  }

  /**
   * Keeps an event numbered elsewhere (a cluster's log, where etcd orders them). Numbers only go up: one not
   * above the last is already kept and is ignored; one further above left a gap, as events that were trimmed.
   */
  adopt(event: VmEvent): void {
    if (event.seq < this.nextSeq) return;
    this.nextSeq = event.seq + 1;
    this.events.push(event);
    if (this.events.length > MAX_KEPT_EVENTS) this.events.splice(0, this.events.length - MAX_KEPT_EVENTS);
    for (const listener of this.listeners) listener(event);
  }

  /** Events with seq > `after`, oldest first, at most `limit`; optionally of one VM. */
  since(after: number, limit = 1000, vmName?: string): VmEvent[] {
    const out: VmEvent[] = [];
    for (const e of this.events) {
      if (e.seq <= after || (vmName !== undefined && e.vmName !== vmName)) continue;
      out.push(e);
      if (out.length >= limit) break;
    }
    return out;
  }

  get lastSeq(): number {
    return this.nextSeq - 1;
  }

  /** The sequence number of the oldest event kept (lastSeq + 1 when none is). */
  get firstSeq(): number {
    return this.events[0]?.seq ?? this.nextSeq;
  }

  /** Calls `listener` for each new event until the returned function is called. */
  subscribe(listener: (e: VmEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
}
