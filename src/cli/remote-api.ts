// Which daemon the CLI talks to: the local one of $TSVM_HOME (its Unix socket) unless a remote API is named,
// by TSVM_API_URL and TSVM_API_TOKEN_FILE or by the global options --api-url and --token-file (a cluster
// host's API, docs/cluster.md). A remote daemon is never started by the CLI.

import { readFileSync } from "node:fs";
import type { ApiEndpoint } from "../api/client.ts";
import { UsageError } from "./parse-command-line.ts";

/** The global options, taken out of `argv` into the environment (before `--`; not for `tsvm daemon`). */
export function takeRemoteOptions(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): string[] {
  const out: string[] = [];
  const command = argv.find((a) => !a.startsWith("-"));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === "--") {
      out.push(...argv.slice(i));
      break;
    }
    const m = /^--(api-url|token-file)(?:=(.*))?$/.exec(arg);
    // `tsvm daemon --token-file` is the cluster's token for the daemon itself.
    const beforeCommand = command === undefined || i < argv.indexOf(command);
    if (!m || (command === "daemon" && !beforeCommand)) {
      out.push(arg);
      continue;
    }
    const value = m[2] ?? argv[++i];
    if (value === undefined) throw new UsageError(`--${m[1]} needs a value`);
    env[m[1] === "api-url" ? "TSVM_API_URL" : "TSVM_API_TOKEN_FILE"] = value;
  }
  return out;
}

/** The remote API named in the environment, with its token; undefined for the local daemon. */
export function remoteEndpoint(env: NodeJS.ProcessEnv = process.env): ApiEndpoint | undefined {
  const url = env.TSVM_API_URL;
  if (url === undefined || url === "") return undefined;
  const m = /^http:\/\/(\[[0-9a-fA-F:.]+\]|[^/:[\]]+):(\d{1,5})\/?$/.exec(url);
  const port = Number(m?.[2]);
  if (!m || port < 1 || port > 65535)
    throw new UsageError(`TSVM_API_URL/--api-url '${url.slice(0, 80)}' is not http://HOST:PORT`);
  const tokenFile = env.TSVM_API_TOKEN_FILE;
  if (!tokenFile)
    throw new UsageError(
      `the API at ${url} needs its token: set TSVM_API_TOKEN_FILE or give --token-file (the cluster's token file)`,
    );
  let token: string;
  try {
    token = readFileSync(tokenFile, "utf8").trim();
  } catch (e) {
    throw new UsageError(`the token file ${tokenFile} cannot be read (${(e as Error).message})`);
  }
  if (token === "") throw new UsageError(`the token file ${tokenFile} is empty`);
  return { host: m[1]!.replace(/^\[|\]$/g, ""), port, token };
}
