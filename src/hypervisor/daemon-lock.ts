// The data directory's daemon lock: a kernel lock (flock) on $TSVM_HOME/daemon.lock, held for the daemon's
// life. The kernel gives it to exactly one of any number of daemons started at once, and drops it when its
// holder dies however it dies, so neither a race nor a leftover file with a reused pid can fool it.

import { ftruncateSync, writeSync } from "node:fs";
import { join } from "node:path";
import { FileLock, lockHolders } from "../engines/backends/file-lock.ts";
import { HypervisorError } from "./hypervisor-error.ts";

export function daemonLockPath(home: string): string {
  return join(home, "daemon.lock");
}

/**
 * Takes the daemon lock of `home`, or throws `already-running` naming the daemon that holds it. The file
 * is never removed (a daemon that removed it could hand a second daemon a lock on a new file while a
 * third still holds the old one); the pid written into it is for people, the lock is what counts.
 */
export function takeDaemonLock(home: string): FileLock {
  const path = daemonLockPath(home);
  const lock = FileLock.tryTake(path, { create: true });
  if (!lock) {
    const holders = lockHolders(path);
    throw new HypervisorError(
      "already-running",
      `a tsvm daemon${holders.length > 0 ? ` (pid ${holders.join(", ")})` : ""} already runs for ${home}`,
    );
  }
  ftruncateSync(lock.fd, 0);
  writeSync(lock.fd, `${process.pid}\n`, 0);
  return lock;
}

/** The pid of the daemon holding `home`'s lock, or undefined when no daemon runs. */
export function daemonLockHolder(home: string): number | undefined {
  return lockHolders(daemonLockPath(home))[0];
}
