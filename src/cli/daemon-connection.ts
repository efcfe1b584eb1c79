// How CLI commands reach the daemon: its Unix socket in the data directory, starting the daemon in the
// background when none runs (so that no command needs a separate setup step); or a remote daemon's API
// (TSVM_API_URL, remote-api.ts), never started from here.

import { spawn } from "node:child_process";
import { closeSync, mkdirSync, openSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { ApiClient, ApiError } from "../api/client.ts";
import { daemonLogPath, dataDir } from "../api/data-dir.ts";
import { remoteEndpoint } from "./remote-api.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

/**
 * node and its arguments that run the daemon's entry (bin/tsvm-daemon.ts): from the start-up bundle this
 * command runs from (scripts/bundle.ts sets TSVM_BUNDLE_DIR in bundled code), else through tsx.
 */
export function daemonCommandLine(): { command: string; args: string[] } {
  const bundleDir = process.env.TSVM_BUNDLE_DIR;
  if (bundleDir)
    return {
      command: process.execPath,
      args: ["--enable-source-maps", join(bundleDir, "bin/tsvm-daemon.mjs")],
    };
  return {
    command: process.execPath,
    args: [
      "--enable-source-maps",
      "--import",
      `file://${join(root, "node_modules/tsx/dist/loader.mjs")}`,
      join(root, "bin/tsvm-daemon.ts"),
    ],
  };
}

async function answers(client: ApiClient): Promise<boolean> {
  try {
    await client.getHost();
    return true;
  } catch (e) {
    if (e instanceof ApiError && e.status === 0) return false;
    throw e;
  }
}

/**
 * A client of the remote API when one is named (remote-api.ts), else of the data directory's daemon; starts the daemon in the background first when none answers
 * (and `autoStart`), telling the user on stderr.
 */
export async function connectDaemon(autoStart = true, home = dataDir()): Promise<ApiClient> {
  const remote = remoteEndpoint();
  if (remote) {
    const client = new ApiClient(remote);
    if (await answers(client)) return client;
    throw new ApiError(0, "unreachable", `the tsvm API at ${process.env.TSVM_API_URL} does not answer`);
  }
  const client = ApiClient.forDataDir(home);
  if (await answers(client)) return client;
  if (!autoStart) throw new ApiError(0, "unreachable", `no tsvm daemon runs for ${home}`);
  mkdirSync(home, { recursive: true, mode: 0o700 });
  const logPath = daemonLogPath(home);
  const logFd = openSync(logPath, "a", 0o600);
  const { command, args } = daemonCommandLine();
  let exited: string | undefined;
  try {
    const child = spawn(command, args, {
      detached: true,
      stdio: ["ignore", logFd, logFd],
      env: { ...process.env, TSVM_HOME: home },
    });
    child.on("exit", (code, signal) => {
      // Exit code 3: another daemon won the race to start; it will answer below.
      if (code !== 3) exited = signal ? `signal ${signal}` : `exit code ${code}`;
    });
    child.unref();
    process.stderr.write(`tsvm: started the daemon (pid ${child.pid}) for ${home}; its log: ${logPath}\n`);
  } finally {
    closeSync(logFd);
  }
  const t0 = Date.now();
  while (Date.now() - t0 < 60_000) {
    if (await answers(client)) return client;
    if (exited) throw new ApiError(0, "unreachable", `the daemon did not start (${exited}); see ${logPath}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new ApiError(0, "unreachable", `the daemon did not answer within 60 s; see ${logPath}`);
}
