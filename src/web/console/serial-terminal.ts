// A VM's serial console in xterm.js over the API's WebSocket: the recent output first (from the console
// history), then live; what is typed or pasted goes to the guest. Several pages may watch one VM at once.
// The DOM renderer keeps the screen's text in the page (readable by screen readers and tests).

import { FitAddon } from "@xterm/addon-fit";
import { Terminal } from "@xterm/xterm";
import type { SerialPortOutput } from "../../api/types.ts";
import { call } from "./console-api.ts";

/** The largest paste sent to the console (bytes of UTF-8); a larger one is refused whole, not cut. */
export const MAX_PASTE_BYTES = 64 * 1024;
/** Input goes out in messages of at most this many characters (the API's limit is 1 MiB a message). */
const SEND_CHUNK = 4096;
/** How much of the console's history is shown on connecting. */
const HISTORY_BYTES = 16 * 1024;

export class SerialTerminal {
  private readonly terminal: Terminal;
  private readonly fit = new FitAddon();
  private socket: WebSocket | null = null;
  private readonly resize: ResizeObserver;

  constructor(
    private readonly container: HTMLElement,
    private readonly vmName: string,
    private readonly onProblem: (message: string) => void,
    private readonly onState: (state: string) => void,
  ) {
    this.terminal = new Terminal({
      convertEol: false,
      cursorBlink: true,
      scrollback: 5000,
      fontFamily: "ui-monospace, monospace",
      fontSize: 14,
    });
    this.terminal.loadAddon(this.fit);
    this.terminal.open(container);
    this.terminal.onData((data) => this.send(data));
    this.terminal.attachCustomKeyEventHandler((e) => !this.leftToBrowser(e));
    this.resize = new ResizeObserver(() => this.fit.fit());
    this.resize.observe(container);
  }

  /**
   * Keys the browser handles instead of the guest. Shift+Tab leaves the terminal, so that the keyboard
   * alone can move on through the page (Tab goes to the guest, for shell completion). Ctrl+C copies while
   * text is selected (else it is the guest's interrupt), Ctrl+Shift+C always; Ctrl+V and Ctrl+Shift+V
   * paste: xterm.js would send them to the guest as control characters, so no copy or paste event fired.
   */
  private leftToBrowser(e: KeyboardEvent): boolean {
    if (e.key === "Tab") return e.shiftKey;
    if (!e.ctrlKey || e.altKey || e.metaKey) return false;
    const key = e.key.toLowerCase();
    if (key === "c") return e.shiftKey || this.terminal.hasSelection();
    return key === "v";
  }

  /** Shows the recent output, then follows the console live. */
  async connect(): Promise<void> {
    this.disconnect();
    const name = encodeURIComponent(this.vmName);
    try {
      const end = await call<SerialPortOutput>(
        "GET",
        `/instances/${name}/serialPortOutput?start=${Number.MAX_SAFE_INTEGER}`,
      );
      const recent = await call<SerialPortOutput>(
        "GET",
        `/instances/${name}/serialPortOutput?start=${Math.max(0, end.next - HISTORY_BYTES)}`,
      );
      this.terminal.write(recent.contents);
    } catch (e) {
      this.onProblem((e as Error).message);
    }
    const scheme = location.protocol === "https:" ? "wss" : "ws";
    const socket = new WebSocket(`${scheme}://${location.host}/v1/instances/${name}/serialPort`);
    socket.binaryType = "arraybuffer";
    socket.onopen = () => this.onState("connected");
    socket.onmessage = (m) => this.terminal.write(new Uint8Array(m.data as ArrayBuffer));
    socket.onclose = (e) => {
      if (this.socket !== socket) return;
      this.socket = null;
      this.onState(
        e.code === 1000 || e.code === 1005
          ? "closed"
          : `closed (${e.code}${e.reason ? `: ${e.reason}` : ""})`,
      );
    };
    this.socket = socket;
    this.terminal.focus();
  }

  disconnect(): void {
    const socket = this.socket;
    this.socket = null;
    socket?.close();
  }

  dispose(): void {
    this.disconnect();
    this.resize.disconnect();
    this.terminal.dispose();
  }

  private send(data: string): void {
    const socket = this.socket;
    if (!socket || socket.readyState !== WebSocket.OPEN) {
      this.onProblem("the console is not connected: nothing was sent");
      return;
    }
    const bytes = new TextEncoder().encode(data).length;
    if (bytes > MAX_PASTE_BYTES) {
      this.onProblem(
        `paste refused: it is ${bytes} bytes, and the console takes at most ${MAX_PASTE_BYTES} at once (nothing was sent)`,
      );
      return;
    }
    for (let i = 0; i < data.length; ) {
      let end = Math.min(data.length, i + SEND_CHUNK);
      // Never split a surrogate pair between two messages (each must be valid UTF-8 text).
      if (end < data.length && /[\uD800-\uDBFF]/.test(data[end - 1]!)) end--;
      socket.send(data.slice(i, end));
      i = end;
    }
  }
}
