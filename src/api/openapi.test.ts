// The generated OpenAPI document: Redocly's linter finds no error in it (run offline, with its built-in
// recommended rules), and the validator tests hold answers to really refuses what does not conform.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { ERROR_CODES } from "./error-codes.ts";
import { API_OPERATIONS, buildOpenApiDocument, documentValidator } from "./openapi.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "../..");

test("npx @redocly/cli lint finds no error in the document", { timeout: 120_000 }, async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-openapi-"));
  try {
    await writeFile(join(dir, "openapi.json"), JSON.stringify(buildOpenApiDocument(), null, 2));
    // The built-in ruleset only: nothing is fetched (this works with no network at all).
    await writeFile(join(dir, "redocly.yaml"), "extends:\n  - recommended\n");
    const { stdout } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) =>
      execFile(
        process.execPath,
        [
          join(root, "node_modules/@redocly/cli/bin/cli.js"),
          "lint",
          "--config",
          join(dir, "redocly.yaml"),
          "--format",
          "json",
          join(dir, "openapi.json"),
        ],
        {
          cwd: dir,
          env: { ...process.env, REDOCLY_TELEMETRY: "off", REDOCLY_SUPPRESS_UPDATE_NOTICE: "true" },
          timeout: 110_000,
        },
        (error, stdout, stderr) =>
          error && !stdout ? reject(new Error(`redocly failed: ${stderr}`)) : resolve({ stdout, stderr }),
      ),
    );
    const report = JSON.parse(stdout) as {
      totals: { errors: number };
      problems: Array<{ severity: string; ruleId: string; message: string }>;
    };
    const errors = report.problems
      .filter((p) => p.severity === "error")
      .map((p) => `${p.ruleId}: ${p.message}`);
    assert.deepEqual(errors, []);
    assert.equal(report.totals.errors, 0);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("the document's validator refuses answers that do not conform", () => {
  const validate = documentValidator(buildOpenApiDocument());
  const op = {
    kind: "tsvm#operation",
    id: "operation-1-ab",
    operationType: "insert",
    targetName: "web",
    status: "DONE",
    progress: 100,
    statusMessage: "",
    insertTime: "2026-01-01T00:00:00.000Z",
    startTime: null,
    endTime: "2026-01-01T00:00:01.000Z",
    error: null,
  };
  assert.deepEqual(validate("Operation", op), []);
  assert.notDeepEqual(validate("Operation", { ...op, extra: 1 }), []);
  assert.notDeepEqual(validate("Operation", { ...op, status: "FINISHED" }), []);
  assert.notDeepEqual(validate("Operation", { ...op, endTime: "yesterday" }), []);
  assert.notDeepEqual(validate("Operation", { ...op, error: { code: 5, message: "x" } }), []);
  assert.deepEqual(validate("ExecChunk", { exitCode: 0 }), []);
  assert.notDeepEqual(validate("ExecChunk", { exitCode: 256 }), []);
  assert.deepEqual(validate("Nope", {}), ["the document has no schema Nope"]);
});

test("every error answer the document lists has the status of the error-code table", () => {
  const doc = buildOpenApiDocument() as { paths: Record<string, Record<string, unknown>> };
  let checked = 0;
  for (const op of API_OPERATIONS) {
    const responses = (doc.paths[op.path]![op.method.toLowerCase()] as { responses: Record<string, unknown> })
      .responses;
    for (const code of op.errors) {
      const status = String(ERROR_CODES.get(code)!.status);
      const described = (responses[status] as { description: string } | undefined)?.description ?? "";
      assert.ok(described.includes(`\`${code}\``), `${op.operationId}: ${code} under ${status}`);
      checked++;
    }
  }
  assert.ok(checked > 30);
});
