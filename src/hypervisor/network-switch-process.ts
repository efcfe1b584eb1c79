// The daemon's side of the switch processes (network-switch-main.ts): starting one, detached like a VMM so
// that it outlives the daemon, when a VM with a card on its network is about to start and none answers on
// the network's socket; asking it for its counters; stopping it when the network is deleted.

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import type { SwitchPortStats } from "../api/schemas/network-schemas.ts";
import { rotateIfLarger } from "./bounded-log.ts";
import { connectUnix } from "./control-socket.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import { isSameProcess, type ProcessIdentity, readProcessIdentity } from "./process-identity.ts";
import { writeFileAtomic } from "./store.ts";

export interface SwitchEntry {
  /** Path of network-switch-main.ts (or its bundled .mjs). */
  readonly entry: string;
  /** Arguments for node before the entry (the tsx loader when it is TypeScript). */
  readonly nodeArgs: readonly string[];
  /** How long a switch without cards lingers before it exits (ms). */
  readonly idleMs?: number;
  /** Broadcast/multicast frames per second each card may flood (burst: twice that); default 200. */
  readonly floodRate?: number;
}

/** Generous: a loaded host (or the tsx loader, in tests) can take many seconds to start a node process. */
const START_TIMEOUT_MS = 60_000;
const DEFAULT_IDLE_MS = 60_000;
const STATS_TIMEOUT_MS = 2_000;

/** Asks the switch at `socketPath` for its ports' counters; undefined when none answers. */
export function askSwitchStats(socketPath: string): Promise<SwitchPortStats[] | undefined> {
  return new Promise((resolve) => {
    const socket = connectUnix(socketPath);
    let text = "";
    const done = (value: SwitchPortStats[] | undefined) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(value);
    };
    const timer = setTimeout(() => done(undefined), STATS_TIMEOUT_MS);
    socket.on("error", () => done(undefined));
    socket.on("connect", () => socket.write("stats\n"));
    socket.setEncoding("utf8");
    socket.on("data", (chunk: string) => {
      text += chunk;
      if (text.length > 1 << 20) done(undefined);
    });
    socket.on("end", () => {
      try {
        const value = JSON.parse(text) as unknown;
        done(Array.isArray(value) ? (value as SwitchPortStats[]) : undefined);
      } catch {
        done(undefined);
      }
    });
  });
}

export class SwitchProcesses {
  /** One start at a time per network directory. */
  private readonly starting = new Map<string, Promise<void>>();

  constructor(private readonly config: SwitchEntry) {}

  /** Makes sure the switch of the network in `dir` runs (starting it when nothing answers on its socket). */
  ensure(dir: string): Promise<void> {
    const inFlight = this.starting.get(dir);
    if (inFlight) return inFlight;
    const start = (async () => {
      if ((await askSwitchStats(join(dir, "switch.sock"))) !== undefined) return;
      await this.spawn(dir);
    })().finally(() => this.starting.delete(dir));
    this.starting.set(dir, start);
    return start;
  }

  /** Ends the switch of the network in `dir`, if one runs (only the process its record names). */
  async stop(dir: string): Promise<void> {
    const id = await readSwitchRecord(dir);
    if (!id || !isSameProcess(id, dir)) return;
    try {
      process.kill(id.pid, "SIGTERM");
    } catch {
      return;
    }
    for (let i = 0; i < 50 && isSameProcess(id, dir); i++) await new Promise((r) => setTimeout(r, 100));
    if (isSameProcess(id, dir)) process.kill(id.pid, "SIGKILL");
  }

  private async spawn(dir: string): Promise<void> {
    const logPath = join(dir, "switch.log");
    rotateIfLarger(logPath);
    const logFd = openSync(logPath, "a", 0o600);
    const args = [...this.config.nodeArgs, this.config.entry, dir];
    args.push(String(this.config.idleMs ?? DEFAULT_IDLE_MS));
    if (this.config.floodRate !== undefined) args.push(String(this.config.floodRate));
    let child: ReturnType<typeof spawn>;
    try {
      // detached: its own process group, so that a Ctrl-C to the daemon spares the network.
      child = spawn(process.execPath, args, { detached: true, stdio: ["ignore", logFd, logFd, "ipc"] });
    } finally {
      closeSync(logFd);
    }
    const ready = await new Promise<string | undefined>((resolve) => {
      const timer = setTimeout(
        () => resolve(`it did not start within ${START_TIMEOUT_MS} ms`),
        START_TIMEOUT_MS,
      );
      child.on("message", (m: { type?: string }) => {
        if (m?.type !== "ready") return;
        clearTimeout(timer);
        resolve(undefined);
      });
      child.on("exit", (code, signal) => {
        clearTimeout(timer);
        resolve(`it exited (${signal ?? `status ${code}`}); see ${logPath}`);
      });
      child.on("error", (e) => {
        clearTimeout(timer);
        resolve(e.message);
      });
    });
    if (ready !== undefined) {
      child.kill("SIGKILL");
      throw new HypervisorError(
        "switch-failed",
        `the switch of the network in ${dir} could not start: ${ready}`,
      );
    }
    const id = child.pid === undefined ? undefined : readProcessIdentity(child.pid);
    if (id) await writeFileAtomic(join(dir, "switch.json"), `${JSON.stringify(id)}\n`, 0o600);
    child.removeAllListeners();
    if (child.connected) child.disconnect();
    child.unref();
  }
}

async function readSwitchRecord(dir: string): Promise<ProcessIdentity | undefined> {
  try {
    const v = JSON.parse(await readFile(join(dir, "switch.json"), "utf8")) as ProcessIdentity;
    return typeof v.pid === "number" && typeof v.bootId === "string" && typeof v.startTime === "string"
      ? v
      : undefined;
  } catch {
    return undefined;
  }
}
