// The host's side of `tsvm cp`: tar streams of a file or directory (npm `tar`: modes and times kept, owners
// made root), and the placing of what comes out of a VM — extracted into a hidden temporary directory
// beside the destination and renamed into place only once complete, so a failure leaves nothing
// half-written at the destination, also when `tsvm cp` is ended by a signal (SIGINT, SIGTERM, SIGHUP).

import { rmSync } from "node:fs";
import { lstat, mkdtemp, readdir, rename, rm, stat, utimes } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { create as createTar, extract as extractTar } from "tar";

/** A tar header block per entry, the data rounded up to blocks, two zero blocks at the end. */
const BLOCK = 512;
/** How long a discarded extraction waits for tar to shut the files it has open before removing them. */
const DISCARD_WAIT_MS = 10_000;

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms).unref());

/** A problem the user must fix, said in one line (no stack, no code). */
export class CpError extends Error {
  readonly code = "CP_FAILED";
}

/** The tar stream's expected length for `path` (a file or a tree): for progress only. */
export async function tarSize(path: string): Promise<number> {
  const st = await lstat(path);
  let total = BLOCK + Math.ceil((st.isFile() ? st.size : 0) / BLOCK) * BLOCK;
  if (st.isDirectory())
    for (const name of await readdir(path)) total += await tarSize(join(path, name)).catch(() => 0);
  return total;
}

/** Checks that a host source exists; its lstat. */
export async function hostSource(path: string): Promise<void> {
  try {
    await lstat(path);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    throw new CpError(
      code === "ENOENT" || code === "ENOTDIR" ? `${path}: no such file or directory` : (e as Error).message,
    );
  }
}

/** `rel` (under `cwd`) and everything below it, each directory after its contents. */
async function postOrder(cwd: string, rel: string, out: string[]): Promise<void> {
  const st = await lstat(join(cwd, rel));
  if (st.isDirectory())
    for (const name of await readdir(join(cwd, rel))) await postOrder(cwd, join(rel, name), out);
  out.push(rel);
}

/**
 * A tar stream of `path` under its own name, read as it is written. Each directory comes after its
 * contents, so that an extracting tar (busybox's sets a directory's time when it meets its entry) leaves
 * it with its own time, not that of the last file put into it. Anything that goes wrong meanwhile (a file
 * that vanishes or changes size while it is read) is fatal: `failed` says what.
 */
export async function packHostPath(path: string): Promise<{
  stream: AsyncIterable<Uint8Array>;
  failed: () => string | undefined;
}> {
  let problem: string | undefined;
  const cwd = dirname(resolve(path));
  const entries: string[] = [];
  await postOrder(cwd, basename(resolve(path)), entries);
  const pack = createTar(
    {
      cwd,
      noDirRecurse: true,
      // Not `portable`, which would drop directories' times and loosen modes: the owner alone is left out
      // (everything copied in belongs to the guest's root, as its tar gives root the archive's owners).
      onWriteEntry: (entry: { stat?: { uid: number; gid: number } }) => {
        if (entry.stat) {
          entry.stat.uid = 0;
          entry.stat.gid = 0;
        }
      },
      strict: true,
      // Reads of 1 MiB (not 16): what is read ahead of the guest stays small, and a file changed while it
      // is copied is seen as such (a short read fails the copy) rather than read whole beforehand.
      maxReadSize: 1048576,
      onwarn: (_code: string, message: string) => {
        problem ??= message;
      },
    },
    entries,
  );
  pack.on("error", (e: unknown) => {
    problem ??= (e as Error).message;
  });
  return { stream: pack as unknown as AsyncIterable<Uint8Array>, failed: () => problem };
}

/** Where a copy out of a VM goes: the directory it is extracted beside and the name it takes there. */
export interface HostDestination {
  readonly dir: string;
  readonly name: string;
}

/**
 * `dest` as cp reads it: an existing directory receives the source under the source's name; anything else
 * names the copy, in a directory that must exist.
 */
export async function hostDestination(dest: string, sourceName: string): Promise<HostDestination> {
  const st = await stat(dest).catch(() => undefined);
  if (st?.isDirectory()) return { dir: dest, name: sourceName };
  const dir = dirname(dest);
  const parent = await stat(dir).catch(() => undefined);
  if (!parent?.isDirectory()) throw new CpError(`${dest}: the directory ${dir} does not exist`);
  return { dir, name: basename(dest) };
}

/** The signals that end `tsvm cp` (Ctrl-C, kill, a closed terminal). */
export const CP_ENDING_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP"] as const;

/**
 * Until the returned function is called, a signal of CP_ENDING_SIGNALS first runs `cleanUp` (synchronous:
 * nothing else runs meanwhile), then ends the process by that signal, as it would have without the
 * handler (a shell sees status 128+N).
 */
