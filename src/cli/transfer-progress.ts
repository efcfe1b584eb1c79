// Progress of an export or import on stderr: bytes moved and, when the total is known, the percentage.
// Shown when stderr is a terminal (redrawn in place, at most 10 times a second) or when asked with
// --progress (then one line per whole 10%, so that a log or a test reads it line by line).

const MIB = 1048576;

function mib(bytes: number): string {
  return `${(bytes / MIB).toFixed(1)} MiB`;
}

export class TransferProgress {
  private lastDraw = 0;
  private lastTenth = -1;
  private drawn = false;

  constructor(
    private readonly what: string,
    private readonly mode: "tty" | "lines" | "off",
  ) {}

  /** `show`: true/false as asked (--progress / --no-progress), undefined for "when stderr is a terminal". */
  static choose(what: string, show: boolean | undefined): TransferProgress {
    const tty = process.stderr.isTTY === true;
    const mode = show === false ? "off" : tty ? "tty" : show ? "lines" : "off";
    return new TransferProgress(what, mode);
  }

  update(done: number, total?: number): void {
    if (this.mode === "off") return;
    const known = total !== undefined && total > 0;
    const percent = known ? Math.min(100, Math.floor((done * 100) / total)) : undefined;
    const text = `${this.what}: ${mib(done)}${known ? ` of ${mib(total)} (${percent}%)` : ""}`;
    if (this.mode === "lines") {
      // Lines per 10% when the total is known, else per 64 MiB.
      const tenth = known ? Math.floor(percent! / 10) : Math.floor(done / (64 * MIB));
      if (tenth === this.lastTenth) return;
      this.lastTenth = tenth;
      process.stderr.write(`${text}\n`);
      return;
    }
    const now = Date.now();
    if (now - this.lastDraw < 100 && percent !== 100) return;
    this.lastDraw = now;
    this.drawn = true;
    process.stderr.write(`\r\x1b[K${text}`);
  }

  /** Ends the progress line (a terminal's cursor goes to a fresh line). */
  finish(): void {
    if (this.mode === "tty" && this.drawn) process.stderr.write("\n");
  }
}
