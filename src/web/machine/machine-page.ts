// The /machine page: fetches the default image's files from the daemon, boots them in a machine worker
// (machine-worker.ts) and shows its serial console in xterm.js. The terminal runs in screen-reader mode,
// so its text is in the page for screen readers and tests. It moves a SUSPENDED VM's guest into the tab
// and saves the tab's guest back to one; a paused machine (after a save) may be resumed in the tab.

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import "./machine-page.css";
import { TAB_UPLOAD_MAGIC, type TabDiskBase } from "../../machine/index.ts";
import type {
  MachineToPage,
  PageToMachine,
  TabMachineSpec,
  TabMachineStatus,
  TabSavedState,
} from "./machine-messages.ts";

/** What the daemon says of the image the tab boots (GET /machine/image), or of a SUSPENDED VM's machine. */
interface TabImage {
  readonly name: string;
  readonly hash: string;
  readonly spec: TabMachineSpec;
  /** Set for a VM's machine (GET /machine/vms/{name}). */
  readonly vm?: string;
  readonly vmId?: string;
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
  /** The last save's outcome, as the page shows it. */
  saved?: string;
}

const info: TabMachineInfo = {};
(globalThis as unknown as { tsvmMachine: TabMachineInfo }).tsvmMachine = info;

const statusLine = document.getElementById("status")!;
const vmInput = document.getElementById("vm-name") as HTMLInputElement;
const resumeButton = document.getElementById("resume") as HTMLButtonElement;
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

async function fetchOk(path: string, init?: RequestInit): Promise<Response> {
  const res = await fetch(path, { credentials: "same-origin", ...init });
  if (!res.ok) throw new Error(await errorText(res, path));
  return res;
}

async function fetchBytes(path: string): Promise<ArrayBuffer> {
  return (await fetchOk(path)).arrayBuffer();
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
  const from = info.image?.vm ? `VM ${info.image.vm}` : (info.image?.name ?? "");
  return `${from} · ${status.state} · ${mips} MIPS · ${Math.round(status.uptimeMs / 1000)} s${boot}`;
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

const vmPath = (name: string) => `/machine/vms/${encodeURIComponent(name)}`;
const encoder = new TextEncoder();

/** The running machine's worker, and the save it is doing (the worker answers "saved" or "error"). */
let worker: Worker | null = null;
let pendingSave: { resolve: (state: TabSavedState) => void; reject: (e: Error) => void } | null = null;

function startWorker(): Worker {
  const w = new Worker("/assets/machine-worker.js", { type: "module" });
  const decoder = new TextDecoder();
  let bootStart = performance.now();
  const prompt = new PromptWatch(() => {
    info.bootMs = performance.now() - bootStart;
  });
  w.onmessage = (event: MessageEvent<MachineToPage>) => {
    const m = event.data;
    switch (m.type) {
      case "console":
        term.write(m.bytes);
        prompt.feed(decoder.decode(m.bytes, { stream: true }));
        return;
      case "status":
        info.status = m.status;
        resumeButton.disabled = m.status.state !== "paused";
        // An error or a save's outcome stays in view beside the figures until the next action.
        if (!pendingSave) say([info.error ?? info.saved, describe(m.status)].filter(Boolean).join(" · "));
        return;
      case "saved":
        pendingSave?.resolve(m.state);
        pendingSave = null;
        return;
      case "exit":
        say(`the machine stopped: ${m.message}`);
        return;
      case "error":
        if (pendingSave) {
          pendingSave.reject(new Error(m.message));
          pendingSave = null;
        } else fail(m.message);
        return;
    }
  };
  w.onerror = (e) => fail(`the machine worker failed: ${e.message}`);
  bootStart = performance.now();
  return w;
}

term.onData((data) =>
  worker?.postMessage({ type: "input", bytes: encoder.encode(data) } satisfies PageToMachine),
);

/** Boots the default image fresh in this tab. */
async function bootImage(): Promise<void> {
  say("fetching the image…");
  const fetchStart = performance.now();
  const image = (await (await fetchOk("/machine/image")).json()) as TabImage;
  info.image = image;
  const [firmware, kernel, initrd, disk] = await Promise.all(
    ["firmware", "kernel", "initrd", "disk"].map((f) => fetchBytes(`/machine/image/${f}`)),
  );
  info.fetchMs = performance.now() - fetchStart;
  diskBase = { kind: "image" };
  say(`booting ${image.name}…`);
  worker = startWorker();
  const boot: PageToMachine = { type: "boot", spec: image.spec, files: { firmware, kernel, initrd, disk } };
  worker.postMessage(boot, [firmware, kernel, initrd, disk]);
  term.focus();
}

/**
 * Resumes a SUSPENDED VM's state in this tab: its machine, boot files, disk and state fetched from the
 * server. A tab already running a machine takes only a state of the same boot files (`hash`).
 */
async function resumeVm(name: string): Promise<void> {
  say(`fetching the state of VM ${name}…`);
  const fetchStart = performance.now();
  const image = (await (await fetchOk(vmPath(name))).json()) as TabImage;
  if (info.image && info.image.hash !== image.hash)
    throw new Error(
      `refused: the state of VM '${name}' is of image '${image.name}' (boot files ${image.hash}), and this tab runs '${info.image.name}' (${info.image.hash}); a guest's memory runs only on the kernel it booted. Open /machine?vm=${encodeURIComponent(name)} in a new tab to resume it there`,
    );
  const manifestText = await (await fetchOk(`${vmPath(name)}/state/manifest.json`)).text();
  const manifest = JSON.parse(manifestText) as { sections?: Array<{ file: string }> };
  const sectionFiles = (manifest.sections ?? []).map((s) => s.file);
  const [firmware, kernel, initrd, disk, tree, ...sections] = await Promise.all(
    [
      ...["firmware", "kernel", "initrd", "disk"].map((f) => `${vmPath(name)}/${f}`),
      `${vmPath(name)}/state/state.json`,
      ...sectionFiles.map((f) => `${vmPath(name)}/state/${encodeURIComponent(f)}`),
    ].map(fetchBytes),
  );
  info.fetchMs = performance.now() - fetchStart;
  worker?.terminate();
  term.reset();
  info.image = image;
  info.bootMs = undefined;
  info.error = undefined;
  say(`resuming VM ${name}…`);
  worker = startWorker();
  diskBase = {
    kind: "vm",
    vmId: image.vmId!,
    treeSha256: (JSON.parse(manifestText) as { treeSha256: string }).treeSha256,
  };
  const boot: PageToMachine = {
    type: "boot",
    spec: image.spec,
    files: { firmware: firmware!, kernel: kernel!, initrd: initrd!, disk: disk! },
    state: { manifest: manifestText, tree: tree!, sections },
  };
  worker.postMessage(boot, [firmware!, kernel!, initrd!, disk!, tree!, ...sections]);
  term.focus();
}

/**
 * What the tab's disk started from: the image (a save sends the whole disk), or a VM's disk as it was with
 * the state of that tree SHA-256 (a save sends only the pages written since; the server checks the VM still
 * holds that state). A save moves it to the state just saved.
 */
let diskBase: TabDiskBase = { kind: "image" };

/** The request body of tab-state-upload-format.ts. */
function uploadBody(saved: TabSavedState, base: TabDiskBase): Blob {
  const header = encoder.encode(
    JSON.stringify({
      image: info.image!.hash,
      base,
      manifest: saved.manifest,
      disk: saved.disk.map((r) => ({ offset: r.offset, length: r.bytes.length })),
    }),
  );
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, header.length, true);
  const parts: BlobPart[] = [
    encoder.encode(TAB_UPLOAD_MAGIC),
    length,
    header,
    saved.tree as Uint8Array<ArrayBuffer>,
  ];
  for (const s of saved.sections) parts.push(s as Uint8Array<ArrayBuffer>);
  for (const r of saved.disk) parts.push(r.bytes as Uint8Array<ArrayBuffer>);
  return new Blob(parts);
}

