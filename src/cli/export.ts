// `tsvm export NAME FILE|-`: downloads a TERMINATED or SUSPENDED VM as one export file (docs/export-format.md),
// to FILE (written under a temp name beside it and renamed once complete) or to standard output.

import { createWriteStream } from "node:fs";
import { rename, rm } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { connectDaemon } from "./daemon-connection.ts";
import { fail } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { TransferProgress } from "./transfer-progress.ts";

const HELP = `Usage: tsvm export NAME FILE|- [--no-snapshots] [--progress|--no-progress]

Writes the VM NAME (TERMINATED or SUSPENDED) as one file: its definition, disk, saved memory when
SUSPENDED, snapshots and boot files. 'tsvm import FILE' recreates it on any host; a suspended VM resumes
there where it left off. FILE '-' writes to standard output: tsvm export web - | ssh other tsvm import -
A RUNNING VM is refused: suspend or stop it first. The VM is not changed.
  --no-snapshots   leave the VM's snapshots out
  --progress       show progress on stderr even when it is not a terminal (one line per 10%)
  --no-progress    never show progress (default: shown when stderr is a terminal)
`;

const parse = (argv: string[]) =>
  parseCommandLine("export", argv, {
    allowPositionals: true,
    options: {
      "no-snapshots": { type: "boolean" },
      progress: { type: "boolean" },
      "no-progress": { type: "boolean" },
      help: { type: "boolean", short: "h" },
    },
  });

export async function exportCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return fail("export", e, true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  if (positionals.length !== 2)
    return fail(
      "export",
      new Error("give a VM name and a file (or - for standard output); see 'tsvm export --help'"),
      true,
    );
  const [name, file] = positionals as [string, string];
  const toStdout = file === "-";
  if (toStdout && process.stdout.isTTY)
    return fail("export", new Error("standard output is a terminal; redirect it or give a file"), true);
  // Never half a file under FILE's name: a temp name beside it, renamed once the whole file is written.
  const temp = toStdout ? undefined : join(dirname(file), `.${basename(file)}.tsvm-partial-${process.pid}`);
  const progress = TransferProgress.choose(
    `exporting ${name}`,
    values["no-progress"] ? false : values.progress,
  );
  try {
    const client = await connectDaemon();
    // process.stdout, not a file stream on fd 1: once Node has made a pipe's fd non-blocking, plain writes
    // to it fail with EAGAIN whenever the reader is behind.
    const dest = toStdout ? process.stdout : createWriteStream(temp!, { flags: "wx", mode: 0o600 });
    await client.exportInstance(name, dest, {
      snapshots: !values["no-snapshots"],
      onProgress: (received, total) => progress.update(received, total),
    });
    progress.finish();
    if (temp) await rename(temp, file);
    return 0;
  } catch (e) {
    progress.finish();
    if (temp) await rm(temp, { force: true });
    const err = e as NodeJS.ErrnoException;
    if (err.syscall && err.code)
      return fail(
        "export",
        new Error(
          `could not write ${toStdout ? "standard output" : file}: ${err.code === "ENOSPC" ? "no space left on device (ENOSPC)" : `${err.code}: ${err.message}`}` +
            `${temp ? "; the partial file was removed" : ""}; the VM '${name}' is unchanged`,
        ),
      );
    return fail("export", e);
  }
}
