// Clones: a new VM made from a stopped or suspended VM, or from one of its snapshots, that shares the
// source's unchanged disk data (a qcow2 overlay on a frozen disk node, disk-store.ts) and its saved memory
// (hard links), under a new name and a new identity (guest-identity.ts). The Hypervisor runs the lifecycle;
// this module checks the request, writes the new record and makes the new VM's files.

import { randomBytes, randomUUID } from "node:crypto";
import { constants } from "node:fs";
import { copyFile, link, mkdir, readdir, rename, rm } from "node:fs/promises";
import { dirname, join } from "node:path";
import type { InsertInstanceRequest } from "../api/schemas/vm-schemas.ts";
import { newIdentity } from "./guest-identity.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { syncDir } from "./store.ts";
import { VM_RECORD_FORMAT_VERSION, type VmRecord } from "./vm-record.ts";

/** The fields a clone takes from its source: giving them too is refused rather than silently ignored. */
const SOURCE_FIELDS = ["machineType", "cpus", "memoryMiB", "image", "engine"] as const;

/** Refuses a clone request that names what only a new VM from an image can choose. */
export function checkCloneRequest(req: InsertInstanceRequest): void {
  if (req.sourceInstance === undefined) {
    if (req.sourceSnapshot !== undefined)
      throw new HypervisorError(
        "invalid-argument",
        "sourceSnapshot names a snapshot of the VM given as sourceInstance; give sourceInstance too",
      );
    return;
  }
  const given = SOURCE_FIELDS.filter((f) => req[f] !== undefined);
  if (given.length > 0)
    throw new HypervisorError(
      "invalid-argument",
      `a clone has its source's machine type, image and engine: leave out ${given.join(", ")} (change the machine type afterwards with setMachineType)`,
    );
}

/**
 * The record of clone `req.name` of `source`: the source's machine type, disk size, image and engine, the
 * request's (else the source's) scheduling, a new id and a new identity, PROVISIONING.
 */
export function cloneRecord(source: VmRecord, req: InsertInstanceRequest, at: string): VmRecord {
  const from = req.sourceSnapshot
    ? `clone of '${source.name}' (snapshot '${req.sourceSnapshot}')`
    : `clone of '${source.name}'`;
  return {
    formatVersion: VM_RECORD_FORMAT_VERSION,
    id: randomUUID(),
    name: req.name,
    machineType: source.machineType,
    cpus: source.cpus,
    memoryMiB: source.memoryMiB,
    diskMiB: source.diskMiB,
    image: source.image,
    engine: source.engine,
    automaticRestart: req.automaticRestart ?? source.automaticRestart,
    cpuCapPercent: req.cpuCapPercent === undefined ? source.cpuCapPercent : req.cpuCapPercent,
    cpuWeight: req.cpuWeight ?? source.cpuWeight,
    identity: newIdentity(req.name),
    status: "PROVISIONING",
    statusMessage: "",
    creationTimestamp: at,
    lastStartTimestamp: null,
    lastStopTimestamp: null,
    lastSuspendedTimestamp: null,
    history: [{ at, from: null, to: "PROVISIONING", reason: `insert: ${from}, resources reserved` }],
  };
}

/**
 * Gives `toDir` (which must not exist) the saved state in `fromDir`: every file hard-linked (a saved state's
 * files are written once and never changed in place, and a resume removes its own links only), copied
 * where a link cannot be made (another filesystem). Assembled under a temp name beside `toDir` and renamed
 * into place, so a crash leaves the whole state or none (the store removes `.tmp-` leftovers).
 */
export async function shareSavedState(fromDir: string, toDir: string): Promise<void> {
  const temp = join(dirname(toDir), `.tmp-clone-state-${randomBytes(6).toString("hex")}`);
  try {
    await mkdir(temp, { mode: 0o700 });
    for (const entry of await readdir(fromDir, { withFileTypes: true })) {
      if (!entry.isFile())
        throw new Error(`the saved state ${fromDir} holds '${entry.name}', which is not a file`);
      const from = join(fromDir, entry.name);
      const to = join(temp, entry.name);
      await link(from, to).catch(async (e: NodeJS.ErrnoException) => {
        if (e.code !== "EXDEV" && e.code !== "EPERM" && e.code !== "EMLINK") throw e;
        await copyFile(from, to, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
      });
    }
    await syncDir(temp);
    await rename(temp, toDir);
  } catch (e) {
    await rm(temp, { recursive: true, force: true });
    throw e;
  }
  await syncDir(dirname(toDir));
}
