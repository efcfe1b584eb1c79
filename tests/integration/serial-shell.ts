// A root shell on a guest's serial console, driven as a person would type: wait for the prompt, turn echo
// off, then run commands one at a time between printed markers. Used with tsvm's engine and with QEMU alike.

const PROMPT = /[#$] $/;
// Printed with octal escapes (\137 is "_") so the command line itself never contains them.
const BEGIN = "__SH_BEGIN__\n";
const END = /__SH_END_(\d+)__\n/;

export interface ShellResult {
  status: number;
  output: string;
}

export class SerialShell {
  private text = "";
  private log = "";
  private readonly decoder = new TextDecoder();
  private waiter: (() => void) | null = null;
  /** Called with each piece of a running command's output as it arrives. */
  onOutput: ((text: string) => void) | null = null;

  constructor(private readonly send: (text: string) => void) {}

  /** The console sink: feed it everything the guest prints. */
  write(bytes: Uint8Array): void {
    const s = this.decoder.decode(bytes, { stream: true }).replace(/\r/g, "");
    this.text += s;
    this.log = (this.log + s).slice(-4000);
    if (this.onOutput) this.onOutput(s);
    this.waiter?.();
  }

  /** The last console output, for failure messages. */
  get tail(): string {
    return this.log.slice(-1500);
  }

  private async until<T>(what: string, probe: () => T | undefined, ms: number): Promise<T> {
    const deadline = Date.now() + ms;
    for (;;) {
      const v = probe();
      if (v !== undefined) return v;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${what}; console:\n${this.tail}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 1000));
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = null;
          resolve();
        };
      });
    }
  }

  /** Waits for the first shell prompt and turns echo off. */
  async ready(ms: number): Promise<void> {
    await this.until("the shell prompt", () => (PROMPT.test(this.text) ? true : undefined), ms);
    this.text = "";
    this.send("stty -echo\n");
    await this.until("the prompt after stty", () => (PROMPT.test(this.text) ? true : undefined), 60_000);
    this.text = "";
  }

  /** Runs `command` in a subshell; resolves with its output and exit status. */
  async run(command: string, ms = 120_000): Promise<ShellResult> {
    this.text = "";
    this.send(
      `printf '\\137\\137SH\\137BEGIN\\137\\137\\n'; (\n${command}\n) ; printf '\\137\\137SH\\137END\\137%d\\137\\137\\n' $?\n`,
    );
    return this.until(
      `'${command.slice(0, 60)}'`,
      () => {
        const b = this.text.indexOf(BEGIN);
        if (b < 0) return undefined;
        const rest = this.text.slice(b + BEGIN.length);
        const m = END.exec(rest);
        if (!m) return undefined;
        this.text = "";
        return { status: Number(m[1]), output: rest.slice(0, m.index) };
      },
      ms,
    );
  }
}
