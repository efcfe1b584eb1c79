// A cluster's event log in etcd (docs/cluster.md "Events"): every host publishes its own VMs' events under
// `<prefix>events/<seq>`, numbered from one counter (`<prefix>events-seq`) by compare-and-swap, so the numbers
// are the cluster's, contiguous and the same on every host; every host follows the prefix with a watch and
// serves the whole cluster's events from memory, as a single daemon serves its own. While etcd is away a
// host keeps its new events queued and publishes them when etcd returns; etcd keeps the newest 10,000.

import { Range } from "etcd3";
import { VmEvent } from "../../api/schemas/event-schemas.ts";
import { schemaCheck } from "../../api/schemas/schema-check.ts";
import { EventLog, MAX_KEPT_EVENTS, type VmEventSource } from "../event-log.ts";
import type { ControlPlane } from "./control-plane.ts";

/** Events published in one transaction. */
const PUBLISH_BATCH = 100;
/** Wait before publishing again after etcd could not be reached. */
const RETRY_MS = 1000;
/** An event is a few hundred bytes; a bigger value is not one and is not parsed. */
const MAX_EVENT_BYTES = 16 * 1024;

const checkEvent = schemaCheck(VmEvent);

/** A sequence number as an etcd key: zero-padded, so that keys sort as numbers do. */
function seqKey(seq: number): string {
  return String(seq).padStart(16, "0");
}

export class EtcdEventLog {
  /** The cluster's events as this host has seen them: what the API lists and follows. */
  readonly log = new EventLog();
  /** This host's events not yet in etcd, oldest first (dropped from the front past MAX_KEPT_EVENTS). */
  private readonly queue: Array<Omit<VmEvent, "seq">> = [];
  private publishing: Promise<void> | undefined;
  private retryTimer: NodeJS.Timeout | undefined;
  private closed = false;
  private unsubscribe: () => void = () => {};
  private watcher: { cancel(): Promise<void> } | undefined;

  private constructor(
    private readonly plane: ControlPlane,
    private readonly report: (line: string) => void,
  ) {}

  /**
   * Reads the newest events from etcd, follows the rest, and from now on publishes the events `local`
   * appends after `after` (the events a daemon replays from its VMs' histories at start are in etcd already).
   */
  static async open(
    plane: ControlPlane,
    local: VmEventSource,
    after: number,
    report: (line: string) => void,
  ): Promise<EtcdEventLog> {
    const events = new EtcdEventLog(plane, report);
    const prefix = plane.key("events/");
    const newest = await plane.call("read the cluster's events", (c) =>
      c.getAll().prefix(prefix).sort("Key", "Descend").limit(MAX_KEPT_EVENTS).exec(),
    );
    for (const kv of [...newest.kvs].reverse()) events.take(kv.key, kv.value);
    const watcher = await plane.call("follow the cluster's events", (c) =>
      c
        .watch()
        .prefix(prefix)
        .startRevision(String(Number(newest.header.revision) + 1))
        .create(),
    );
    watcher.on("put", (kv) => events.take(kv.key, kv.value));
    // etcd3 reconnects by itself and resumes at the revision it had reached.
    watcher.on("error", (e) => report(`following the cluster's events: ${(e as Error).message}`));
    events.watcher = watcher;
    for (const e of local.since(after, Number.MAX_SAFE_INTEGER)) events.enqueue(e);
    events.unsubscribe = local.subscribe((e) => events.enqueue(e));
    events.publish();
    return events;
  }

  /** Events of this host not yet in etcd. */
  get pending(): number {
    return this.queue.length;
  }

  /** Stops following and publishing; a transaction under way is waited for. */
  async close(): Promise<void> {
    this.closed = true;
    this.unsubscribe();
    clearTimeout(this.retryTimer);
    await this.publishing;
    await this.watcher?.cancel();
  }

  private take(key: Buffer, value: Buffer): void {
    const name = key.toString().slice(this.plane.key("events/").length);
    if (!/^\d{16}$/.test(name) || value.length > MAX_EVENT_BYTES) return;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value.toString("utf8"));
    } catch {
      parsed = undefined;
    }
    const checked = checkEvent(parsed);
    if (!checked.ok || checked.value.seq !== Number(name)) {
      this.report(
        `ignoring a value under the cluster's events that is not an event (etcd key ${key.toString()})`,
      );
      return;
    }
    this.log.adopt(checked.value);
  }

  private enqueue(event: VmEvent): void {
    const { seq: _, ...unnumbered } = event;
    this.queue.push(unnumbered);
    if (this.queue.length > MAX_KEPT_EVENTS) {
      this.queue.splice(0, this.queue.length - MAX_KEPT_EVENTS);
      // The VMs' histories keep the transitions; only the cluster's stream lacks these.
      this.report("etcd has been away for long: the oldest unpublished events of this host were dropped");
    }
    this.publish();
  }

  /** Publishes the queue in batches until it is empty; one run at a time, retried while etcd is away. */
  private publish(): void {
    if (this.publishing || this.closed || this.queue.length === 0 || this.retryTimer) return;
    this.publishing = this.publishBatch().then(
      () => {
        this.publishing = undefined;
        this.publish();
      },
      (e) => {
        this.publishing = undefined;
        if ((e as { code?: string }).code !== "control-plane-unavailable")
          this.report(`publishing events: ${(e as Error).message}`);
        this.retryTimer = setTimeout(() => {
          this.retryTimer = undefined;
          this.publish();
        }, RETRY_MS);
        this.retryTimer.unref();
      },
    );
  }

  /** One transaction: numbers the next events from the counter, stores them, trims the oldest. */
  private async publishBatch(): Promise<void> {
    const counterKey = this.plane.key("events-seq");
    const batch = this.queue.slice(0, PUBLISH_BATCH);
    for (;;) {
      const counter = await this.plane.call("number the cluster's events", (c) => c.get(counterKey).exec());
      const kv = counter.kvs[0];
      const last = kv ? Number(kv.value.toString()) : 0;
      const revision = kv ? kv.mod_revision : "0";
      const puts = batch.map((e, i) => {
        const seq = last + 1 + i;
        return { key: this.plane.key(`events/${seqKey(seq)}`), value: JSON.stringify({ seq, ...e }) };
      });
      const newest = last + batch.length;
      const result = await this.plane.call("publish events", (c) =>
        c
          .if(counterKey, "Mod", "==", revision)
          .then(
            c.put(counterKey).value(String(newest)),
            ...puts.map((p) => c.put(p.key).value(p.value)),
            c
              .delete()
              .range(
                new Range(
                  this.plane.key(`events/${seqKey(0)}`),
                  this.plane.key(`events/${seqKey(Math.max(0, newest - MAX_KEPT_EVENTS + 1))}`),
                ),
              ),
          )
          .commit(),
      );
      if (result.succeeded) {
        this.queue.splice(0, batch.length);
        return;
      }
      // Another host numbered events in between: read the counter again.
    }
  }
}
