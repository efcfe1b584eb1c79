// Boots the default guest image under QEMU's own riscv64 virt board: proves the image (kernel config,
// initramfs switch to the ext4 disk, inittab, prompt, syscon poweroff) independently of our emulator.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { buildImage } from "../../src/images/build.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { skipUnless } from "../skip-unless.ts";

const QEMU = "qemu-system-riscv64";
const BOOT_TIMEOUT_MS = 240_000;
const PROMPT = /~ # $/;

function qemuAvailable(): boolean {
  return spawnSync(QEMU, ["--version"], { stdio: "ignore" }).status === 0;
}

test("the default image boots under QEMU virt to a root shell on ttyS0 and powers off through syscon", {
  timeout: 60 * 60_000,
}, async (t) => {
  const noQemu = skipUnless(qemuAvailable(), `${QEMU} is not installed (run scripts/setup-host.sh)`);
  if (noQemu) {
    t.skip(noQemu);
    return;
  }
  const image = await buildImage("default", { onProgress: (line) => console.log(line) });
  const dir = mkdtempSync(join(tmpdir(), "tsvm-image-qemu-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const disk = copyDiskFor(image, join(dir, "disk.raw"));

  // timeout(1) bounds QEMU even if this test process dies without killing it.
  const qemu = spawn(
    "timeout",
    [
      "--kill-after=5",
      String(BOOT_TIMEOUT_MS / 1000 + 30),
      QEMU,
      ...["-M", "virt", "-smp", "2", "-m", "256M", "-nographic", "-no-reboot"],
      ...["-bios", image.firmware, "-kernel", image.kernel, "-initrd", image.initrd],
      ...["-drive", `file=${disk},format=raw,if=none,id=d0`, "-device", "virtio-blk-device,drive=d0"],
      ...["-append", "console=ttyS0"],
    ],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
  let output = "";
  let stderr = "";
  const exited = new Promise<number | null>((resolve) => qemu.on("close", (code) => resolve(code)));
  t.after(() => {
    if (qemu.exitCode === null) qemu.kill("SIGKILL");
  });
  qemu.stderr.on("data", (b: Buffer) => {
    stderr += b.toString();
  });

  /** Resolves once the console output from `from` on matches, rejects on timeout or QEMU exit. */
  const waitFor = (pattern: RegExp, from: number, what: string) =>
    new Promise<void>((resolve, reject) => {
      const check = () => {
        if (pattern.test(output.slice(from))) {
          cleanup();
          resolve();
        }
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`no ${what} within ${BOOT_TIMEOUT_MS / 1000}s; console:\n${output.slice(-3000)}`));
      }, BOOT_TIMEOUT_MS);
      const onClose = () => {
        cleanup();
        reject(new Error(`QEMU exited before ${what}; console:\n${output.slice(-3000)}\nstderr: ${stderr}`));
      };
      const cleanup = () => {
        clearTimeout(timer);
        qemu.stdout.off("data", check);
        qemu.off("close", onClose);
      };
      qemu.stdout.on("data", check);
      qemu.on("close", onClose);
      check();
    });
  qemu.stdout.on("data", (b: Buffer) => {
    output += b.toString();
  });

  await waitFor(PROMPT, 0, "shell prompt");
  assert.match(output, /Linux version 6\.1\./);
  assert.doesNotMatch(output, /Kernel panic/);
  assert.doesNotMatch(output, /staying in the initramfs/, "the initramfs must switch to the ext4 disk");

  let mark = output.length;
  qemu.stdin.write("echo hello-$((6*7)) $(hostname) $(stat -f -c %T /) $(id -u)\n");
  // The echoed command line shows "$((6*7))"; only the shell's output has the computed line.
  await waitFor(/^hello-42 tsvm ext2\/ext3 0\r?$/m, mark, "output of the echo command");
  await waitFor(PROMPT, mark, "prompt after the echo command");
  assert.doesNotMatch(
    output.slice(mark),
    /\[ *\d+\.\d+\]/,
    "kernel messages must not mix into command output",
  );

  // The root disk is writable.
  mark = output.length;
  qemu.stdin.write("echo written > /root/probe && cat /root/probe\n");
  await waitFor(/^written\r?$/m, mark, "a file written under /root");

  mark = output.length;
  qemu.stdin.write("poweroff -f\n");
  const code = await exited;
  assert.equal(code, 0, `QEMU should exit cleanly on poweroff; stderr: ${stderr}\n${output.slice(mark)}`);
  assert.doesNotMatch(output, /Kernel panic/);
});
