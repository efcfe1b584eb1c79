// Checks a JSON value against a schema of src/api/openapi.json (the OpenAPI 3.0 subset that document
// uses: $ref, type, nullable, enum, required, properties, additionalProperties, items, allOf, oneOf,
// pattern, minimum, maximum), so that tests hold every response to the published document.

export type Schema = Record<string, unknown>;

export interface OpenApiDocument {
  readonly openapi: string;
  readonly paths: Record<string, Record<string, unknown>>;
  readonly components: { readonly schemas: Record<string, Schema> };
}

/** Problems found, as "path: what is wrong"; empty when `value` conforms. */
export function validateAgainst(doc: OpenApiDocument, schema: Schema, value: unknown, path = "$"): string[] {
  const problems: string[] = [];
  check(schema, value, path);
  return problems;

  function resolve(s: Schema): Schema {
    const ref = s.$ref;
    if (typeof ref !== "string") return s;
    const name = ref.replace("#/components/schemas/", "");
    const target = doc.components.schemas[name];
    if (!target) throw new Error(`the document has no schema ${ref}`);
    return resolve(target);
  }

  function check(raw: Schema, v: unknown, at: string): void {
    const s = resolve(raw);
    if (v === null) {
      if (s.nullable !== true) problems.push(`${at}: is null, which the schema does not allow`);
      return;
    }
    if (Array.isArray(s.oneOf)) {
      const matching = (s.oneOf as Schema[]).filter((sub) => validateAgainst(doc, sub, v, at).length === 0);
      if (matching.length !== 1)
        problems.push(
          `${at}: matches ${matching.length} of the ${s.oneOf.length} oneOf schemas, not exactly one`,
        );
    }
    if (Array.isArray(s.allOf))
      for (const sub of s.allOf as Schema[]) check({ ...resolve(sub), nullable: s.nullable }, v, at);
    const type = s.type;
    if (type === "object" || s.properties) {
      if (typeof v !== "object" || Array.isArray(v)) return void problems.push(`${at}: must be an object`);
      const obj = v as Record<string, unknown>;
      for (const key of (s.required as string[] | undefined) ?? [])
        if (!(key in obj)) problems.push(`${at}: lacks the required property '${key}'`);
      const props = (s.properties as Record<string, Schema> | undefined) ?? {};
      for (const [key, val] of Object.entries(obj)) {
        if (props[key]) check(props[key], val, `${at}.${key}`);
        else if (s.additionalProperties === false)
          problems.push(`${at}: has the undocumented property '${key}'`);
        else if (typeof s.additionalProperties === "object")
          check(s.additionalProperties as Schema, val, `${at}.${key}`);
      }
    } else if (type === "array") {
      if (!Array.isArray(v)) return void problems.push(`${at}: must be an array`);
      for (let i = 0; i < v.length; i++) check(s.items as Schema, v[i], `${at}[${i}]`);
    } else if (type === "string") {
      if (typeof v !== "string") return void problems.push(`${at}: must be a string`);
      if (typeof s.pattern === "string" && !new RegExp(s.pattern).test(v))
        problems.push(`${at}: does not match ${s.pattern}`);
      if (s.format === "date-time" && Number.isNaN(Date.parse(v))) problems.push(`${at}: is not a date-time`);
    } else if (type === "integer" || type === "number") {
      if (typeof v !== "number" || (type === "integer" && !Number.isInteger(v)))
        return void problems.push(`${at}: must be ${type === "integer" ? "an integer" : "a number"}`);
      if (typeof s.minimum === "number" && v < s.minimum) problems.push(`${at}: is below ${s.minimum}`);
      if (typeof s.maximum === "number" && v > s.maximum) problems.push(`${at}: is above ${s.maximum}`);
    } else if (type === "boolean") {
      if (typeof v !== "boolean") problems.push(`${at}: must be a boolean`);
    }
    if (Array.isArray(s.enum) && !s.enum.includes(v))
      problems.push(`${at}: ${JSON.stringify(v)} is not one of ${s.enum.join(", ")}`);
  }
}
