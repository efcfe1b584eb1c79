// The console log's rotation with real files: the disk holds at most two files of the limit, positions stay
// absolute across rotations and VMM restarts, a crash mid-rotation is understood, a failing disk is not fatal.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, rename, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ConsoleLogWriter, positionPath, readConsoleLog, rotatedLogPath } from "./console-log.ts";

const roots: string[] = [];
after(async () => {
  for (const r of roots) await rm(r, { recursive: true, force: true });
});

async function logPath(): Promise<string> {
  const root = await mkdtemp(join(tmpdir(), "tsvm-console-"));
  roots.push(root);
  return join(root, "console.log");
}

/** Everything a guest printed: line k is "line kkkkk\n" (11 bytes), so any position names its text. */
function printed(lines: number): string {
  let s = "";
  for (let k = 0; k < lines; k++) s += `line ${String(k).padStart(5, "0")}\n`;
  return s;
}

test("rotation keeps at most two files of the limit; reads by absolute position across them", async () => {
  const path = await logPath();
  const all = printed(300); // 3300 bytes
  const writer = ConsoleLogWriter.open(path, { maxBytes: 1000 });
  // Chunks of odd sizes, some bigger than the limit, so rotation splits chunks.
  for (let at = 0, size = 1; at < all.length; at += size, size = (size * 7 + 3) % 1500)
    writer.write(Buffer.from(all.slice(at, at + size)));
  writer.close();

  assert.equal((await stat(rotatedLogPath(path))).size, 1000);
  assert.equal((await stat(path)).size, 300);
  assert.ok(!existsSync(`${path}.2`));
  // Retained: [2000, 3300). A start before it is moved to its first byte.
  const head = await readConsoleLog(path, 0, 1 << 20);
  assert.equal(head.start, 2000);
  assert.equal(head.next, 3300);
  assert.equal(head.contents, all.slice(2000));
  for (const [start, max] of [
    [2500, 100],
    [2990, 20],
    [3000, 50],
    [3299, 10],
  ] as const) {
    const r = await readConsoleLog(path, start, max);
    assert.equal(r.start, start);
    assert.equal(r.contents, all.slice(start, start + max), `at ${start}`);
    assert.equal(r.next, Math.min(start + max, 3300));
  }
  const beyond = await readConsoleLog(path, 10_000, 100);
  assert.deepEqual(beyond, { contents: "", start: 3300, next: 3300 });

  // A new VMM (the VM restarted) appends where the last one stopped; positions go on.
  const again = ConsoleLogWriter.open(path, { maxBytes: 1000 });
  again.write(Buffer.from("more\n"));
  again.close();
  const tail = await readConsoleLog(path, 3300, 100);
  assert.deepEqual(tail, { contents: "more\n", start: 3300, next: 3305 });
});

test("a crash between the rename and the position record is understood by the reader and repaired by the writer", async () => {
  const path = await logPath();
  const all = printed(200); // 2200 bytes
  const writer = ConsoleLogWriter.open(path, { maxBytes: 1000 });
  writer.write(Buffer.from(all.slice(0, 1900)));
  writer.close();
  // As if the VMM died right after renaming console.log (1000..1900) to console.log.1.
  const record = await readFile(positionPath(path), "utf8");
  await rename(path, rotatedLogPath(path));
  assert.equal(await readFile(positionPath(path), "utf8"), record);
  const seen = await readConsoleLog(path, 0, 1 << 20);
  assert.deepEqual(seen, { contents: all.slice(1000, 1900), start: 1000, next: 1900 });

  const next = ConsoleLogWriter.open(path, { maxBytes: 1000 });
  next.write(Buffer.from(all.slice(1900)));
  next.close();
  const after = await readConsoleLog(path, 0, 1 << 20);
  assert.deepEqual(after, { contents: all.slice(1000), start: 1000, next: 2200 });
});

test("output gathered in one turn reaches the file by the next; a log that cannot be written is dropped, once said", async () => {
  const path = await logPath();
  const writer = ConsoleLogWriter.open(path);
  writer.write(Buffer.from("a"));
  writer.write(Buffer.from("b"));
  await new Promise((r) => setImmediate(r));
  assert.equal(await readFile(path, "utf8"), "ab");
  writer.close();

  const errors: string[] = [];
  const broken = ConsoleLogWriter.open(join(path, "no-such-dir", "console.log"), {
    onError: (m) => errors.push(m),
  });
  broken.write(Buffer.from("lost"));
  broken.flush();
  broken.close();
  assert.equal(errors.length, 1);
  assert.match(errors[0]!, /console log console\.log stopped: ENOTDIR/);
});
