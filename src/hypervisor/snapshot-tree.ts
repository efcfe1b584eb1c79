// A VM's snapshot tree as persisted in vms/<name>/snapshots.json (schema SnapshotsFile): read and checked
// whole before use, written atomically, and the tree's edits (add, remove with its children re-parented).

import { readFile, stat } from "node:fs/promises";
import { join } from "node:path";
import {
  MAX_SNAPSHOTS,
  SNAPSHOTS_FORMAT_VERSION,
  SNAPSHOTS_MAGIC,
  type SnapshotEntry,
  SnapshotsFile,
} from "../api/schemas/snapshot-schemas.ts";
import { schemaCheck } from "../api/schemas/schema-check.ts";
import { SNAPSHOTS_FILE } from "./disk-store.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { writeFileAtomic } from "./store.ts";

/** Far larger than MAX_SNAPSHOTS entries can be; a bigger file is not ours and is not read into memory. */
const MAX_FILE_BYTES = 4 << 20;

export class CorruptSnapshotsError extends HypervisorError {
  constructor(path: string, problem: string) {
    super("corrupt-record", `the snapshot list ${path} is unusable: ${problem}; the file was left as it is`);
  }
}

const check = schemaCheck(SnapshotsFile);

export function emptyTree(vmId: string): SnapshotsFile {
  return {
    magic: SNAPSHOTS_MAGIC,
    formatVersion: SNAPSHOTS_FORMAT_VERSION,
    vmId,
    currentId: null,
    snapshots: [],
  };
}

/** The tree of the VM in `vmDir` (empty when it has none yet); CorruptSnapshotsError when unusable. */
export async function readTree(vmDir: string, vmId: string): Promise<SnapshotsFile> {
  const path = join(vmDir, SNAPSHOTS_FILE);
  let text: string;
  try {
    const size = (await stat(path)).size;
    if (size > MAX_FILE_BYTES)
      throw new CorruptSnapshotsError(path, `it is ${size} bytes, larger than any snapshot list`);
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return emptyTree(vmId);
    throw e;
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (e) {
    throw new CorruptSnapshotsError(path, `it is not valid JSON (${(e as Error).message})`);
  }
  const result = check(raw);
  if (!result.ok)
    throw new CorruptSnapshotsError(
      path,
      `field '${result.problem.field || "(top level)"}' ${result.problem.text}`,
    );
  const tree = result.value;
  if (tree.vmId !== vmId)
    throw new CorruptSnapshotsError(path, `it belongs to the VM with id ${tree.vmId}, not ${vmId}`);
  const ids = new Set(tree.snapshots.map((s) => s.id));
  const names = new Set(tree.snapshots.map((s) => s.name));
  if (ids.size !== tree.snapshots.length || names.size !== tree.snapshots.length)
    throw new CorruptSnapshotsError(path, "two snapshots share an id or a name");
  for (const s of tree.snapshots)
    if (s.parentId !== null && !ids.has(s.parentId))
      throw new CorruptSnapshotsError(path, `snapshot '${s.name}' names a parent that is not in the list`);
  if (tree.currentId !== null && !ids.has(tree.currentId))
    throw new CorruptSnapshotsError(path, "the current snapshot is not in the list");
  return tree;
}

/** The disk nodes the snapshots of the VM in `vmDir` hold (for garbage collection); throws when unreadable. */
export async function treeNodes(vmDir: string): Promise<string[]> {
  const path = join(vmDir, SNAPSHOTS_FILE);
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return [];
    throw e;
  }
  // The VM's id is not needed to know which nodes a list holds; a list that does not parse keeps all nodes.
  const result = check(JSON.parse(text));
  if (!result.ok)
    throw new CorruptSnapshotsError(path, `field '${result.problem.field}' ${result.problem.text}`);
  return result.value.snapshots.map((s) => s.diskNode);
}

export async function writeTree(vmDir: string, tree: SnapshotsFile): Promise<void> {
  await writeFileAtomic(join(vmDir, SNAPSHOTS_FILE), `${JSON.stringify(tree, null, 2)}\n`);
}

export function findByName(tree: SnapshotsFile, name: string): SnapshotEntry | undefined {
  return tree.snapshots.find((s) => s.name === name);
}

/** The tree with `entry` added as the child of the current snapshot, and current. */
export function withSnapshot(tree: SnapshotsFile, entry: SnapshotEntry): SnapshotsFile {
  if (tree.snapshots.length >= MAX_SNAPSHOTS)
    throw new HypervisorError(
      "snapshot-limit",
      `the VM has ${tree.snapshots.length} snapshots, the most it may keep; delete one first`,
    );
  return { ...tree, currentId: entry.id, snapshots: [...tree.snapshots, entry] };
}

/**
 * The tree without `entry`: its children take its parent, and when it was current its parent becomes
 * current (the VM's disk still descends from it, through its node, which stays while reached).
 */
export function withoutSnapshot(tree: SnapshotsFile, entry: SnapshotEntry): SnapshotsFile {
  return {
    ...tree,
    currentId: tree.currentId === entry.id ? entry.parentId : tree.currentId,
    snapshots: tree.snapshots
      .filter((s) => s.id !== entry.id)
      .map((s) => (s.parentId === entry.id ? { ...s, parentId: entry.parentId } : s)),
  };
}