/**
 * Pauses this tab's machine, saves its state and sends it to the SUSPENDED VM `name`. The machine stays
 * paused when the VM took it (the VM is the one to continue, though Resume here runs the tab's copy on);
 * when the save fails, it goes on running in the tab as if nothing had been asked.
 */
async function saveToVm(name: string): Promise<void> {
  const w = worker;
  if (!w || !info.image) throw new Error("there is no machine in this tab to save");
  if (pendingSave) throw new Error("a save is under way already");
  const wasRunning = info.status?.state === "running";
  say(`saving the machine's state to VM ${name}…`);
  try {
    const saved = await new Promise<TabSavedState>((resolve, reject) => {
      pendingSave = { resolve, reject };
      w.postMessage({ type: "save", wholeDisk: diskBase.kind === "image" } satisfies PageToMachine);
    });
    const res = await fetchOk(`${vmPath(name)}/state`, {
      method: "PUT",
      headers: { "content-type": "application/octet-stream" },
      body: uploadBody(saved, diskBase),
    });
    const outcome = (await res.json()) as { diskBytesWritten: number };
    // The VM's disk is the tab's now, with this state: a later save to it sends only pages written since.
    const target = (await (await fetchOk(vmPath(name))).json()) as TabImage;
    diskBase = { kind: "vm", vmId: target.vmId!, treeSha256: saved.manifest.treeSha256 };
    info.saved = `saved to VM ${name} (${outcome.diskBytesWritten} disk bytes): continue it with 'tsvm resume ${name}'`;
    say(info.saved);
  } catch (e) {
    if (wasRunning) w.postMessage({ type: "resume" } satisfies PageToMachine);
    const message = e instanceof Error ? e.message : String(e);
    throw new Error(`${message}${wasRunning ? " (the machine goes on in this tab)" : ""}`);
  }
}

/** Runs this tab's paused machine on (after a save, its copy of the guest; the VM's is not touched). */
function resumeHere(): void {
  if (!worker) throw new Error("there is no machine in this tab to resume");
  info.saved = undefined;
  worker.postMessage({ type: "resume" } satisfies PageToMachine);
  term.focus();
}

/** Runs a page action, showing its failure as the server or the machine worded it. */
function act(action: () => Promise<void>): void {
  info.error = undefined;
  info.saved = undefined;
  action().catch((e) => fail(e instanceof Error ? e.message : String(e)));
}

document.getElementById("load")!.addEventListener("click", () => act(() => resumeVm(vmInput.value.trim())));
document.getElementById("save")!.addEventListener("click", () => act(() => saveToVm(vmInput.value.trim())));
resumeButton.addEventListener("click", () => act(async () => resumeHere()));

const requested = new URLSearchParams(location.search).get("vm");
if (requested) vmInput.value = requested;
act(() => (requested ? resumeVm(requested) : bootImage()));
