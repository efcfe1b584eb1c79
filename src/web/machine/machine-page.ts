// The /machine page: fetches the default image's files from the daemon, boots them in a machine worker
// (machine-worker.ts) and shows its serial console in xterm.js. The terminal runs in screen-reader mode,
// so its text is in the page for screen readers and tests.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "./machine-page.css";
import type { MachineToPage, PageToMachine, TabMachineSpec, TabMachineStatus } from "./machine-messages.ts";

/** What the daemon says of the image the tab boots (GET /machine/image). */
interface TabImage {
  readonly name: string;
  readonly hash: string;
  readonly spec: TabMachineSpec;
}

/** What the page exposes for tests and the curious: window.tsvmMachine. */
interface TabMachineInfo {
  image?: TabImage;
  /** Milliseconds to fetch the image's files. */
  fetchMs?: number;
  /** Milliseconds from handing the files to the worker to the first shell prompt. */
  bootMs?: number;
  status?: TabMachineStatus;
  error?: string;
}

const info: TabMachineInfo = {};
(globalThis as unknown as { tsvmMachine: TabMachineInfo }).tsvmMachine = info;

const statusLine = document.getElementById("status")!;
const term = new Terminal({ screenReaderMode: true, convertEol: false, scrollback: 5000 });
const fit = new FitAddon();
term.loadAddon(fit);
term.open(document.getElementById("terminal")!);
fit.fit();
addEventListener("resize", () => fit.fit());

function say(text: string): void {
  statusLine.textContent = text;
}

function fail(message: string): void {
  info.error = message;
  say(message);
}

async function fetchBytes(path: string): Promise<ArrayBuffer> {
  const res = await fetch(path, { credentials: "same-origin" });
  if (!res.ok) throw new Error(await errorText(res, path));
  return res.arrayBuffer();
}

async function errorText(res: Response, what: string): Promise<string> {
  try {
    const body = (await res.json()) as { error?: { message?: string } };
    if (body.error?.message) return body.error.message;
  } catch {
    // not an API error body
  }
  return `${what}: ${res.status} ${res.statusText}`;
}

function describe(status: TabMachineStatus): string {
  const mips = (status.instructionsPerSecond / 1e6).toFixed(1);
  const boot = info.bootMs === undefined ? "" : ` · booted in ${(info.bootMs / 1000).toFixed(2)} s`;
  return `${info.image?.name ?? ""} · ${status.state} · ${mips} MIPS · ${Math.round(status.uptimeMs / 1000)} s${boot}`;
}

/** Notices the first shell prompt ("# " or "$ " at the end of the output) to time the boot. */
class PromptWatch {
  private tail = "";
  constructor(private readonly onPrompt: () => void) {}
  feed(text: string): void {
    if (info.bootMs !== undefined) return;
    this.tail = (this.tail + text).slice(-16);
    if (/[#$] $/.test(this.tail)) this.onPrompt();
  }
}

async function main(): Promise<void> {
  say("fetching the image…");
  const fetchStart = performance.now();
  const imageRes = await fetch("/machine/image", { credentials: "same-origin" });
  if (!imageRes.ok) throw new Error(await errorText(imageRes, "/machine/image"));
  const image = (await imageRes.json()) as TabImage;
  info.image = image;
  const [firmware, kernel, initrd, disk] = await Promise.all(
    ["firmware", "kernel", "initrd", "disk"].map((f) => fetchBytes(`/machine/image/${f}`)),
  );
  info.fetchMs = performance.now() - fetchStart;
  say(`booting ${image.name}…`);
  const worker = new Worker("/machine/machine-worker.js");
  const send = (message: PageToMachine, transfer: Transferable[] = []) =>
    worker.postMessage(message, transfer);
  const decoder = new TextDecoder();
  const encoder = new TextEncoder();
  let bootStart = 0;
  const prompt = new PromptWatch(() => {
    info.bootMs = performance.now() - bootStart;
  });
  worker.onmessage = (event: MessageEvent<MachineToPage>) => {
    const m = event.data;
    switch (m.type) {
      case "console":
        term.write(m.bytes);
        prompt.feed(decoder.decode(m.bytes, { stream: true }));
        return;
      case "status":
        info.status = m.status;
        say(describe(m.status));
        return;
      case "exit":
        say(`the machine stopped: ${m.message}`);
        return;
      case "error":
        fail(m.message);
        return;
    }
  };
  worker.onerror = (e) => fail(`the machine worker failed: ${e.message}`);
  term.onData((data) => send({ type: "input", bytes: encoder.encode(data) }));
  bootStart = performance.now();
  send({ type: "boot", spec: image.spec, files: { firmware, kernel, initrd, disk } }, [
    firmware,
    kernel,
    initrd,
    disk,
  ]);
  term.focus();
}

main().catch((e) => fail(e instanceof Error ? e.message : String(e)));
