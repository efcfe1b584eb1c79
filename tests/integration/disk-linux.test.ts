// End to end: the default image's Linux through `tsvm run --disk`, as a user would run it. On a raw disk it
// sees discard and write-zeroes, and what fstrim frees in the guest is freed on the host; it boots from
// qcow2 overlays qemu-img made (on a raw or a qcow2 base), which qemu-img then checks clean, also after the
// tsvm process is killed in the middle of the guest's writes.
import assert from "node:assert/strict";
import { type ChildProcess, spawnSync } from "node:child_process";
import { createHash } from "node:crypto";
import { closeSync, fstatSync, mkdtempSync, openSync, readFileSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { fallocate } from "../../src/engines/backends/fallocate.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { BOOT_TIMEOUT_MS, img, skip, spawnTsvmRun, tsvmRun } from "./tsvm-run-fixture.ts";

/** 512-byte blocks a file holds on the host's filesystem. */
const blocks = (p: string) => statSync(p).blocks;

test("the guest's fstrim gives the raw disk's freed blocks back to the host", { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-disk-linux-"));
  try {
    const disk = copyDiskFor(img!, join(dir, "disk.img"));
    // Every block allocated first, whatever the copy kept sparse, so that only a punch can free one.
    const fd = openSync(disk, "r+");
    assert.equal(fallocate(fd, 0, 0, fstatSync(fd).size), "ok");
    closeSync(fd);
    const size = statSync(disk).size;
    assert.ok(blocks(disk) * 512 >= size, "fully allocated");
    // 16 MiB of data the host must store, then deleted and trimmed; a clean poweroff so e2fsck can judge.
    const cmd =
      "cat /sys/block/vda/queue/discard_max_bytes /sys/block/vda/queue/write_zeroes_max_bytes; " +
      "dd if=/dev/urandom of=/junk bs=64k count=256 2>/dev/null; sync; rm /junk; sync; fstrim -v /; " +
      "poweroff; sleep 600";
    const r = await tsvmRun(["--disk", disk, "--exec", cmd]);
    assert.equal(r.status, 0, r.stderr);
    const [discardMax, zeroesMax, trimmed] = r.stdout.split("\n");
    assert.ok(Number(discardMax) > 0, `discard_max_bytes: ${r.stdout}`);
    assert.ok(Number(zeroesMax) > 0, `write_zeroes_max_bytes: ${r.stdout}`);
    const m = /^\/: (\d+) bytes trimmed$/.exec(trimmed ?? "");
    assert.ok(m && Number(m[1]) >= 16 << 20, `fstrim -v: ${r.stdout}`);
    // The host must have freed what the guest trimmed, less the little the guest wrote again before its
    // poweroff (journal and metadata).
    const trimmedBytes = Number(m[1]);
    const after = blocks(disk);
    assert.ok(
      after * 512 <= size - trimmedBytes + (4 << 20),
      `${size / 512} host blocks → ${after}, though the guest trimmed ${trimmedBytes} bytes`,
    );
    const fsck = spawnSync("/sbin/e2fsck", ["-n", "-f", disk], { encoding: "utf8", timeout: 60_000 });
    assert.equal(fsck.status, 0, `e2fsck: ${fsck.stdout}${fsck.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/** Runs a host tool; its status and output. */
function run(cmd: string, ...args: string[]) {
  const r = spawnSync(cmd, args, { encoding: "utf8", timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, out: `${r.stdout}${r.stderr}` };
}

function sha256(path: string): string {
  return createHash("sha256").update(readFileSync(path)).digest("hex");
}

/** qemu-img check finds no error in `path` (0: clean; 3, where allowed: leaked clusters only, which waste
 *  space and harm no data — what a killed writer leaves until the disk is next opened). Returns its output. */
function assertChecks(path: string, allowLeaks = false): string {
  const r = run("qemu-img", "check", path);
  assert.ok(
    r.status === 0 || (allowLeaks && r.status === 3),
    `qemu-img check ${path} (${r.status}):\n${r.out}`,
  );
  assert.doesNotMatch(r.out, /ERROR|corrupt/, `qemu-img check ${path}`);
  if (r.status === 0) assert.match(r.out, /No errors were found on the image/);
  return r.out;
}

/** What the guest's file `name` holds, read by e2fsprogs from the disk as qemu-img flattens it. */
function guestFile(dir: string, disk: string, name: string): string {
  const flat = join(dir, "flat.raw");
  rmSync(flat, { force: true });
  assert.equal(run("qemu-img", "convert", "-O", "raw", disk, flat).status, 0);
  const r = run("/sbin/debugfs", "-R", `cat ${name}`, flat);
  rmSync(flat);
  return r.stdout;
}

/** A base made by qemu-img from the image's disk: raw, or that converted to qcow2; and an empty qcow2
 *  overlay on it, as qemu-img creates one. */
function qemuChain(dir: string, baseFormat: "raw" | "qcow2"): { base: string; top: string } {
  const raw = copyDiskFor(img!, join(dir, "base.raw"));
  let base = raw;
  if (baseFormat === "qcow2") {
    base = join(dir, "base.qcow2");
    assert.equal(run("qemu-img", "convert", "-O", "qcow2", raw, base).status, 0);
    rmSync(raw);
  }
  const top = join(dir, "top.qcow2");
  const made = run("qemu-img", "create", "-f", "qcow2", "-b", base, "-F", baseFormat, top);
  assert.equal(made.status, 0, made.out);
  return { base, top };
}

for (const baseFormat of ["raw", "qcow2"] as const) {
  test(`tsvm run boots a qcow2 overlay of a ${baseFormat} base made by qemu-img; the guest's writes and trims land in the overlay, which qemu-img checks clean`, {
    skip,
  }, async () => {
    const dir = mkdtempSync(join(tmpdir(), "tsvm-disk-linux-"));
    try {
      const { base, top } = qemuChain(dir, baseFormat);
      const baseHash = sha256(base);
      const cmd =
        "echo written-in-tsvm > /root/note; dd if=/dev/urandom of=/junk bs=64k count=64 2>/dev/null; sync; " +
        "rm /junk; sync; fstrim -v / && cat /root/note; poweroff; sleep 600";
      const r = await tsvmRun(["--disk", top, "--exec", cmd]);
      assert.equal(r.status, 0, r.stderr);
      assert.match(r.stdout, /^\/: \d+ bytes trimmed\nwritten-in-tsvm\n/);
      assertChecks(top);
      assert.equal(sha256(base), baseHash, "the backing file is unchanged");
      if (baseFormat === "qcow2") assertChecks(base);
      assert.equal(guestFile(dir, top, "/root/note"), "written-in-tsvm\n");
      // The guest left its file system clean.
      const flat = join(dir, "flat.raw");
      assert.equal(run("qemu-img", "convert", "-O", "raw", top, flat).status, 0);
      const fsck = run("/sbin/e2fsck", "-n", "-f", flat);
      assert.equal(fsck.status, 0, `e2fsck: ${fsck.out}`);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}

/** Waits until `path` is larger than `bytes` (the guest's writes reach it), up to the boot timeout. */
async function grownPast(path: string, bytes: number, child: ChildProcess): Promise<void> {
  const end = Date.now() + BOOT_TIMEOUT_MS;
  while (statSync(path).size <= bytes) {
    if (child.exitCode !== null) throw new Error(`tsvm run ended (${child.exitCode}) before writing`);
    if (Date.now() > end) throw new Error(`${path} did not grow past ${bytes} bytes`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test("kill -9 of tsvm run while the guest writes leaves its qcow2 passing qemu-img check (leaks at most), and it boots again, leak-free", {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-disk-linux-"));
  try {
    const { base, top } = qemuChain(dir, "raw");
    const baseHash = sha256(base);
    // Two kills, each at a different moment of the guest's write-and-sync loop.
    for (const [round, extraMs] of [
      [1, 0],
      [2, 1700],
    ] as const) {
      const start = statSync(top).size;
      // A new file each round, so that its blocks are new clusters and the overlay grows while it is written.
      // Only what the guest synced must survive the kill: the marker is synced before the writing starts,
      // whereas /bigN's directory entry may still sit in ext4's uncommitted journal when the kill comes.
      const writer = `echo ${round} >/synced${round} && sync && while true; do dd if=/dev/urandom of=/big${round} bs=64k count=200 2>/dev/null; sync; done`;
      const child = spawnTsvmRun(["--disk", top, "--exec", writer]);
      child.stdin.end();
      let stderr = "";
      child.stderr.on("data", (d) => (stderr += d));
      const exited = new Promise<NodeJS.Signals | null>((r) =>
        child.on("exit", (_code, signal) => r(signal)),
      );
      try {
        await grownPast(top, start + (8 << 20), child);
        await new Promise((r) => setTimeout(r, extraMs));
      } finally {
        child.kill("SIGKILL");
      }
      assert.equal(await exited, "SIGKILL", `round ${round}: ${stderr}`);
      assertChecks(top, true);
      assert.equal(sha256(base), baseHash, "the backing file is unchanged");
    }
    // The killed disk opens again, and its Linux mounts and reads it (journal replayed).
    const r = await tsvmRun([
      "--disk",
      top,
      "--exec",
      "cat /synced1 /synced2 && echo mounted; poweroff; sleep 600",
    ]);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^1\n2\nmounted\n/);
    // That open gave back what the kill leaked: the disk is exact again.
    assertChecks(top);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
