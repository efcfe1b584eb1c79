// The default image booted on a RiscvEngine in this process with its guest agent connected, for tests and
// benches that need a Linux guest and a command channel but not the hypervisor (threaded harts, timings).
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { FileBlockBackend } from "../../src/engines/backends/file-block-backend.ts";
import { GUEST_AGENT_PORT_NAME, GuestAgentClient } from "../../src/engines/riscv/guest-agent-client.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { copyDiskFor, type ImageInfo } from "../../src/images/image-store.ts";

/** The agent's port: port 0 is the virtio console itself, named ports follow. */
const AGENT_PORT = 1;

export interface AgentMachine {
  readonly engine: RiscvEngine;
  /** Runs `command` in the guest (sh -c); its exit status and standard output. */
  run(command: string, timeoutMs: number): Promise<{ exitCode: number; stdout: string }>;
  /** The serial console so far (for failure messages). */
  serial(): string;
  close(): Promise<void>;
}

export async function bootAgentMachine(
  img: ImageInfo,
  options: { harts: number; hartThreads: boolean; memoryBytes?: number; bootTimeoutMs: number },
): Promise<AgentMachine> {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-agent-machine-"));
  const disk = await FileBlockBackend.open(copyDiskFor(img, join(dir, "disk.img")));
  const file = (path: string) => ({ name: path, bytes: new Uint8Array(readFileSync(path)) });
  let serial = "";
  let agent: GuestAgentClient | null = null;
  const engine = new RiscvEngine({
    config: {
      harts: options.harts,
      memoryBytes: options.memoryBytes ?? 256 * 1024 * 1024,
      firmware: file(img.firmware),
      kernel: file(img.kernel),
      initrd: file(img.initrd),
      bootargs: "console=ttyS0",
    },
    hartThreads: options.hartThreads,
    console: { write: (b) => (serial += Buffer.from(b).toString("latin1")) },
    disks: [disk],
    virtioConsole: {
      sink: { write: () => {} },
      ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: (b) => agent?.receive(b) } }],
    },
  });
  const client = new GuestAgentClient((bytes) => {
    const taken = engine.sendVirtioConsole(AGENT_PORT, bytes);
    if (taken !== bytes.length) throw new Error(`the agent's port took ${taken} of ${bytes.length} bytes`);
  });
  agent = client;
  const close = async () => {
    client.close("done");
    await engine.stop();
    await disk.close();
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    await engine.start();
    // A machine that stops while booting (a failed hart thread) says why instead of timing out.
    const stopped = engine.exited.then((r) => {
      throw new Error(`the machine stopped while booting: ${JSON.stringify(r)}`);
    });
    stopped.catch(() => {});
    await Promise.race([client.waitForAgent(options.bootTimeoutMs), stopped]);
  } catch (e) {
    await close();
    throw new Error(`${(e as Error).message}; serial console: ${serial.slice(-3000)}`);
  }
  return {
    engine,
    async run(command, timeoutMs) {
      const out: Buffer[] = [];
      const { exitCode } = await client.exec(command, {
        timeoutMs,
        onOutput: (bytes, stream) => {
          if (stream === "stdout") out.push(Buffer.from(bytes));
        },
      });
      return { exitCode, stdout: Buffer.concat(out).toString() };
    },
    serial: () => serial,
    close,
  };
}
