// Validation of request bodies at the API boundary, against the request schemas (src/api/schemas): types
// and unknown fields here, ranges of sizes and names in the hypervisor, so that both say the same thing
// whatever the client.

import { MoveInstanceRequest } from "../schemas/move-schemas.ts";
import { InsertNetworkRequest } from "../schemas/network-schemas.ts";
import type { TSchema } from "@sinclair/typebox";
import { ExecRequest, MAX_EXEC_COMMAND_BYTES } from "../schemas/api-schemas.ts";
import { schemaCheck } from "../schemas/schema-check.ts";
import { InsertSnapshotRequest } from "../schemas/snapshot-schemas.ts";
import { OpenWebConsoleRequest } from "../schemas/web-console-schemas.ts";
import {
  InsertInstanceRequest,
  SetMachineTypeRequest,
  UpdateInstanceRequest,
} from "../schemas/vm-schemas.ts";

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

/** A validator of request bodies of `schema`: the body, typed, or an ApiFailure naming the field. */
function bodyValidator<T extends TSchema>(schema: T): (body: unknown) => T["static"] {
  const check = schemaCheck(schema);
  return (body) => {
    if (body === undefined) throw new ApiFailure(400, "invalid-argument", "the request needs a JSON body");
    const result = check(body);
    if (result.ok) return result.value;
    const { field, text } = result.problem;
    throw new ApiFailure(
      400,
      "invalid-argument",
      field === ""
        ? `the request body ${text.replace("must be an object", "must be a JSON object")}`
        : `the field '${field}' ${text}`,
    );
  };
}

export const validateInsert = bodyValidator(InsertInstanceRequest);
export const validateSetMachineType = bodyValidator(SetMachineTypeRequest);
export const validateMove = bodyValidator(MoveInstanceRequest);
export const validateUpdate = bodyValidator(UpdateInstanceRequest);
export const validateInsertSnapshot = bodyValidator(InsertSnapshotRequest);
export const validateInsertNetwork = bodyValidator(InsertNetworkRequest);
export const validateOpenWebConsole = bodyValidator(OpenWebConsoleRequest);
const checkExec = bodyValidator(ExecRequest);

export function validateExec(body: unknown): ExecRequest {
  const req = checkExec(body);
  // The schema bounds characters; the guest's limit is in bytes of UTF-8.
  const bytes = Buffer.byteLength(req.command);
  if (bytes > MAX_EXEC_COMMAND_BYTES)
    throw new ApiFailure(
      400,
      "invalid-argument",
      `the command must be 1 to ${MAX_EXEC_COMMAND_BYTES} bytes long (it is ${bytes})`,
    );
  if (req.command.includes("\0"))
    throw new ApiFailure(400, "invalid-argument", "the command cannot contain a NUL character");
  return req;
}
