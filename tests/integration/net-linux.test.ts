// The network card with a real Linux guest through Debian's passt: a DHCP lease, a download of random
// bytes from a server on the host's 127.0.0.1 reached at the gateway address (sha256 compared), and
// hostile frames from the network through the backend that are dropped and counted while the machine keeps
// running, and a guest held to its card's MTU (VIRTIO_NET_F_MTU: Linux refuses a larger one).
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { basename, join } from "node:path";
import { after, test } from "node:test";
import type { FrameBackend } from "../../src/engines/backends/frame-backend.ts";
import { PasstProcess } from "../../src/engines/backends/passt-process.ts";
import { openProbedDisk } from "../../src/engines/backends/probed-disk.ts";
import { StreamFrameSocket } from "../../src/engines/backends/stream-frame-socket.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { copyDiskFor } from "../../src/images/image-store.ts";
import { BOOT_TIMEOUT_MS, image, noImage } from "./linux-vm-fixture.ts";
import { hostGateway } from "./host-gateway.ts";
import { SerialShell } from "./serial-shell.ts";
import { tsvmRun } from "./tsvm-run-fixture.ts";

/** A host HTTP server on 127.0.0.1 serving `blob` at /blob. */
async function blobServer(blob: Buffer): Promise<{ server: Server; port: number }> {
  const server = createServer((req, res) => {
    if (req.url === "/blob") {
      res.writeHead(200, { "content-type": "application/octet-stream", "content-length": blob.length });
      res.end(blob);
    } else {
      res.writeHead(404);
      res.end();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

const blob = randomBytes(1536 * 1024);
const blobSha = createHash("sha256").update(blob).digest("hex");
const { server, port } = await blobServer(blob);
after(() => server.close());
const gateway = hostGateway();

/** Waits (in the guest) for eth0's DHCP lease; prints the address and the default route. */
const WAIT_LEASE =
  "i=0; until ip -4 addr show eth0 | grep -q 'inet '; do sleep 1; i=$((i+1)); [ $i -ge 120 ] && exit 1; done; " +
  "ip -4 addr show eth0 | grep inet; ip route | grep default";

test("tsvm run --net: DHCP lease, and a download from the host at the gateway arrives intact", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS,
}, async () => {
  const r = await tsvmRun([
    "--net",
    "--exec",
    `${WAIT_LEASE}; wget -q -O /tmp/blob http://${gateway}:${port}/blob && sha256sum /tmp/blob`,
  ]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /inet \d+\.\d+\.\d+\.\d+\//, "eth0 got an address");
  assert.match(r.stdout, new RegExp(`default via ${gateway.replaceAll(".", "\\.")} dev eth0`));
  assert.match(
    r.stdout,
    new RegExp(`${blobSha}\\s+/tmp/blob`),
    `the guest's sha256 is the host's: ${r.stdout}`,
  );
});

/** A backend that passes everything through to passt and lets the test put frames of its own in. */
class InjectingBackend implements FrameBackend {
  onFrame: ((frame: Uint8Array) => boolean) | null = null;
  constructor(readonly inner: StreamFrameSocket) {
    inner.onFrame = (f) => this.onFrame?.(f) ?? true;
  }
  send(frame: Uint8Array): void {
    this.inner.send(frame);
  }
  resume(): void {
    this.inner.resume();
  }
  close(): Promise<void> {
    return this.inner.close();
  }
  /** A frame "from the network"; whether the guest side took it. */
  inject(frame: Uint8Array): boolean {
    return this.onFrame?.(frame) ?? false;
  }
}

test("garbage frames from the network are dropped and counted, the guest is held to its card's MTU, and keeps working", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS,
}, async () => {
  const img = image!;
  const dir = await mkdtemp(join(tmpdir(), "tsvm-net-linux-"));
  const passt = new PasstProcess({ socketPath: join(dir, "passt", "passt.sock") });
  let backend: InjectingBackend | null = null;
  let engine: RiscvEngine | null = null;
  const disk = await openProbedDisk(copyDiskFor(img, join(dir, "disk.img")));
  try {
    await passt.start();
    backend = new InjectingBackend(new StreamFrameSocket(passt.socketPath));
    const mac = new Uint8Array([0x02, 0x54, 0x53, 0x56, 0x4d, 0x01]);
    const file = (p: string) => ({ name: basename(p), bytes: new Uint8Array(readFileSync(p)) });
    const shell = new SerialShell((text) => engine!.sendConsole(new TextEncoder().encode(text)));
    engine = new RiscvEngine({
      config: {
        harts: 1,
        memoryBytes: 256 << 20,
        firmware: file(img.firmware),
        kernel: file(img.kernel),
        initrd: file(img.initrd),
        bootargs: "console=ttyS0 earlycon=sbi",
      },
      console: shell,
      disks: [disk],
      nics: [{ mac, backend }],
    });
    const nic = engine.board.nics[0]!;
    await engine.start();
    await shell.ready(BOOT_TIMEOUT_MS);
    const lease = await shell.run(WAIT_LEASE, 180_000);
    assert.equal(lease.status, 0, `no DHCP lease: ${lease.output}`);

    // From the network: runts, giants, and frames of random bytes to the card's MAC.
    const rxDroppedBefore = nic.stats.rxDropped;
    const rxFramesBefore = nic.stats.rxFrames;
    assert.equal(backend.inject(new Uint8Array(5)), true);
    assert.equal(backend.inject(new Uint8Array(13)), true);
    assert.equal(backend.inject(new Uint8Array(4000)), true);
    assert.equal(backend.inject(new Uint8Array(1515)), true);
    assert.equal(nic.stats.rxDropped - rxDroppedBefore, 4, "the four frames of the wrong size were dropped");
    let injected = 0;
    for (let i = 0; i < 64; i++) {
      const f = randomBytes(14 + ((i * 97) % 1500));
      f.set(mac, 0);
      if (backend.inject(f)) injected++;
      await new Promise((r) => setImmediate(r));
    }
    assert.ok(injected > 0);
    assert.ok(nic.stats.rxFrames - rxFramesBefore > 0, "random frames of a carried size reach the guest");

    // From the guest: an MTU the card does not carry is refused (the card tells Linux its MTU, 1500 by
    // default); a guest that sent larger frames anyway has them dropped and counted (virtio-net.test.ts).
    const giant = await shell.run(`ip link set eth0 mtu 9000; ip link show eth0 | grep -o 'mtu [0-9]*'`);
    assert.match(giant.output, /Invalid argument[\s\S]*mtu 1500/, giant.output);
    assert.equal(nic.stats.txDropped, 0, `nothing the guest sent was dropped: ${JSON.stringify(nic.stats)}`);

    // The guest's network still works after all of it, and the machine kept running.
    const again = await shell.run(
      `wget -q -O /tmp/blob http://${gateway}:${port}/blob && sha256sum /tmp/blob`,
    );
    assert.equal(again.status, 0, again.output);
    assert.match(again.output, new RegExp(blobSha));
    assert.equal(engine.state, "running");
    const stats = await shell.run("cat /sys/class/net/eth0/statistics/rx_packets");
    assert.ok(
      Number(stats.output.trim()) >= nic.stats.rxFrames - 64,
      "the guest saw the frames the card took",
    );
  } finally {
    if (engine && engine.state !== "exited") await engine.stop();
    await backend?.close();
    await passt.stop();
    await disk.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
