// The daemon's hold on its data directory: of two daemons starting at the same moment, exactly one gets
// the directory; the other is refused at once with `already-running`, before it touches any VM.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fixtureLauncherConfig } from "../../hypervisor/fixtures/fixture-launcher.ts";
import { runDaemon } from "./daemon.ts";

test("two daemons starting at once on one home: exactly one runs, the other is refused naming it", async () => {
  const home = await mkdtemp(join(tmpdir(), "tsvm-daemon-"));
  try {
    const lines: string[] = [];
    const options = {
      home,
      vmmEntry: fixtureLauncherConfig.vmmEntry,
      nodeArgs: fixtureLauncherConfig.nodeArgs,
      engineModules: fixtureLauncherConfig.engineModules,
      log: (line: string) => lines.push(line),
    };
    // Both begin in the same turn of the event loop: the closest two daemons can start.
    const outcomes = [runDaemon(options), runDaemon(options)].map((p) =>
      p.then(
        () => "stopped",
        (e: Error & { code?: string }) => `${e.code}: ${e.message}`,
      ),
    );
    const first = await Promise.race(outcomes);
    assert.equal(first, `already-running: a tsvm daemon (pid ${process.pid}) already runs for ${home}`);
    // The winner serves: its record appears and it logs its start once.
    for (let i = 0; i < 200 && !lines.some((l) => l.includes("serving")); i++)
      await new Promise((r) => setTimeout(r, 50));
    assert.equal(lines.filter((l) => l.includes("serving")).length, 1, lines.join("\n"));
    assert.equal(JSON.parse(await readFile(join(home, "daemon.json"), "utf8")).pid, process.pid);
    assert.equal((await readFile(join(home, "daemon.lock"), "utf8")).trim(), String(process.pid));
    process.emit("SIGTERM");
    assert.deepEqual((await Promise.all(outcomes)).sort(), [first, "stopped"].sort());
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});
