// Validation of request bodies at the API boundary: types and unknown fields here, ranges (sizes, names)
// in the hypervisor, so that both say the same thing whatever the client.

import type { InsertInstanceRequest, SetMachineTypeRequest } from "../types.ts";

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

type FieldKind = "string" | "integer" | "boolean" | "integer|null";

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
    if (!(key in fields))
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
      kind === "string"
        ? typeof v === "string" && v.length <= 256
        : kind === "boolean"
          ? typeof v === "boolean"
          : (kind === "integer|null" && v === null) || (typeof v === "number" && Number.isSafeInteger(v));
    if (!ok)
      throw new ApiFailure(
        400,
        "invalid-argument",
        `the field '${key}' must be ${kind === "string" ? "a string (at most 256 characters)" : kind === "boolean" ? "true or false" : kind === "integer" ? "a whole number" : "a whole number or null"}`,
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
