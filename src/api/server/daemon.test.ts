// The daemon's hold on its data directory: of two daemons starting at the same moment, exactly one gets
// the directory; the other is refused at once with `already-running`, before it touches any VM.
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fixtureLauncherConfig } from "../../hypervisor/fixtures/fixture-launcher.ts";
import { processAlive } from "../../hypervisor/process-alive.ts";
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

test("the daemon keeps a spare VMM waiting while it runs, and ends it when it stops", async () => {
  const home = await mkdtemp(join(tmpdir(), "tsvm-daemon-"));
  try {
    await writeFile(join(home, "config.json"), JSON.stringify({ defaultEngine: "fixture" }));
    const lines: string[] = [];
    const stopped = runDaemon({
      home,
      vmmEntry: fixtureLauncherConfig.vmmEntry,
      nodeArgs: fixtureLauncherConfig.nodeArgs,
      engineModules: fixtureLauncherConfig.engineModules,
      spareVmm: { codeStamp: () => "test" },
      log: (line: string) => lines.push(line),
    });
    let pid: number | undefined;
    for (let i = 0; i < 1200 && pid === undefined; i++) {
      pid = Number(lines.map((l) => /spare VMM \(pid (\d+)\) ready/.exec(l)?.[1]).find(Boolean)) || undefined;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(pid, `a spare became ready:\n${lines.join("\n")}`);
    assert.ok(processAlive(pid));
    process.emit("SIGTERM");
    await stopped;
    assert.ok(!processAlive(pid), "the spare is gone once the daemon has stopped");
  } finally {
    await rm(home, { recursive: true, force: true });
  }
});
