// Admission of new disks against the data directory's free space, measured (statfs) at each admission. A
// VM's disk is a qcow2 overlay that starts nearly empty and may grow to its virtual size: what it may still
// grow by stays reserved for as long as the VM exists (its virtual size less what its active disk already
// takes), so that VMs admitted together cannot overfill the filesystem by growing later.

import { readdir, stat, statfs } from "node:fs/promises";
import { join } from "node:path";
import { checkAdmission, type HostCapacity } from "./resources.ts";

const MIB = 1048576;

/** Bytes available to unprivileged writers on the filesystem holding `dir`. */
export async function availableBytes(dir: string): Promise<number> {
  const fs = await statfs(dir);
  return fs.bavail * fs.bsize;
}

/** Bytes the file `path` (or the files directly in the directory `path`) occupy on disk (0 when missing). */
async function allocatedBytes(path: string): Promise<number> {
  const s = await stat(path).catch(() => undefined);
  if (!s) return 0;
  if (!s.isDirectory()) return s.blocks * 512;
  let total = 0;
  for (const e of await readdir(path).catch(() => [] as string[])) {
    const f = await stat(join(path, e)).catch(() => undefined);
    if (f?.isFile()) total += f.blocks * 512;
  }
  return total;
}

interface Reservation {
  readonly bytes: number;
  /** Where the disk is (being) written: what is already there is no longer in the free figure. */
  readonly path: () => string;
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
   * Reserves, for as long as VM `name` exists, what its disk may still grow by: `bytes` (its virtual size)
   * less what the file `path()` (its active disk now) takes. Replaces the VM's earlier reservation.
   */
  hold(name: string, bytes: number, path: () => string): void {
    this.reservations.set(name, { bytes, path });
  }

  /** Drops VM `name`'s reservation (it was deleted). */
  release(name: string): void {
    this.reservations.delete(name);
  }

  /**
   * Measures the free space and reserves `sizeMiB` for the disk of VM `name` being written at `path`;
   * CapacityExceededError (DISK) when it does not fit. Call the returned function when its creation
   * failed; once the disk exists, `hold` what it may grow to.
   */
  async admit(
    name: string,
    sizeMiB: number,
    path: string,
    /** A shared need (an image's base node): admitted once while reserved, later callers share it. */
    options: { readonly shared?: boolean } = {},
  ): Promise<() => void> {
    // What in-flight copies wrote is measured before the free space: a copy advancing in between is then
    // counted twice (a refusal too many), never not at all (an overfilled disk).
    const written = new Map<string, number>();
    for (const [n, r] of this.reservations) written.set(n, await allocatedBytes(r.path()));
    const free = this.measureFreeBytes ? await this.measureFreeBytes() : this.capacity.diskFreeMiB * MIB;
    // From here on synchronous: no other admission interleaves.
    if (options.shared && this.reservations.has(name)) return () => {};
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
    const reservation: Reservation = { bytes: sizeMiB * MIB, path: () => path };
    this.reservations.set(name, reservation);
    return () => {
      if (this.reservations.get(name) === reservation) this.reservations.delete(name);
    };
  }
}
