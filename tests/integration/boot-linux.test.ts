// End to end: boots the default image's Linux on the emulator through the CLI (`tsvm run --exec`), as a user
// would, and checks the guest shell, exit-status passthrough, the virtio disk across a reboot, and poweroff.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { FileBlockBackend } from "../../src/engines/backends/file-block-backend.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { BOOT_TIMEOUT_MS, img, skip, tsvmRun } from "./tsvm-run-fixture.ts";

test("the guest shell runs commands: uname -m is riscv64, arithmetic works", { skip }, async () => {
  const r = await tsvmRun(["--exec", "uname -m; echo $((6*7))"]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "riscv64\n42\n");
});

test("two harts: Linux brings up both CPUs", { skip }, async () => {
  const r = await tsvmRun([
    "--cpus",
    "2",
    "--memory",
    "192M",
    "--exec",
    "nproc; grep -c ^processor /proc/cpuinfo",
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, "2\n2\n");
});

test("--exec passes the command's exit status through", { skip }, async () => {
  const r = await tsvmRun(["--exec", "exit 3"]);
  assert.equal(r.status, 3, r.stderr);
  assert.equal(r.stdout, "");
});

test("a file written to the virtio disk survives a reboot; poweroff leaves the file system clean", {
  skip,
}, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-boot-linux-"));
  try {
    const disk = copyDiskFor(img!, join(dir, "disk.img"));
    // First boot writes the file and reboots; after the reboot the same command finds it and powers off.
    // `reboot` and `poweroff` only ask init, so the command sleeps while init shuts down (unmounting).
    const cmd =
      "if [ -f /root/tsvm-persist ]; then cat /root/tsvm-persist; poweroff; sleep 600; " +
      "else echo written-before-reboot > /root/tsvm-persist; sync; reboot; sleep 600; fi";
    const r = await tsvmRun(["--disk", disk, "--exec", cmd], 2 * BOOT_TIMEOUT_MS);
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /^written-before-reboot$/m);
    // The guest unmounted its root before powering off: e2fsck finds nothing to fix.
    const fsck = spawnSync("/sbin/e2fsck", ["-n", "-f", disk], { encoding: "utf8", timeout: 60_000 });
    assert.equal(fsck.status, 0, `e2fsck: ${fsck.stdout}${fsck.stderr}`);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("a running Linux saved while paused carries on in a new engine (suspend/resume)", { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-boot-linux-"));
  const file = (path: string) => ({ name: path, bytes: new Uint8Array(readFileSync(path)) });
  const config = {
    harts: 1,
    memoryBytes: 256 * 1024 * 1024,
    firmware: file(img!.firmware),
    kernel: file(img!.kernel),
    initrd: file(img!.initrd),
    bootargs: "console=ttyS0",
  };
  let out = "";
  const sink = { write: (b: Uint8Array) => (out += Buffer.from(b).toString()) };
  const until = async (re: RegExp, ms: number) => {
    const end = Date.now() + ms;
    while (!re.test(out)) {
      if (Date.now() > end) throw new Error(`no ${re} within ${ms / 1000} s; console: ${out.slice(-2000)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  };
  try {
    const diskPath = copyDiskFor(img!, join(dir, "disk.img"));
    const disk1 = await FileBlockBackend.open(diskPath);
    const first = new RiscvEngine({ config, console: sink, disks: [disk1] });
    await first.start();
    await until(/~ # $/, BOOT_TIMEOUT_MS);
    first.sendConsole(Buffer.from("echo before > /root/suspended; sync; echo SYNCED\n"));
    await until(/SYNCED\r?\n~ # $/, 60_000);
    await first.pause();
    const snapshot = await first.saveState();
    await first.stop();
    await disk1.close();

    out = "";
    const disk2 = await FileBlockBackend.open(diskPath);
    const second = new RiscvEngine({ config, console: sink, disks: [disk2] });
    await second.restoreState(snapshot);
    await second.start();
    second.sendConsole(Buffer.from("echo $((6*7)); cat /root/suspended\n"));
    await until(/42\r?\nbefore\r?\n~ # $/, 60_000);
    assert.doesNotMatch(out, /OpenSBI|Linux version/, "no second boot");
    await second.stop();
    await disk2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
