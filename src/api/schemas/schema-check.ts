// Checks a JSON value against one of tsvm's schemas (ajv 8, JSON Schema 2020-12, as the OpenAPI 3.1
// document) and says what is wrong in tsvm's words: which field, and what it must be.

import { createRequire } from "node:module";
import type { TSchema } from "@sinclair/typebox";
import type { ErrorObject, ValidateFunction } from "ajv";
import type { Ajv2020 } from "ajv/dist/2020.js";

// ajv and ajv-formats are CommonJS, loaded when the first schema is compiled rather than when this module
// is: a process that only imports a module with a checker (a VMM starting a restored guest) would otherwise
// spend ~250 ms of CPU loading ajv and compiling a schema it never uses before its guest can run.
const require = createRequire(import.meta.url);

/** The first problem found: the field ("" for the value itself; "history[3].at" for a nested one). */
export interface SchemaProblem {
  readonly field: string;
  /** "must be a whole number from 1 to 8", "is required", "is not a known field (the fields are …)". */
  readonly text: string;
}

export type SchemaCheck<T> = (
  value: unknown,
) => { ok: true; value: T } | { ok: false; problem: SchemaProblem };

/** One ajv for every schema: `verbose` puts the failing schema in each error, which the words come from. */
export function newAjv(): Ajv2020 {
  const { Ajv2020 } = require("ajv/dist/2020.js") as typeof import("ajv/dist/2020.js");
  // ajv-formats's function is the module itself or the `default` inside it.
  const formats = require("ajv-formats") as { default?: unknown };
  const addFormats = (formats.default ?? formats) as (ajv: Ajv2020) => unknown;
  const ajv = new Ajv2020({ allErrors: false, verbose: true, strict: false, validateFormats: true });
  addFormats(ajv);
  return ajv;
}

let sharedAjv: Ajv2020 | undefined;

/** A checker for values of `schema`; the schema is compiled once, on the checker's first use. */
export function schemaCheck<T extends TSchema>(schema: T): SchemaCheck<T["static"]> {
  let validate: ValidateFunction | undefined;
  return (value) => {
    sharedAjv ??= newAjv();
    validate ??= sharedAjv.compile(withoutIds(schema));
    if (validate(value)) return { ok: true, value: value as T["static"] };
    return { ok: false, problem: describeError(validate.errors ?? []) };
  };
}

/**
 * A plain copy of `schema` without `$id`s: a named schema is embedded wherever it is used, and ajv would
 * take each embedded `$id` for a separate resource of the same name (and refuse to compile a schema twice).
 */
export function withoutIds(schema: unknown): Record<string, unknown> {
  return JSON.parse(JSON.stringify(schema), (key, value) => (key === "$id" ? undefined : value));
}

/** "history/3/at" → "history[3].at". */
function fieldName(instancePath: string, extra?: string): string {
  const parts = instancePath.split("/").slice(1);
  if (extra !== undefined) parts.push(extra);
  let out = "";
  for (const p of parts) {
    const key = p.replace(/~1/g, "/").replace(/~0/g, "~");
    out += /^\d+$/.test(key) ? `[${key}]` : out === "" ? key : `.${key}`;
  }
  return out;
}

function describeError(errors: readonly ErrorObject[]): SchemaProblem {
  // With allErrors off, ajv stops at the first failing keyword; for a union it lists each branch's failure
  // and then the union's own, which is the one that describes every allowed form.
  const e = errors[errors.length - 1];
  if (!e) return { field: "", text: "is invalid" };
  if (e.keyword === "required")
    return {
      field: fieldName(e.instancePath, (e.params as { missingProperty: string }).missingProperty),
      text: "is required",
    };
  if (e.keyword === "additionalProperties") {
    const known = Object.keys((e.parentSchema as { properties?: object } | undefined)?.properties ?? {});
    const key = (e.params as { additionalProperty: string }).additionalProperty;
    return {
      field: fieldName(e.instancePath, key.slice(0, 60)),
      text: `is not a known field (the fields are ${known.join(", ")})`,
    };
  }
  return { field: fieldName(e.instancePath), text: `must be ${describeSchema(e.parentSchema ?? {})}` };
}

/** What a value of `schema` is, in words: "a whole number from 1 to 8", "an ISO 8601 time or null". */
export function describeSchema(schema: Record<string, unknown>): string {
  if (Array.isArray(schema.anyOf))
    return (schema.anyOf as Array<Record<string, unknown>>).map(describeSchema).join(" or ");
  if (Array.isArray(schema.enum)) return `one of ${(schema.enum as unknown[]).join(", ")}`;
  if ("const" in schema) return JSON.stringify(schema.const);
  const range = (min: unknown, max: unknown, unit = ""): string =>
    typeof min === "number" && typeof max === "number"
      ? ` from ${min} to ${max}${unit}`
      : typeof min === "number"
        ? ` of at least ${min}${unit}`
        : typeof max === "number"
          ? ` of at most ${max}${unit}`
          : "";
  switch (schema.type) {
    case "integer":
      return `a whole number${range(schema.minimum, schema.maximum)}`;
    case "number":
      return `a number${range(schema.minimum, schema.maximum)}`;
    case "boolean":
      return "true or false";
    case "null":
      return "null";
    case "string":
      if (schema.format === "date-time") return "an ISO 8601 time";
      if (typeof schema.pattern === "string") return `a string matching ${schema.pattern}`;
      if (schema.minLength === 1 && schema.maxLength === undefined) return "a non-empty string";
      return `a string${range(schema.minLength, schema.maxLength, " characters long").replace(" of ", " ")}`;
    case "array":
      return `an array${range(undefined, schema.maxItems, " entries").replace(" of at most", " of at most")}`;
    case "object":
      return "an object";
    default:
      return "valid";
  }
}
