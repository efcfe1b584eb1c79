// The web console's record (web-console-record.ts): written atomically for the daemon's user only, read
// back as written, and a record out of shape refused in one line.

import assert from "node:assert/strict";
import { mkdtemp, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { readWebConsoleRecord, type WebConsoleRecord, writeWebConsoleRecord } from "./web-console-record.ts";

const record: WebConsoleRecord = {
  listen: "127.0.0.1:0",
  host: "127.0.0.1",
  port: 41234,
  logins: {
    codes: [{ hash: "a".repeat(64), expiresAt: 1_700_000_000_000 }],
    usedCodes: ["b".repeat(64)],
    sessions: [{ hash: "c".repeat(64), endsAt: 1_700_000_600_000 }],
  },
};

test("a record is written 0600 with its magic and version, and read back as written", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-web-record-"));
  try {
    const path = join(dir, "web-console.json");
    assert.equal(await readWebConsoleRecord(path), null, "no record yet");
    await writeWebConsoleRecord(path, record);
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    assert.deepEqual(await readWebConsoleRecord(path), record);
    assert.deepEqual(await readdir(dir), ["web-console.json"], "no temporary file is left");
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("a record out of shape is refused in one line naming the file", async () => {
  const dir = await mkdtemp(join(tmpdir(), "tsvm-web-record-"));
  try {
    const path = join(dir, "web-console.json");
    const file = { magic: "tsvm-web-console", version: 1, ...record };
    const cases: Array<[unknown, RegExp]> = [
      ["not json {", /is not JSON/],
      [{ ...file, magic: "other" }, /no magic/],
      [{ ...file, version: 9 }, /version 9 is unknown/],
      [{ ...file, port: 0 }, /no port/],
      [{ ...file, logins: { ...record.logins, sessions: [{ hash: "secret", endsAt: 1 }] } }, /out of shape/],
      [{ ...file, logins: { ...record.logins, usedCodes: "x" } }, /out of shape/],
    ];
    for (const [content, problem] of cases) {
      await writeFile(path, typeof content === "string" ? content : JSON.stringify(content));
      await assert.rejects(readWebConsoleRecord(path), (e: Error) => {
        assert.match(e.message, problem);
        assert.ok(e.message.startsWith(path), e.message);
        assert.ok(!e.message.includes("\n"));
        return true;
      });
    }
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
