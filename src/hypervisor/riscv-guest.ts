// The engine adapter a VMM hosts for engine "riscv": a RiscvEngine booting the VM's image (OpenSBI, kernel,
// initrd) with the VM's own disk, its serial console appended to console.log.

import { createWriteStream } from "node:fs";
import { readFile } from "node:fs/promises";
import { FileBlockBackend } from "../engines/backends/file-block-backend.ts";
import type { ExitReason } from "../engines/engine.ts";
import { RiscvEngine, type RiscvEngineOptions } from "../engines/riscv/riscv-engine.ts";
import { findImage } from "../images/image-store.ts";
import { readSnapshot, writeSnapshot } from "./snapshot-file.ts";
import type { LaunchMode } from "./vmm.ts";
import type { VmmGuest, VmmSpec } from "./vmm-protocol.ts";

/** The machine's disk port, as the engine takes it (the hypervisor does not import the machine itself). */
type BlockBackend = NonNullable<RiscvEngineOptions["disks"]>[number];

const ARCH = "riscv64";

/** The kernel command line of a VM booted from an image (the serial console is where console.log reads). */
const BOOTARGS = "console=ttyS0 earlycon=sbi";

type GuestExit = { reason: "poweroff" | "crashed"; detail: string };

function guestExitOf(reason: ExitReason): GuestExit | undefined {
  switch (reason.kind) {
    case "poweroff":
      return { reason: "poweroff", detail: `the guest powered off (code ${reason.code})` };
    case "htif-exit":
      return { reason: "poweroff", detail: `the guest exited through HTIF (code ${reason.code})` };
    case "reset":
      return { reason: "poweroff", detail: "the guest asked for a reset and the engine ended the run" };
    case "error":
      return { reason: "crashed", detail: `engine error: ${reason.message}` };
    case "stopped":
      return undefined; // we stopped it: the VMM already knows why
  }
}

export async function createGuest(spec: VmmSpec): Promise<VmmGuest> {
  const image = findImage(spec.image);
  if (!image) throw new Error(`the image '${spec.image}' is not built (build it with 'tsvm image build')`);
  const [firmware, kernel, initrd] = await Promise.all([
    readFile(image.firmware),
    readFile(image.kernel),
    readFile(image.initrd),
  ]);
  const disk = await FileBlockBackend.open(spec.diskPath);
  const io = { readBytes: 0, writeBytes: 0 };
  // Counts what the guest moves through its disk, for `top`.
  const countedDisk: BlockBackend = {
    get sizeBytes() {
      return disk.sizeBytes;
    },
    get readOnly() {
      return disk.readOnly;
    },
    read(offset, dst, done) {
      io.readBytes += dst.length;
      disk.read(offset, dst, done);
    },
    write(offset, src, done) {
      io.writeBytes += src.length;
      disk.write(offset, src, done);
    },
    flush(done) {
      disk.flush(done);
    },
  };
  const consoleLog = createWriteStream(spec.consoleLog, { flags: "a", mode: 0o600 });
  consoleLog.on("error", () => {}); // a full disk must not take the guest down; the log is best effort
  let output: ((bytes: Uint8Array) => void) | undefined;
  let engine: RiscvEngine;
  try {
    engine = new RiscvEngine({
      config: {
        harts: spec.cpus,
        memoryBytes: spec.memoryMiB * 1048576,
        firmware: { name: image.firmware, bytes: firmware },
        kernel: { name: image.kernel, bytes: kernel },
        initrd: initrd.length > 0 ? { name: image.initrd, bytes: initrd } : null,
        bootargs: BOOTARGS,
      },
      // The board reuses its buffer: copy what the stream keeps.
      console: {
        write: (bytes) => {
          const copy = Buffer.from(bytes);
          consoleLog.write(copy);
          output?.(copy);
        },
      },
      disks: [countedDisk],
    });
  } catch (e) {
    await disk.close();
    consoleLog.end();
    throw e;
  }
  let onExit: ((exit: GuestExit) => void) | undefined;
  let closed = false;

  return {
    async start(mode: LaunchMode) {
      if (mode === "restore") {
        if (!engine.capabilities.snapshot)
          throw new Error("the riscv engine cannot restore a saved state yet");
        // Everything is checked (sizes, checksums, format) before the engine sees any of it.
        await engine.restoreState(await readSnapshot(spec.stateDir, { arch: ARCH }));
      }
      void engine.exited.then((reason) => {
        const exit = guestExitOf(reason);
        if (exit && !closed) onExit?.(exit);
      });
      await engine.start();
    },
    async requestPowerOff() {
      // TODO(#4): ask the guest through its agent (virtio-console); until then a stop forces the VM off.
      return false;
    },
    async pause() {
      if (engine.state === "running") await engine.pause();
    },
    async resume() {
      if (engine.state === "paused") await engine.resume();
    },
    async reset() {
      await engine.reset();
    },
    async saveState(dir: string) {
      if (!engine.capabilities.snapshot)
        throw new Error("the riscv engine cannot save a VM's state yet (no snapshot capability)");
      const wasRunning = engine.state === "running";
      if (wasRunning) await engine.pause();
      try {
        await writeSnapshot(dir, await engine.saveState(), { arch: ARCH, writer: "tsvm" });
      } catch (e) {
        // The state could not be written: the guest runs on, as if nothing had been asked.
        if (wasRunning) await engine.resume();
        throw e;
      }
    },
    async close() {
      closed = true;
      if (engine.state !== "exited") await engine.stop();
      await disk.close();
      await new Promise<void>((resolve) => consoleLog.end(resolve));
    },
    onExit(callback) {
      onExit = callback;
    },
    consoleInput(bytes: Uint8Array) {
      engine.sendConsole(bytes);
    },
    onConsoleOutput(callback) {
      output = callback;
    },
    stats() {
      const s = engine.stats();
      return {
        instret: s.instret.reduce((a, b) => a + b, 0),
        instructionsPerSecond: s.instructionsPerSecond,
        busyMs: s.busyMs,
        uptimeMs: s.uptimeMs,
        resets: s.resets,
        diskReadBytes: io.readBytes,
        diskWriteBytes: io.writeBytes,
      };
    },
  };
}
