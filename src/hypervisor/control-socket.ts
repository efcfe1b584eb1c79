// A VMM's control socket: always inside its VM's directory and never connectable by another user (the
// protocol runs commands as root in the guest), however long the data directory's path is.
//
// sun_path holds at most 108 bytes. A longer path is reached through the directory's descriptor instead:
// `/proc/self/fd/N/vmm.sock` resolves (for bind and connect alike) to the file in the directory opened as
// N, so the socket stays where its VM's files are instead of moving to a shared /tmp.

import { chmod, closeSync, openSync, statSync } from "node:fs";
import { connect, type Server, type Socket } from "node:net";
import { basename, dirname } from "node:path";

/** Longest path passed to bind/connect as is (sun_path is 108 bytes with its NUL; some margin). */
const MAX_SOCKET_PATH_BYTES = 100;

/** Runs `use` with an address for `path` that fits sun_path; `done` must be called once it is bound/connected. */
function withAddress(path: string, use: (address: string, done: () => void) => void): void {
  if (Buffer.byteLength(path) <= MAX_SOCKET_PATH_BYTES) {
    use(path, () => {});
    return;
  }
  const dirFd = openSync(dirname(path), "r");
  let closed = false;
  use(`/proc/self/fd/${dirFd}/${basename(path)}`, () => {
    if (closed) return;
    closed = true;
    closeSync(dirFd);
  });
}

/**
 * Listens on `path` with mode 0600: created under umask 0177 (so that there is no moment when it is
 * open to others) and checked afterwards. Rejects when it cannot, rather than serve on a wider socket.
 */
export function listenPrivate(server: Server, path: string): Promise<void> {
  return new Promise((resolve, reject) => {
    withAddress(path, (address, done) => {
      const umask = process.umask(0o177);
      const fail = (e: Error) => {
        done();
        reject(e);
      };
      server.once("error", fail);
      try {
        server.listen(address, () => {
          server.off("error", fail);
          done();
          chmod(path, 0o600, (e) => {
            if (e) return reject(e);
            const mode = statSync(path).mode & 0o777;
            if (mode !== 0o600)
              return reject(new Error(`the control socket ${path} has mode ${mode.toString(8)}, not 600`));
            resolve();
          });
        });
      } finally {
        process.umask(umask);
      }
    });
  });
}

/** Connects to the Unix socket at `path`, however long it is. */
export function connectUnix(path: string): Socket {
  let socket!: Socket;
  withAddress(path, (address, done) => {
    socket = connect(address);
    socket.once("connect", done);
    socket.once("error", done);
    socket.once("close", done);
  });
  return socket;
}
