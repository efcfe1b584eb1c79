// `tsvm daemon [stop|status]`: runs the daemon in the foreground (for a service manager), stops the
// running one (its VMs keep running and are re-attached by the next daemon), or says whether one runs.

import { spawn } from "node:child_process";
import { readFile } from "node:fs/promises";
import { resolve } from "node:path";
import { ApiClient } from "../api/client.ts";
import { type DaemonRecord, daemonLockPath, daemonRecordPath, dataDir } from "../api/data-dir.ts";
import { lockHolders } from "../engines/backends/file-lock.ts";
import { daemonCommandLine } from "./daemon-connection.ts";
import { fail } from "./output.ts";
import { parseCommandLine, UsageError } from "./parse-command-line.ts";

const HELP = `Usage: tsvm daemon           run the daemon in the foreground (logs on stderr; Ctrl-C stops it)
       tsvm daemon stop      stop the running daemon; VMs keep running and are re-attached later
       tsvm daemon status    say whether a daemon runs, with its pid and endpoints
       tsvm daemon --cluster URL --host NAME --listen ADDR:PORT --token-file FILE [--shared-storage DIR]
                             run as host NAME of the cluster whose etcd is at URL (docs/cluster.md): the
                             API on ADDR:PORT with the cluster's token (the same file on every host);
                             DIR: the cluster's shared storage, the same path on every host (the first
                             host to name one sets it; a host that sees it otherwise is refused)

The daemon serves the API on $TSVM_HOME/api.sock. Commands that need it start it in the background when
none runs. $TSVM_HOME/config.json configures it (capacity, TCP port, stop timeout; see docs/hypervisor.md).
`;

async function readRecord(home: string): Promise<DaemonRecord | undefined> {
  try {
    return JSON.parse(await readFile(daemonRecordPath(home), "utf8")) as DaemonRecord;
  } catch {
    return undefined;
  }
}

/**
 * The pid of the daemon serving `home`: the holder of its kernel lock. Unlike a pid read from daemon.json,
 * it cannot name a process that merely reused a dead daemon's pid (the kernel drops the lock at death).
 */
function runningDaemon(home: string): number | undefined {
  return lockHolders(daemonLockPath(home))[0];
}

/** The daemon's cluster options, passed on to its process: all four or none (UsageError). */
function clusterArguments(values: Record<string, string | boolean | undefined>, sub: boolean): string[] {
  const names = ["cluster", "host", "listen", "token-file"] as const;
  const given = names.filter((n) => values[n] !== undefined);
  if (given.length === 0) {
    if (values["shared-storage"] !== undefined)
      throw new UsageError(
        "--shared-storage is for a cluster: give --cluster, --host, --listen and --token-file too",
      );
    return [];
  }
  if (sub) throw new UsageError(`--${given[0]} is an option of 'tsvm daemon' alone, not of stop or status`);
  const missing = names.filter((n) => values[n] === undefined);
  if (missing.length > 0)
    throw new UsageError(
      `joining a cluster needs --cluster, --host, --listen and --token-file; missing: ${missing.map((n) => `--${n}`).join(", ")}`,
    );
  const shared = values["shared-storage"];
  return [
    ...names.flatMap((n) => [`--${n}`, n === "token-file" ? resolve(String(values[n])) : String(values[n])]),
    ...(shared === undefined ? [] : ["--shared-storage", resolve(String(shared))]),
  ];
}

export async function daemonCommand(argv: string[]): Promise<number> {
  let positionals: string[];
  let help: boolean | undefined;
  let cluster: string[];
  try {
    let values: Record<string, string | boolean | undefined>;
    ({ positionals, values } = parseCommandLine("daemon", argv, {
      allowPositionals: true,
      options: {
        help: { type: "boolean", short: "h" },
        cluster: { type: "string" },
        host: { type: "string" },
        listen: { type: "string" },
        "token-file": { type: "string" },
        "shared-storage": { type: "string" },
      },
    }));
    help = values.help as boolean | undefined;
    cluster = clusterArguments(values, positionals.length > 0);
  } catch (e) {
    return fail("daemon", e, true);
  }
  if (help) {
    process.stdout.write(HELP);
    return 0;
  }
  const home = dataDir();
  const sub = positionals[0];
  if (positionals.length > 1 || (sub !== undefined && sub !== "stop" && sub !== "status"))
    return fail(
      "daemon",
      new Error(`unknown arguments '${positionals.join(" ")}'; see 'tsvm daemon --help'`),
      true,
    );

  if (sub === undefined) {
    const { command, args } = daemonCommandLine();
    const child = spawn(command, [...args, ...cluster], {
      stdio: "inherit",
      env: { ...process.env, TSVM_HOME: home },
    });
    const forward = (signal: NodeJS.Signals) => child.kill(signal);
    process.on("SIGINT", forward);
    process.on("SIGTERM", forward);
    return new Promise((resolve) => {
      child.on("exit", (code, signal) => resolve(code ?? (signal ? 1 : 0)));
    });
  }

  const pid = runningDaemon(home);
  const found = await readRecord(home);
  // daemon.json may be a dead daemon's, or not yet written by a starting one.
  const record = found?.pid === pid ? found : undefined;
  if (sub === "status") {
    if (pid === undefined) {
      process.stdout.write(`no tsvm daemon runs for ${home}\n`);
      return 1;
    }
    const host = await ApiClient.forDataDir(home)
      .getHost()
      .catch(() => undefined);
    process.stdout.write(
      `tsvm daemon pid ${pid}${record ? ` since ${record.startedAt}: ${record.socketPath}` : " (starting)"}` +
        `${record?.tcpPort == null ? "" : `, 127.0.0.1:${record.tcpPort}`}` +
        `${host ? `; ${host.vcpusUsed}/${host.vcpus} vCPUs and ${host.memoryUsedMiB}/${host.memoryMiB} MiB in use` : " (not answering)"}\n`,
    );
    return 0;
  }
  if (pid === undefined) {
    process.stdout.write(`no tsvm daemon runs for ${home}\n`);
    return 0;
  }
  process.kill(pid, "SIGTERM");
  const t0 = Date.now();
  // The lock is dropped only once the daemon has exited.
  while (runningDaemon(home) === pid) {
    if (Date.now() - t0 > 30_000)
      return fail("daemon", new Error(`the daemon (pid ${pid}) did not stop within 30 s`));
    await new Promise((r) => setTimeout(r, 50));
  }
  process.stdout.write(`Stopped the tsvm daemon (pid ${pid}); running VMs keep running.\n`);
  return 0;
}
