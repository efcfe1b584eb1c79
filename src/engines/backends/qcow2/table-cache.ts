// A bounded least-recently-used cache of metadata tables (L2 tables, refcount blocks) keyed by their offset
// in the file, so steady-state I/O finds its table in memory and memory stays bounded on any disk size.

export class TableCache {
  private readonly tables = new Map<number, Uint8Array>();

  constructor(private readonly capacity: number) {}

  get(offset: number): Uint8Array | undefined {
    const t = this.tables.get(offset);
    if (t !== undefined && this.tables.size > 1) {
      // Map iteration order is insertion order: re-inserting makes this the most recently used.
      this.tables.delete(offset);
      this.tables.set(offset, t);
    }
    return t;
  }

  set(offset: number, table: Uint8Array): void {
    this.tables.delete(offset);
    this.tables.set(offset, table);
    if (this.tables.size > this.capacity) {
      const oldest = this.tables.keys().next().value as number;
      this.tables.delete(oldest);
    }
  }

  delete(offset: number): void {
    this.tables.delete(offset);
  }
}
