// A string schema with a fixed set of values, written as JSON Schema's `enum` (TypeBox's unions of literals
// become `anyOf` lists, which read worse in the OpenAPI document and in validation errors).

import { type SchemaOptions, type TUnsafe, Type } from "@sinclair/typebox";

export function StringEnum<const T extends readonly string[]>(
  values: T,
  options: SchemaOptions = {},
): TUnsafe<T[number]> {
  return Type.Unsafe<T[number]>({ ...options, type: "string", enum: [...values] });
}
