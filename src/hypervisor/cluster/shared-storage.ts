// A cluster's shared storage (docs/cluster.md "Shared storage"): one directory every host sees at the same
// path, where VMs created with `sharedStorage` keep their files (disk, saved state, console log), so that
// another host can restart them when theirs goes DOWN. Its path is kept in etcd (`<prefix>shared-storage`,
// set by the first host that names one) and the directory holds a marker with the same random id, so that
// a host naming another path, naming none, or seeing another directory at that path (not mounted, a local
// directory of the same name) is refused before it joins.

import { randomBytes } from "node:crypto";
import { constants } from "node:fs";
import { access, link, mkdir, readFile, rm, stat } from "node:fs/promises";
import { isAbsolute, join, resolve } from "node:path";
import { HypervisorError } from "../hypervisor-error.ts";
import { syncDir, writeFileAtomic } from "../store.ts";
import type { ControlPlane } from "./control-plane.ts";

/** The marker in the shared directory. */
export const SHARED_STORAGE_MARKER = "tsvm-shared-storage.json";
const MARKER_MAGIC = "tsvm-shared-storage";
const MARKER_VERSION = 1;
/** A marker is a few bytes: anything far bigger is not ours, and is not read. */
const MAX_MARKER_BYTES = 4096;

/** What etcd keeps, and what the marker says (with magic and version). */
interface SharedStorageRecord {
  readonly path: string;
  readonly id: string;
}

export interface SharedStorage {
  /** The directory, absolute, the same on every host. */
  readonly dir: string;
  /** The random id the marker and etcd agree on. */
  readonly id: string;
}

function refused(problem: string): HypervisorError {
  return new HypervisorError("invalid-config", `cannot join the cluster: ${problem}`);
}

/** The marker's id, or undefined when there is none; refused when there is something else. */
async function readMarker(dir: string): Promise<string | undefined> {
  const path = join(dir, SHARED_STORAGE_MARKER);
  let text: string;
  try {
    if ((await stat(path)).size > MAX_MARKER_BYTES)
      throw refused(`${path} is not a tsvm shared-storage marker`);
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
    throw e;
  }
  let marker: { magic?: unknown; version?: unknown; id?: unknown };
  try {
    marker = JSON.parse(text);
  } catch {
    throw refused(`${path} is not a tsvm shared-storage marker (not JSON)`);
  }
  if (marker?.magic !== MARKER_MAGIC || typeof marker.id !== "string" || !/^[0-9a-f]{32}$/.test(marker.id))
    throw refused(`${path} is not a tsvm shared-storage marker`);
  if (marker.version !== MARKER_VERSION)
    throw refused(`${path} has version ${String(marker.version)}; this tsvm reads version ${MARKER_VERSION}`);
  return marker.id;
}

/** Checks that `dir` is a directory this host can write: named in one line when it is not. */
async function checkUsable(dir: string): Promise<void> {
  try {
    if (!(await stat(dir)).isDirectory()) throw refused(`--shared-storage ${dir} is not a directory`);
    await access(dir, constants.W_OK | constants.X_OK);
  } catch (e) {
    if (e instanceof HypervisorError) throw e;
    throw refused(`--shared-storage ${dir} cannot be used (${(e as Error).message})`);
  }
}

/**
 * Writes the marker with `id` unless one is there already (two hosts racing: the first link wins), written
 * whole beside it and linked into place. Answers the id the marker holds now.
 */
async function placeMarker(dir: string, id: string): Promise<string> {
  const path = join(dir, SHARED_STORAGE_MARKER);
  const temp = join(dir, `.tmp-${randomBytes(6).toString("hex")}`);
  try {
    await writeFileAtomic(temp, `${JSON.stringify({ magic: MARKER_MAGIC, version: MARKER_VERSION, id })}\n`);
    await link(temp, path).catch((e: NodeJS.ErrnoException) => {
      if (e.code !== "EEXIST") throw e;
    });
  } finally {
    await rm(temp, { force: true });
  }
  await syncDir(dir);
  const placed = await readMarker(dir);
  if (placed === undefined) throw refused(`the marker ${path} could not be written`);
  return placed;
}

function parseRecord(text: string): SharedStorageRecord | undefined {
  try {
    const r = JSON.parse(text) as Partial<SharedStorageRecord>;
    return typeof r.path === "string" && typeof r.id === "string" ? { path: r.path, id: r.id } : undefined;
  } catch {
    return undefined;
  }
}

/**
 * This host's view of the cluster's shared storage, checked against etcd's: `given` is the daemon's
 * `--shared-storage` (absent: none). The first host to name a directory sets it for the cluster (marker
 * first, then etcd, compare-and-set). Answers undefined when the cluster has none and none was given.
 */
export async function joinSharedStorage(
  plane: ControlPlane,
  given: string | undefined,
): Promise<SharedStorage | undefined> {
  if (given !== undefined && !isAbsolute(given))
    throw refused(`--shared-storage '${given.slice(0, 200)}' must be an absolute path`);
  const dir = given === undefined ? undefined : resolve(given);
  const key = plane.key("shared-storage");
  const read = async () => {
    const kv = (await plane.call("read the cluster's shared storage", (c) => c.get(key).exec())).kvs[0];
    if (!kv) return undefined;
    const record = parseRecord(kv.value.toString("utf8"));
    if (!record) throw refused(`the cluster's shared-storage record (etcd key ${key}) is unreadable`);
    return record;
  };
  let cluster = await read();
  if (dir === undefined) {
    if (cluster)
      throw refused(
        `the cluster keeps VMs on shared storage at ${cluster.path}: start this daemon with --shared-storage ${cluster.path}`,
      );
    return undefined;
  }
  await checkUsable(dir);
  let marker = await readMarker(dir);
  if (!cluster) {
    marker ??= await placeMarker(dir, randomBytes(16).toString("hex"));
    const id = marker;
    const value = JSON.stringify({ path: dir, id } satisfies SharedStorageRecord);
    const result = await plane.call("record the cluster's shared storage", (c) =>
      c.if(key, "Create", "==", 0).then(c.put(key).value(value)).commit(),
    );
    // Another host set it first: checked against its choice below.
    cluster = result.succeeded ? { path: dir, id } : await read();
  }
  if (!cluster) throw refused(`the cluster's shared-storage record (etcd key ${key}) vanished`);
  if (cluster.path !== dir)
    throw refused(
      `--shared-storage ${dir} differs from the cluster's shared storage ${cluster.path}: every host must see it at the same path`,
    );
  if (marker !== cluster.id)
    throw refused(
      marker === undefined
        ? `${dir} is not the cluster's shared storage on this host (no ${SHARED_STORAGE_MARKER} in it: is it mounted?)`
        : `${dir} is another directory than the cluster's shared storage (its ${SHARED_STORAGE_MARKER} has id ${marker}, the cluster's is ${cluster.id})`,
    );
  await mkdir(join(dir, "vms"), { recursive: true, mode: 0o700 });
  await mkdir(join(dir, "disks"), { recursive: true, mode: 0o700 });
  return { dir, id: cluster.id };
}

/**
 * Refuses what is not built for a VM on shared storage yet: a move sends a host's own disk nodes (and an
 * import, of an export file made by hand that says so; docs/cluster.md "Shared storage").
 */
export function refuseOnSharedStorage(
  record: { name: string; sharedStorage?: boolean },
  action: string,
): void {
  if (record.sharedStorage)
    throw new HypervisorError(
      "illegal-action",
      `cannot ${action} VM '${record.name}': it is on the cluster's shared storage, where ${action} is not supported yet`,
    );
}
