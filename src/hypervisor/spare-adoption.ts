// A spare VMM's side of its adoption (spare-vmm-protocol.ts): load and prepare the engine, wait idle, then
// become the VMM of the one VM the daemon names — its command line naming that VM's spec file (what the
// daemon recognises a VM's VMM by, process-identity.ts), its output going to that VM's vmm.log — or exit.

import { closeSync, openSync, readFileSync } from "node:fs";
import { performance } from "node:perf_hooks";
import { pathToFileURL } from "node:url";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { libcFunction } from "../engines/backends/libc.ts";
import {
  type EngineModule,
  isAdoptMessage,
  parseSpareArguments,
  type SpareToDaemon,
} from "./spare-vmm-protocol.ts";

/** When this process was given its VM (performance.now() and CPU ms so far); undefined for a spawned VMM. */
let adoption: { readonly atMs: number; readonly cpuMs: number } | undefined;

/** For figures that must not count what a spare did before it had a VM (uptime, CPU to first instruction). */
export function adoptedAt(): { readonly atMs: number; readonly cpuMs: number } | undefined {
  return adoption;
}

function cpuMs(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}

function send(msg: SpareToDaemon): Promise<void> {
  return new Promise((resolve) => {
    if (!process.send || !process.connected) return resolve();
    process.send(msg, undefined, {}, () => resolve());
  });
}

/** This process's command line as /proc shows it: what isSameProcess (process-identity.ts) reads. */
function ownArguments(): string[] {
  return readFileSync("/proc/self/cmdline", "latin1")
    .split("\0")
    .filter((a) => a !== "");
}

type Dup2 = (from: number, to: number) => number;

/** Points stdout and stderr (fds 1 and 2) at `path`, opened to append, as a spawned VMM's are. */
function redirectOutput(dup2: Dup2, path: string): void {
  const fd = openSync(path, "a", 0o600);
  try {
    if (dup2(fd, 1) < 0 || dup2(fd, 2) < 0) throw new Error(`cannot point the VMM's output at ${path}`);
  } finally {
    closeSync(fd);
  }
}

/**
 * A full garbage collection now, while idle: what the preparation left (the warm-up's machines) would
 * otherwise be collected after the adoption, on the VM's time (measured: CPU from adoption to the first
 * guest instruction, median of 8 resumes, 150 ms with it, 167 ms without; a larger young generation,
 * --max-semi-space-size=32, made it 178 ms). `gc` is exposed for this moment only, in a context of its own.
 */
function collectGarbage(): void {
  setFlagsFromString("--expose-gc");
  (runInNewContext("gc") as () => void)();
}

/**
 * Runs the spare's life up to its adoption and resolves with the spec path of the VM it now serves.
 * `args`: vmm-main's arguments (SPARE_FLAG first). Exits the process when it is not adopted.
 */
export async function waitForAdoption(args: readonly string[]): Promise<string> {
  const spare = parseSpareArguments(args);
  if (!spare || !process.send) {
    process.stderr.write("usage: vmm-main.ts --spare <engine module> <code stamp> (with an IPC channel)\n");
    process.exit(2);
  }
  // Never outlives its daemon: a spare nobody can adopt is only memory taken.
  const orphaned = () => process.exit(0);
  process.on("disconnect", orphaned);
  const asked = new Promise<unknown>((resolve) => process.once("message", resolve));
  const t0 = performance.now();
  const mod = (await import(pathToFileURL(spare.engineModule).href)) as EngineModule;
  await mod.prepareGuest?.();
  // koffi and libc, which every VMM loads (its disk lock, a mapped RAM file): ~20 ms of CPU, 100 ms on a
  // busy host.
  const dup2 = libcFunction<Dup2>("int dup2(int, int)");
  collectGarbage();
  process.stderr.write(
    `${new Date().toISOString()} spare VMM (pid ${process.pid}) ready in ${(performance.now() - t0).toFixed(0)} ms (engine ${spare.engineModule}, code ${spare.codeStamp})\n`,
  );
  await send({ type: "spare-ready" });

  const msg = await asked;
  const refuse = async (message: string): Promise<never> => {
    process.stderr.write(`${new Date().toISOString()} spare VMM refuses its adoption: ${message}\n`);
    await send({ type: "refused", message });
    process.exit(1);
  };
  if (!isAdoptMessage(msg)) return refuse("the daemon sent something that is not an adoption");
  if (msg.engineModule !== spare.engineModule)
    return refuse(`it prepared ${spare.engineModule}, the VM needs ${msg.engineModule}`);
  // From here on the daemon tells this VM's VMM by its spec file on the command line, as it does a spawned
  // one; the command line was padded to hold it (spareArguments).
  process.title = msg.specPath;
  if (ownArguments()[0] !== msg.specPath)
    return refuse(`its command line cannot be made to name ${msg.specPath}`);
  try {
    redirectOutput(dup2, msg.logPath);
  } catch (e) {
    return refuse((e as Error).message);
  }
  adoption = { atMs: performance.now(), cpuMs: cpuMs() };
  process.off("disconnect", orphaned);
  await send({ type: "adopted" });
  return msg.specPath;
}
