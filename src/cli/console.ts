// `tsvm console NAME`: attaches the terminal to the VM's serial console (several viewers may attach at
// once); Ctrl-A d detaches, Ctrl-A Ctrl-A sends a literal Ctrl-A.

import { connectDaemon } from "./daemon-connection.ts";
import { fail } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm console NAME

Attaches this terminal to the VM's serial console. Other viewers may be attached at the same time.
Keys: Ctrl-A d detaches (the VM keeps running); Ctrl-A Ctrl-A sends Ctrl-A.
`;

const CTRL_A = 0x01;

export async function consoleCommand(argv: string[]): Promise<number> {
  let parsed: { values: { help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("console", argv, {
      allowPositionals: true,
      options: { help: { type: "boolean", short: "h" } },
    });
  } catch (e) {
    return fail("console", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (parsed.positionals.length !== 1) return fail("console", new Error("give exactly one VM name"), true);
  const name = parsed.positionals[0]!;
  let conn: Awaited<ReturnType<Awaited<ReturnType<typeof connectDaemon>>["openSerialPort"]>>;
  try {
    conn = await (await connectDaemon()).openSerialPort(name);
  } catch (e) {
    return fail("console", e);
  }
  const stdin = process.stdin;
  const tty = stdin.isTTY === true;
  if (tty) process.stderr.write(`Attached to ${name}'s console; Ctrl-A d detaches.\r\n`);
  conn.onData((bytes) => {
    // A terminal or pipe that does not keep up holds the console back (the VM's VMM then drops what it
    // cannot hold for us, and says so in the output) rather than filling this process's memory.
    if (!process.stdout.write(bytes)) {
      conn.pause();
      process.stdout.once("drain", () => conn.resume());
    }
  });
  let afterCtrlA = false;
  let detached = false;
  const restore = () => {
    if (tty && stdin.isRaw) stdin.setRawMode(false);
    stdin.pause();
  };
  const onInput = (chunk: Buffer) => {
    const out: number[] = [];
    for (const byte of chunk) {
      if (afterCtrlA) {
        afterCtrlA = false;
        if (byte === 0x64 /* d */) {
          detached = true;
          conn.close();
          return;
        }
        out.push(byte === CTRL_A ? CTRL_A : byte);
        continue;
      }
      if (byte === CTRL_A && tty) afterCtrlA = true;
      else out.push(byte);
    }
    if (out.length > 0) conn.write(Buffer.from(out));
  };
  try {
    if (tty) stdin.setRawMode(true);
    stdin.on("data", onInput);
    // Piped input: when it ends, detach once it has been sent.
    stdin.on("end", () => {
      if (!tty) setTimeout(() => conn.close(), 300);
    });
    stdin.resume();
    process.once("SIGTERM", () => conn.close());
    await conn.closed;
  } finally {
    stdin.off("data", onInput);
    restore();
  }
  if (tty)
    process.stderr.write(
      detached ? `\r\nDetached from ${name}.\r\n` : `\r\nThe console of ${name} closed.\r\n`,
    );
  return 0;
}
