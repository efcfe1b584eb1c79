// End to end with real Linux through bin/tsvm: memory snapshots of a running guest as a tree. A file on the
// guest's disk changed after each snapshot reads back as it was at the restored one; a counting loop started
// before the snapshots is running again after each restore (the same process, counting on); deleting the
// middle snapshot keeps the others restorable; the tree survives a daemon restart; after kill -9 of the VMM
// in the middle of guest writes `qemu-img check` passes on every disk file of the data directory.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { AGENT_WAIT_SECONDS, BOOT_TIMEOUT_MS, linuxVmFixture, noImage, until } from "./linux-vm-fixture.ts";

const { home, client, tsvm, exec } = await linuxVmFixture("snapshots");

/** In guest memory only: a tmpfs, so what it holds after a restore came from the snapshot's memory. */
const MEM = "/mnt/mem";
const COUNTER = `echo $$ > ${MEM}/pid; i=0; while :; do i=$((i+1)); echo $i > ${MEM}/n; done`;

/** The counting loop's latest count and pid (shell builtins only: forks are slow on the interpreter). */
function probe(): Promise<{ n: number; pid: number }> {
  return until(
    "the loop's figures",
    async () => {
      const out = await exec("snap", `read n < ${MEM}/n; read p < ${MEM}/pid; echo "$n|$p"`);
      const [n, pid] = out.trim().split("|");
      if (!/^\d+$/.test(n ?? "") || !/^\d+$/.test(pid ?? "")) return undefined;
      return { n: Number(n), pid: Number(pid) };
    },
    120_000,
  );
}

