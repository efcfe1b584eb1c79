import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { test } from "node:test";
import { processAlive } from "./process-alive.ts";

test("a running process is alive; a killed one is not, even while it is an unreaped zombie", async () => {
  // The grandchild's parent exec's into a process that never reaps it, so once killed it stays a zombie.
  const parent = spawn("sh", ["-c", "sleep 30 & echo $!; exec sleep 10"], {
    stdio: ["ignore", "pipe", "ignore"],
  });
  try {
    const pid = Number(await new Promise<string>((r) => parent.stdout.once("data", (d) => r(String(d)))));
    assert.equal(processAlive(pid), true);
    process.kill(pid, "SIGKILL");
    const deadline = Date.now() + 5000;
    while (!readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z") && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 10));
    assert.match(readFileSync(`/proc/${pid}/stat`, "utf8"), /\) Z /, "the killed process is a zombie");
    assert.equal(processAlive(pid), false);
  } finally {
    parent.kill("SIGKILL");
  }
});

test("a pid that does not exist is not alive", () => {
  assert.equal(processAlive(2 ** 22 + 12345), false);
});
