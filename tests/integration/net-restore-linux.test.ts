// A Linux guest with a network card restored from a saved state (a new engine, as a clone resuming from a
// memory snapshot is): `ip link set` down, a new MAC and up again return, and a timed sleep ends. The
// state is saved after the machine sat paused past its next timer tick, as a snapshot of a running VM is;
// before the board drove its harts' interrupt lines again on load, that tick never reached the hart and
// these commands hung in the kernel (issue 10).
import assert from "node:assert/strict";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { test } from "node:test";
import { PasstProcess } from "../../src/engines/backends/passt-process.ts";
import { openProbedDisk } from "../../src/engines/backends/probed-disk.ts";
import { StreamFrameSocket } from "../../src/engines/backends/stream-frame-socket.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { BOOT_TIMEOUT_MS, image, noImage } from "./linux-vm-fixture.ts";
import { SerialShell } from "./serial-shell.ts";

/** Sets eth0 down, gives it a new MAC, brings it up and sleeps a second; prints each step's status. */
const RELINK =
  "ip link set dev eth0 down; echo down $?; ip link set dev eth0 address 02:00:00:00:00:99; echo addr $?; " +
  "ip link set dev eth0 up; echo up $?; sleep 1; echo slept $?; cat /sys/class/net/eth0/address";

for (const harts of [1, 2]) {
  test(`${harts} hart(s): a restored guest changes its card's MAC and sleeps (its timer interrupts survive the save)`, {
    skip: noImage,
    timeout: BOOT_TIMEOUT_MS + 240_000,
  }, async () => {
    const img = image!;
    const dir = await mkdtemp(join(tmpdir(), "tsvm-net-restore-"));
    const passt = new PasstProcess({ socketPath: join(dir, "passt", "passt.sock") });
    const disk = await openProbedDisk(copyDiskFor(img, join(dir, "disk.img")));
    const backends: StreamFrameSocket[] = [];
    let engine: RiscvEngine | null = null;
    try {
      await passt.start();
      const file = (p: string) => ({ name: basename(p), bytes: new Uint8Array(readFileSync(p)) });
      const config = {
        harts,
        memoryBytes: 256 << 20,
        firmware: file(img.firmware),
        kernel: file(img.kernel),
        initrd: file(img.initrd),
        bootargs: "console=ttyS0 earlycon=sbi",
      };
      const shell = new SerialShell((text) => engine!.sendConsole(new TextEncoder().encode(text)));
      const make = (macByte: number) => {
        const backend = new StreamFrameSocket(passt.socketPath);
        backends.push(backend);
        const mac = new Uint8Array([0x02, 0x54, 0x53, 0x56, 0x4d, macByte]);
        return new RiscvEngine({ config, console: shell, disks: [disk], nics: [{ mac, backend }] });
      };
      engine = make(1);
      await engine.start();
      await shell.ready(BOOT_TIMEOUT_MS);
      const up = await shell.run("ip link show eth0 | grep -c UP");
      assert.equal(up.status, 0, up.output);

      await engine.pause();
      // Past the guest's next tick (HZ ≥ 100) while paused: the saved mtime is beyond mtimecmp.
      await new Promise((r) => setTimeout(r, 200));
      const saved = await engine.saveState();
      await engine.stop();
      engine = make(2);
      await engine.restoreState(saved);
      await engine.start();

      const r = await shell.run(RELINK, 120_000);
      assert.equal(r.status, 0, r.output);
      assert.match(r.output, /down 0\naddr 0\nup 0\nslept 0\n02:00:00:00:00:99/, r.output);
    } finally {
      if (engine && engine.state !== "exited") await engine.stop();
      for (const b of backends) await b.close();
      await passt.stop();
      await disk.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
