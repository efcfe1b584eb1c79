// The tsvm side of the benchmark: one guest on the emulator engine in this process, console on stdout and
// stdin, with the exact retired-instruction count reported on stderr (at the shell prompt and at exit).
//
// Usage: node --import tsx bench/tsvm-peer.ts --kernel F [--initrd F] [--bios F|none] [--append S]
//          [--memory BYTES] [--harts N]
// With N > 1 harts, harts 1.. run on worker threads (the engine's hartThreads).
// stderr lines the runner reads (one JSON object after the tag):
//   tsvm-peer-prompt {"instret":N,"engineMs":T}   the first shell prompt appeared on the console
//   tsvm-peer-exit {"instret":N,"engineMs":T,"reason":...}
import { readFileSync } from "node:fs";
import { basename } from "node:path";
import { parseArgs } from "node:util";
import { type BootFile, RiscvEngine } from "../src/engines/riscv/riscv-engine.ts";
import { PromptWatcher } from "./bench-report.ts";

function bootFile(path: string): BootFile {
  // A view of the Buffer's own memory: copying a kernel and initramfs of tens of MiB cost ~0.1 s at start.
  const buf = readFileSync(path);
  return { name: basename(path), bytes: new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength) };
}

const { values } = parseArgs({
  options: {
    kernel: { type: "string" },
    initrd: { type: "string" },
    bios: { type: "string" },
    append: { type: "string" },
    memory: { type: "string" },
    harts: { type: "string" },
  },
});
if (!values.kernel) {
  process.stderr.write("tsvm-peer: --kernel is required\n");
  process.exit(2);
}

const prompt = new PromptWatcher();
let engine: RiscvEngine | null = null;
const totalInstret = (): number => (engine ? engine.stats().instret.reduce((a, b) => a + b, 0) : 0);

const harts = Number(values.harts ?? 1);
if (!Number.isInteger(harts) || harts < 1 || harts > 8) {
  process.stderr.write("tsvm-peer: --harts must be 1 to 8\n");
  process.exit(2);
}
engine = new RiscvEngine({
  hartThreads: harts > 1,
  config: {
    harts,
    memoryBytes: Number(values.memory ?? 256 * 1024 * 1024),
    firmware: values.bios === undefined || values.bios === "none" ? null : bootFile(values.bios),
    kernel: bootFile(values.kernel),
    initrd: values.initrd ? bootFile(values.initrd) : null,
    bootargs: values.append ?? "",
  },
  console: {
    write(bytes: Uint8Array): void {
      process.stdout.write(bytes);
      // Counted here, inside the engine's turn, so the instret is the one at which the prompt was printed.
      if (prompt.feed(bytes) && engine) {
        const stats = engine.stats();
        process.stderr.write(
          `tsvm-peer-prompt ${JSON.stringify({ instret: totalInstret(), engineMs: stats.uptimeMs })}\n`,
        );
      }
    },
  },
  onReset: "exit",
});

process.stdin.on("data", (chunk: Buffer) => engine?.sendConsole(new Uint8Array(chunk)));
await engine.start();
const reason = await engine.exited;
process.stderr.write(
  `tsvm-peer-exit ${JSON.stringify({ instret: totalInstret(), engineMs: engine.stats().uptimeMs, reason })}\n`,
);
// stdin keeps the event loop alive; the machine is gone, so leave now.
process.exit(reason.kind === "error" ? 1 : 0);
