// Waiting on an operation from the CLI: the VM's status changes shown on stderr as they happen, the
// operation's error turned into a failure, and a daemon that restarts meanwhile reconnected to (the
// daemon keeps its operations on disk, so the wait ends with the operation's true final state).

import { type ApiClient, ApiError } from "../api/client.ts";
import type { Instance, Operation } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, printJson } from "./output.ts";

/** A daemon that went away this many times during one wait is not coming back usefully. */
const MAX_RECONNECTS = 5;

/**
 * Waits until operation `id` is DONE, calling `onProgress` after each wait call. When the daemon cannot
 * be reached (killed, restarting), connects again — starting it, as any command would — and goes on.
 */
export async function waitUntilDone(
  client: ApiClient,
  id: string,
  onProgress?: (op: Operation, client: ApiClient) => void,
  stepSec = 2,
): Promise<Operation> {
  let reconnects = 0;
  for (;;) {
    let op: Operation;
    try {
      op = await client.waitOperation(id, stepSec);
    } catch (e) {
      if (!(e instanceof ApiError && e.status === 0) || reconnects >= MAX_RECONNECTS) throw e;
      reconnects++;
      process.stderr.write(`tsvm: lost the daemon while waiting (${e.message}); reconnecting\n`);
      client = await connectDaemon();
      continue;
    }
    onProgress?.(op, client);
    if (op.status === "DONE") return op;
  }
}

/** Waits until `op` is DONE, printing "name: STATUS" lines on stderr when the VM's status changes. */
export async function waitWithProgress(client: ApiClient, op: Operation, quiet = false): Promise<Operation> {
  let last = "";
  const show = async (c: ApiClient) => {
    if (quiet) return;
    const vm = await c.getInstance(op.targetName).catch(() => undefined);
    const now = vm ? vm.status : "";
    if (now && now !== last) {
      process.stderr.write(`${op.targetName}: ${now}\n`);
      last = now;
    }
  };
  await show(client);
  let latest = client;
  const done = await waitUntilDone(
    client,
    op.id,
    (_, c) => {
      latest = c;
      void show(c);
    },
    1,
  );
  await show(latest);
  return done;
}

/**
 * What an action command does with the operation it started: with --async, prints its id (the operation
 * itself in JSON) and returns undefined; otherwise waits until it is DONE (progress on stderr unless JSON)
 * and returns it, throwing OperationFailedError when it failed.
 */
export async function waitUnlessAsync(
  client: ApiClient,
  op: Operation,
  options: { readonly async?: boolean; readonly json: boolean },
): Promise<Operation | undefined> {
  if (options.async) {
    if (options.json) printJson(op);
    else process.stdout.write(`${op.id}\n`);
    return undefined;
  }
  const done = await waitWithProgress(client, op, options.json);
  if (done.error) throw new OperationFailedError(done);
  return done;
}

/**
 * An action command on one VM, once its arguments are checked: connects to the daemon, starts the
 * operation with `start`, waits for it as waitUnlessAsync does, then prints the VM as it is now, whole in
 * JSON or as the line `describe` makes of it. Returns the command's exit status (a failure said in one line).
 */
export async function runInstanceAction(
  command: string,
  name: string,
  options: { readonly async?: boolean; readonly json: boolean },
  start: (client: ApiClient) => Promise<Operation>,
  describe: (vm: Instance) => string,
): Promise<number> {
  try {
    const client = await connectDaemon();
    const done = await waitUnlessAsync(client, await start(client), options);
    if (done === undefined) return 0;
    const vm = await client.getInstance(name);
    if (options.json) printJson(vm);
    else process.stdout.write(`${describe(vm)}\n`);
    return 0;
  } catch (e) {
    return fail(command, e);
  }
}

export class OperationFailedError extends Error {
  constructor(op: Operation) {
    super(`${op.operationType} of '${op.targetName}' failed: ${op.error?.message ?? "unknown error"}`);
    this.name = "OperationFailedError";
  }
}
