// Waiting on an operation from the CLI: the VM's status changes shown on stderr as they happen, the
// operation's error turned into a failure.

import type { ApiClient } from "../api/client.ts";
import type { Operation } from "../api/types.ts";

/** Waits until `op` is DONE, printing "name: STATUS" lines on stderr when the VM's status changes. */
export async function waitWithProgress(client: ApiClient, op: Operation, quiet = false): Promise<Operation> {
  let last = "";
  const show = async () => {
    if (quiet) return;
    const vm = await client.getInstance(op.targetName).catch(() => undefined);
    const now = vm ? vm.status : "";
    if (now && now !== last) {
      process.stderr.write(`${op.targetName}: ${now}\n`);
      last = now;
    }
  };
  await show();
  const done = await client.waitUntilDone(op.id, () => void show(), 1);
  await show();
  return done;
}

export class OperationFailedError extends Error {
  constructor(op: Operation) {
    super(`${op.operationType} of '${op.targetName}' failed: ${op.error?.message ?? "unknown error"}`);
    this.name = "OperationFailedError";
  }
}