async function ok(...args: string[]): Promise<string> {
  const r = await tsvm(...args);
  assert.equal(r.code, 0, `tsvm ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

/** Writes TEXT to /snap-file on the guest's disk, durably, and to a file in its memory (the tmpfs). */
async function writeFile(text: string): Promise<void> {
  await exec("snap", `echo ${text} > /snap-file && sync && echo ${text} > ${MEM}/mark`);
}

/** What the disk's file and the memory's file hold: "one/one" after a restore of the snapshot at "one". */
async function readFile(): Promise<string> {
  return (await exec("snap", `read d < /snap-file; read m < ${MEM}/mark; echo "$d/$m"`)).trim();
}

/**
 * qemu-img check (and info --backing-chain) of every disk file in the data directory: how many. Exit 0 (no
 * errors, no leaks) for all of them, except that the active disk of a VM still running (`running`) may
 * show its VMM's allocation pool as leaked clusters (3), as a running QEMU's does. A disk whose VMM was
 * killed has been given back its leaks by the daemon by the time the VM is TERMINATED.
 */
function checkEveryDisk(running = false): number {
  const active = readdirSync(join(home, "vms"))
    .filter((vm) => !vm.startsWith("."))
    .map((vm) => join(home, "vms", vm, "disk.qcow2"));
  const nodes = readdirSync(join(home, "disks")).map((n) => join(home, "disks", n));
  for (const f of [...active, ...nodes]) {
    const r = spawnSync("qemu-img", ["check", f], { encoding: "utf8" });
    const allowed = running && active.includes(f) ? [0, 3] : [0];
    assert.ok(allowed.includes(r.status ?? -1), `qemu-img check ${f} (${r.status}): ${r.stdout}${r.stderr}`);
    assert.doesNotMatch(r.stdout ?? "", /ERROR|corrupt/, `qemu-img check ${f}`);
    execFileSync("qemu-img", ["info", "--backing-chain", f], { stdio: "ignore" });
  }
  return active.length + nodes.length;
}

test("snapshots of a running Linux guest: disk and processes come back at each restore; delete, daemon restart, kill -9", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 1_800_000,
}, async (t) => {
  const t0 = Date.now();
  const mark = (what: string) => t.diagnostic(`${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);
  await ok("create", "snap", "--memory", "128M", "--no-automatic-restart");
  await ok(
    "exec",
    "snap",
    "--agent-wait",
    AGENT_WAIT_SECONDS,
    "--",
    "sh",
    "-c",
    `mkdir -p ${MEM} && mount -t tmpfs tmpfs ${MEM} && { setsid nice -n 19 sh -c '${COUNTER}' </dev/null >/dev/null 2>&1 & }`,
  );
  mark("booted, loop started");
  const loop = await probe();

  const pauses: number[] = [];
  /** Takes snapshot `name`; the loop's figures just before it: the snapshot's count is at least that. */
  const snapshot = async (name: string) => {
    const before = await probe();
    const out = await ok("snapshot", "create", "snap", name, "--description", `at ${name}`);
    const m = /paused (\d+) ms/.exec(out);
    assert.ok(m, `the pause is reported: ${out}`);
    pauses.push(Number(m[1]));
    return before;
  };
  await writeFile("one");
  const at1 = await snapshot("s1");
  await writeFile("two");
  await snapshot("s2");
  await writeFile("three");
  const at3 = await snapshot("s3");
  await writeFile("four");
  const late = await probe();
  assert.equal(late.pid, loop.pid);
  assert.ok(late.n > at3.n, "the loop ran on through the snapshots");
  mark(`three snapshots taken; pauses ${pauses.join(", ")} ms`);

  const tree = JSON.parse(await ok("snapshot", "list", "snap", "--format", "json")) as Array<{
    name: string;
    parent: string | null;
    memory: boolean;
    diskSizeBytes: number;
    memorySizeBytes: number;
  }>;
  assert.deepEqual(
    tree.map((s) => [s.name, s.parent, s.memory]),
    [
      ["s1", null, true],
      ["s2", "s1", true],
      ["s3", "s2", true],
    ],
  );
  assert.ok(tree.every((s) => s.memorySizeBytes > 0));
  assert.match(await ok("describe", "snap"), /snapshots:\n.*NAME[\s\S]*s1[\s\S]*s2[\s\S]*s3/);

  // Deleting the middle snapshot: s3's disk descends through s2's layer, which stays.
  await ok("snapshot", "delete", "snap", "s2");
  await ok("snapshot", "restore", "snap", "s3");
  assert.equal((await client.getInstance("snap")).status, "RUNNING");
  assert.equal(await readFile(), "three/three", "the disk and the memory are as they were at s3");
  const r3a = await probe();
  const r3b = await probe();
  assert.equal(r3a.pid, loop.pid, "the same loop process runs after the restore");
  assert.ok(r3a.n >= at3.n, `it continued from s3's count (${at3.n} ≤ ${r3a.n})`);
  assert.ok(r3b.n > r3a.n, "and counts on");
  mark("restored s3");

  // The daemon goes away (the VM runs on) and comes back: the tree is as it was.
  await ok("daemon", "stop");
  const listed = JSON.parse(await ok("snapshot", "list", "snap", "--format", "json")) as Array<{
    name: string;
    parent: string | null;
    current: boolean;
  }>;
  assert.deepEqual(
    listed.map((s) => [s.name, s.parent, s.current]),
    [
      ["s1", null, false],
      ["s3", "s1", true],
    ],
  );
  await ok("snapshot", "restore", "snap", "s1");
  assert.equal(await readFile(), "one/one", "the disk and the memory are as they were at s1");
  const r1a = await probe();
  const r1b = await probe();
  assert.equal(r1a.pid, loop.pid);
  assert.ok(r1a.n >= at1.n, `it continued from s1's count (${at1.n} ≤ ${r1a.n})`);
  assert.ok(r1b.n > r1a.n, "and counts on");
  mark("restored s1 after a daemon restart");

  // kill -9 of the VMM while the guest writes its disk: once the daemon has handled it, every disk file
  // passes qemu-img check without even a leak.
  await exec(
    "snap",
    "setsid sh -c 'i=0; while :; do i=$((i+1)); dd if=/dev/urandom of=/w$((i%8)) bs=4k count=64 conv=fsync 2>/dev/null; done' </dev/null >/dev/null 2>&1 &",
  );
  await new Promise((r) => setTimeout(r, 5000));
  const vmmPid = (await client.getInstance("snap")).vmmPid!;
  process.kill(vmmPid, "SIGKILL");
  await until("the VM to be TERMINATED", async () =>
    (await client.getInstance("snap")).status === "TERMINATED" ? true : undefined,
  );
  const checked = checkEveryDisk();
  t.diagnostic(`qemu-img check passed on ${checked} disk files; snapshot pauses ${pauses.join(", ")} ms`);
  // And the guest boots from that disk again, and s3 is still restorable after all this.
  await ok("snapshot", "restore", "snap", "s3");
  assert.equal(await readFile(), "three/three");
  assert.ok(checkEveryDisk(true) >= 4);
});
