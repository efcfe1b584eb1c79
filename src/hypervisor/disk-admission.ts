// Admission of new disks against the data directory's free space, measured (statfs) at each admission, with
// what was admitted reserved until its copy is done, so that concurrent creates cannot together overfill
// the filesystem. Once a disk exists the filesystem's own free figure accounts for it.

import { readdir, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { checkAdmission, type HostCapacity } from "./resources.ts";

const MIB = 1048576;

/** Bytes available to unprivileged writers on the filesystem holding `dir`. */
export async function availableBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

/** Bytes the files directly in `dir` occupy on disk (0 when it does not exist yet). */
async function allocatedBytes(dir: string): Promise<number> {
  const entries = await readdir(dir).catch(() => [] as string[]);
  let total = 0;
  for (const e of entries) {
    const s = await stat(join(dir, e)).catch(() => undefined);
    if (s?.isFile()) total += s.blocks * 512;
  }
  return total;
}

interface Reservation {
  readonly bytes: number;
  /** Where the disk is being written: what is already there is no longer in the free figure. */
  readonly dir: string;
}

export class DiskAdmission {
  private readonly reservations = new Map<string, Reservation>();
  private lastFreeMiB: number;

  /**
   * `measureFreeBytes`: the space VMs may use now (free space minus the host reserve), or undefined when
   * only the capacity's figure is to be used (tests that set it explicitly).
   */
  constructor(
    private readonly capacity: HostCapacity,
    private readonly measureFreeBytes?: () => Promise<number>,
  ) {
    this.lastFreeMiB = capacity.diskFreeMiB;
  }

  /** Free disk space for new VMs as last measured, less what is reserved (MiB). */
  get freeMiB(): number {
    return this.lastFreeMiB;
  }

  /**
   * Measures the free space and reserves `sizeMiB` for the disk of VM `name` being written into `dir`;
   * CapacityExceededError (DISK) when it does not fit. Call the returned function once the disk exists (or
   * its copy failed).
   */
  async admit(name: string, sizeMiB: number, dir: string): Promise<() => void> {
    // What in-flight copies wrote is measured before the free space: a copy advancing in between is then
    // counted twice (a refusal too many), never not at all (an overfilled disk).
    const written = new Map<string, number>();
    for (const [n, r] of this.reservations) written.set(n, await allocatedBytes(r.dir));
    const free = this.measureFreeBytes ? await this.measureFreeBytes() : this.capacity.diskFreeMiB * MIB;
    // From here on synchronous: no other admission interleaves.
    let reserved = 0;
    for (const [n, r] of this.reservations) reserved += Math.max(0, r.bytes - (written.get(n) ?? 0));
    const freeMiB = Math.max(0, Math.floor((free - reserved) / MIB));
    this.lastFreeMiB = freeMiB;
    checkAdmission({ ...this.capacity, diskFreeMiB: freeMiB }, [], {
      name,
      cpus: 0,
      memoryMiB: 0,
      diskMiB: sizeMiB,
    });
    const reservation: Reservation = { bytes: sizeMiB * MIB, dir };
    this.reservations.set(name, reservation);
    return () => {
      if (this.reservations.get(name) === reservation) this.reservations.delete(name);
    };
  }
}
