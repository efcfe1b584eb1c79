// A host's operations journaled in etcd, one key per operation (`<prefix>operations/<host>/<id>`), so that
// a host that restarts knows every operation it ran, as the file journal in the data directory does.

import {
  inCreationOrder,
  OPERATION_ID_PATTERN,
  type OpenedJournal,
  type OperationJournal,
  type OperationView,
  parseOperationView,
} from "../operations.ts";
import type { ControlPlane } from "./control-plane.ts";

/** An operation record is a few hundred bytes; a bigger value is not one of ours and is not parsed. */
const MAX_OPERATION_BYTES = 64 * 1024;

export class EtcdOperationJournal implements OperationJournal {
  private constructor(
    private readonly plane: ControlPlane,
    private readonly prefix: string,
  ) {}

  /** Reads every operation record of `host`; a value that is not one is reported and left as it is. */
  static async open(plane: ControlPlane, host: string): Promise<OpenedJournal> {
    const prefix = plane.key(`operations/${host}/`);
    const journal = new EtcdOperationJournal(plane, prefix);
    const response = await plane.call(`read the operations of host '${host}'`, (c) =>
      c.getAll().prefix(prefix).exec(),
    );
    const views: OperationView[] = [];
    const unreadable: string[] = [];
    for (const kv of response.kvs) {
      const key = kv.key.toString();
      const id = key.slice(prefix.length);
      if (!OPERATION_ID_PATTERN.test(id)) continue;
      try {
        if (kv.value.length > MAX_OPERATION_BYTES) throw new Error("too large");
        views.push(parseOperationView(JSON.parse(kv.value.toString("utf8")), id));
      } catch (e) {
        unreadable.push(`etcd key ${key}: ${(e as Error).message}`);
      }
    }
    return { journal, views: inCreationOrder(views), unreadable };
  }

  async save(view: OperationView): Promise<void> {
    await this.plane.call(`record operation ${view.id}`, (c) =>
      c
        .put(`${this.prefix}${view.id}`)
        .value(`${JSON.stringify(view)}\n`)
        .exec(),
    );
  }

  async remove(id: string): Promise<void> {
    await this.plane.call(`forget operation ${id}`, (c) => c.delete().key(`${this.prefix}${id}`).exec());
  }
}
