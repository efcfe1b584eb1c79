// Where the daemon's endpoints live in the data directory; the client finds the daemon through these.
// (The same default as the hypervisor's store: api and hypervisor do not import each other, and a test
// keeps the two in step.)

import { homedir } from "node:os";
import { join, resolve } from "node:path";

/** `TSVM_HOME` when set, else `${XDG_DATA_HOME:-~/.local/share}/tsvm`; always absolute. */
export function dataDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.TSVM_HOME) return resolve(env.TSVM_HOME);
  const base = env.XDG_DATA_HOME
    ? resolve(env.XDG_DATA_HOME)
    : join(env.HOME ?? homedir(), ".local", "share");
  return join(base, "tsvm");
}

/** The API's Unix socket (mode 0600). */
export function apiSocketPath(home: string): string {
  return join(home, "api.sock");
}

/** The bearer token for the TCP listener (mode 0600), generated at the daemon's first start. */
export function apiTokenPath(home: string): string {
  return join(home, "api-token");
}

/** The running daemon: { pid, socketPath, tcpPort | null, startedAt }. */
export function daemonRecordPath(home: string): string {
  return join(home, "daemon.json");
}

/** The daemon's kernel lock (flock), held by the running daemon for its life; the pid inside is informative. */
export function daemonLockPath(home: string): string {
  return join(home, "daemon.lock");
}

/** The daemon's own log when it runs in the background. */
export function daemonLogPath(home: string): string {
  return join(home, "daemon.log");
}

export interface DaemonRecord {
  readonly pid: number;
  readonly socketPath: string;
  readonly tcpPort: number | null;
  readonly startedAt: string;
}
