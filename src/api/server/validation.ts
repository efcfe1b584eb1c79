// Validation of request bodies at the API boundary: types and unknown fields here, ranges (sizes, names)
// in the hypervisor, so that both say the same thing whatever the client.

import {
  type ExecRequest,
  type InsertInstanceRequest,
  MAX_AGENT_WAIT_SECONDS,
  MAX_EXEC_COMMAND_BYTES,
  MAX_EXEC_TIMEOUT_SECONDS,
  type SetMachineTypeRequest,
} from "../types.ts";

/** An HTTP error answer: status, a stable reason, and the message a user reads. */
export class ApiFailure extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
    this.name = "ApiFailure";
  }
}

/** "text": a string of any length (the body's own bound applies); "string": at most 256 characters. */
type FieldKind = "string" | "text" | "integer" | "boolean" | "integer|null";

function checkObject(
  body: unknown,
  fields: Record<string, FieldKind>,
  required: string[],
): Record<string, unknown> {
  if (body === undefined) throw new ApiFailure(400, "invalid-argument", "the request needs a JSON body");
  if (typeof body !== "object" || body === null || Array.isArray(body))
    throw new ApiFailure(400, "invalid-argument", "the request body must be a JSON object");
  const obj = body as Record<string, unknown>;
  for (const key of Object.keys(obj))
    if (!Object.hasOwn(fields, key))
      throw new ApiFailure(
        400,
        "invalid-argument",
        `unknown field '${key.slice(0, 60)}'; the fields are ${Object.keys(fields).join(", ")}`,
      );
  for (const key of required)
    if (obj[key] === undefined)
      throw new ApiFailure(400, "invalid-argument", `the field '${key}' is required`);
  for (const [key, kind] of Object.entries(fields)) {
    const v = obj[key];
    if (v === undefined) continue;
    const ok =
      kind === "text"
        ? typeof v === "string"
        : kind === "string"
          ? typeof v === "string" && v.length <= 256
          : kind === "boolean"
            ? typeof v === "boolean"
            : (kind === "integer|null" && v === null) || (typeof v === "number" && Number.isSafeInteger(v));
    if (!ok)
      throw new ApiFailure(
        400,
        "invalid-argument",
        `the field '${key}' must be ${kind === "text" ? "a string" : kind === "string" ? "a string (at most 256 characters)" : kind === "boolean" ? "true or false" : kind === "integer" ? "a whole number" : "a whole number or null"}`,
      );
  }
  return obj;
}

export function validateInsert(body: unknown): InsertInstanceRequest {
  return checkObject(
    body,
    {
      name: "string",
      machineType: "string",
      cpus: "integer",
      memoryMiB: "integer",
      image: "string",
      engine: "string",
      automaticRestart: "boolean",
      cpuCapPercent: "integer|null",
      cpuWeight: "integer",
    },
    ["name"],
  ) as unknown as InsertInstanceRequest;
}

export function validateSetMachineType(body: unknown): SetMachineTypeRequest {
  return checkObject(body, { machineType: "string" }, ["machineType"]) as unknown as SetMachineTypeRequest;
}

export function validateExec(body: unknown): ExecRequest {
  const req = checkObject(body, { command: "text", timeoutSec: "integer", agentWaitSec: "integer" }, [
    "command",
  ]) as unknown as ExecRequest;
  const bytes = Buffer.byteLength(req.command);
  if (bytes === 0 || bytes > MAX_EXEC_COMMAND_BYTES)
    throw new ApiFailure(
      400,
      "invalid-argument",
      `the command must be 1 to ${MAX_EXEC_COMMAND_BYTES} bytes long (it is ${bytes})`,
    );
  if (req.command.includes("\0"))
    throw new ApiFailure(400, "invalid-argument", "the command cannot contain a NUL character");
  if (req.timeoutSec !== undefined && (req.timeoutSec < 1 || req.timeoutSec > MAX_EXEC_TIMEOUT_SECONDS))
    throw new ApiFailure(
      400,
      "invalid-argument",
      `timeoutSec must be from 1 to ${MAX_EXEC_TIMEOUT_SECONDS} seconds`,
    );
  if (req.agentWaitSec !== undefined && (req.agentWaitSec < 0 || req.agentWaitSec > MAX_AGENT_WAIT_SECONDS))
    throw new ApiFailure(
      400,
      "invalid-argument",
      `agentWaitSec must be from 0 to ${MAX_AGENT_WAIT_SECONDS} seconds`,
    );
  return req;
}