export function cleanUpOnSignal(cleanUp: () => void): () => void {
  const handler = (signal: NodeJS.Signals) => {
    stop();
    try {
      cleanUp();
    } finally {
      process.kill(process.pid, signal);
    }
  };
  const stop = () => {
    for (const s of CP_ENDING_SIGNALS) process.off(s, handler);
  };
  for (const s of CP_ENDING_SIGNALS) process.on(s, handler);
  return stop;
}

/**
 * Extracts a tar stream into a temporary directory beside the destination; `place` renames the result
 * into place, `discard` removes it; so does a signal that ends the process meanwhile. A file reaches its
 * final name only by a rename of the whole file, so no destination is ever half-written. `write` takes the
 * stream's bytes with back-pressure.
 */
export async function hostExtraction(dest: HostDestination): Promise<{
  write: (bytes: Uint8Array) => Promise<void> | undefined;
  finish: () => Promise<void>;
  place: (sourceName: string) => Promise<void>;
  discard: () => Promise<void>;
}> {
  const temp = await mkdtemp(join(dest.dir, ".tsvm-cp-"));
  const keepOnSignal = cleanUpOnSignal(() => rmSync(temp, { recursive: true, force: true, maxRetries: 3 }));
  let problem: string | undefined;
  const unpack = extractTar({
    cwd: temp,
    strict: true,
    preserveOwner: false,
    onwarn: (_code: string, message: string) => {
      problem ??= message;
    },
  });
  // node-tar sets a directory's time when it makes it, and the files extracted into it then change it:
  // the times are set again, deepest first, once everything is in.
  const dirTimes: { path: string; mtime: Date }[] = [];
  unpack.on("entry", (entry: { type: string; path: string; mtime?: Date }) => {
    if (entry.type === "Directory" && entry.mtime) dirTimes.push({ path: entry.path, mtime: entry.mtime });
  });
  unpack.on("error", (e: unknown) => {
    problem ??= (e as Error).message;
  });
  const done = new Promise<void>((resolveDone) => {
    unpack.on("close", () => resolveDone());
    unpack.on("error", () => resolveDone());
  });
  // Only 'close' says every file tar opened is written and shut (it follows 'error' too, once ended):
  // removing the temporary directory before then races tar's last writes into it.
  const closed = new Promise<void>((resolveClosed) => unpack.once("close", () => resolveClosed()));
  let ended = false;
  const end = () => {
    if (!ended) unpack.end();
    ended = true;
  };
  // While tar is behind, bytes wait here instead of in tar: output that arrived before the reader paused
  // still comes, and tar adds a listener to its entry for every write it cannot take.
  const queued: Buffer[] = [];
  let drained: Promise<void> | undefined;
  const flushed = () =>
    new Promise<void>((resolveFlushed) => {
      const flush = () => {
        while (queued.length > 0)
          if (!unpack.write(queued.shift()!)) {
            unpack.once("drain", flush);
            return;
          }
        drained = undefined;
        resolveFlushed();
      };
      unpack.once("drain", flush);
    });
  return {
    write(bytes) {
      if (drained) {
        queued.push(Buffer.from(bytes));
        return drained;
      }
      if (unpack.write(Buffer.from(bytes))) return undefined;
      drained = flushed();
      return drained;
    },
    async finish() {
      // A tar that failed never drains: its error is the answer.
      if (drained) await Promise.race([drained, done]);
      end();
      await done;
      if (problem) throw new CpError(`the archive from the VM is damaged: ${problem}`);
      for (const { path, mtime } of dirTimes.reverse()) {
        const inside = resolve(temp, path);
        // Guest-controlled: only paths inside the temporary directory (tar already refused the others).
        if (inside.startsWith(`${temp}/`)) await utimes(inside, mtime, mtime).catch(() => {});
      }
    },
    async place(sourceName) {
      const from = join(temp, sourceName);
      await lstat(from).catch(() => {
        throw new CpError(`the VM sent no ${sourceName}`);
      });
      await moveInto(from, join(dest.dir, dest.name));
      await rm(temp, { recursive: true, force: true });
      keepOnSignal();
    },
    async discard() {
      queued.length = 0;
      end();
      await Promise.race([closed, sleep(DISCARD_WAIT_MS)]);
      await rm(temp, { recursive: true, force: true, maxRetries: 5 });
      keepOnSignal();
    },
  };
}

/**
 * Renames `from` to `to`; a directory onto an existing directory is merged (entry by entry, files
 * replaced), as cp -r would. A directory onto a file, or a file onto a directory, is refused.
 */
async function moveInto(from: string, to: string): Promise<void> {
  const src = await lstat(from);
  const dst = await lstat(to).catch(() => undefined);
  if (dst?.isDirectory() && src.isDirectory()) {
    for (const name of await readdir(from)) await moveInto(join(from, name), join(to, name));
    return;
  }
  if (dst?.isDirectory()) throw new CpError(`${to}: cannot replace a directory with a file`);
  if (dst && src.isDirectory()) throw new CpError(`${to}: cannot replace a file with a directory`);
  await rename(from, to);
}
