// `tsvm import FILE|- [--name NAME]`: recreates a VM from an export file (or standard input) through the
// daemon, which verifies the whole file before it creates anything.

import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { TransferProgress } from "./transfer-progress.ts";

const HELP = `Usage: tsvm import FILE|- [--name NAME] [--drop-missing-networks] [--progress|--no-progress] [--format table|json]

Recreates the VM held in an export file ('tsvm export'), on this host: TERMINATED, or SUSPENDED with its
memory (then 'tsvm resume NAME' continues it where it was exported). FILE '-' reads standard input. The
whole file is checked (checksums, trailer) before anything is created; a damaged, truncated or foreign
file, or a name already taken, is refused and nothing is created.
  --name NAME      the new VM's name (default: the exported VM's)
  --drop-missing-networks
                   leave out the VM's cards on private networks this host does not have (without it
                   such a card refuses the import: create the network first); not for a VM with saved
                   memory (suspended, or memory snapshots), whose machine had the card
  --progress       show progress on stderr even when it is not a terminal
  --no-progress    never show progress (default: shown when stderr is a terminal)
`;

const parse = (argv: string[]) =>
  parseCommandLine("import", argv, {
    allowPositionals: true,
    options: {
      name: { type: "string" },
      "drop-missing-networks": { type: "boolean" },
      progress: { type: "boolean" },
      "no-progress": { type: "boolean" },
      format: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });

export async function importCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return fail("import", e, true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("import", new Error(format), true);
  if (positionals.length !== 1)
    return fail(
      "import",
      new Error("give one file (or - for standard input); see 'tsvm import --help'"),
      true,
    );
  const file = positionals[0]!;
  const fromStdin = file === "-";
  let total: number | undefined;
  if (!fromStdin) {
    try {
      const info = await stat(file);
      if (!info.isFile()) return fail("import", new Error(`${file} is not a file`));
      total = info.size;
    } catch (e) {
      return fail(
        "import",
        new Error(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`),
      );
    }
  }
  const progress = TransferProgress.choose(
    `importing ${fromStdin ? "standard input" : file}`,
    values["no-progress"] ? false : values.progress,
  );
  try {
    const client = await connectDaemon();
    const source = fromStdin ? process.stdin : createReadStream(file);
    const op = await client.importInstance(source, {
      name: values.name,
      dropMissingNetworks: values["drop-missing-networks"],
      onProgress: (sent) => progress.update(sent, total),
    });
    source.destroy();
    progress.finish();
    if (op.error) return fail("import", new Error(op.error.message));
    const vm = await client.getInstance(op.targetName);
    if (format === "json") printJson(vm);
    else process.stdout.write(`Imported ${vm.name} (${vm.status}).\n`);
    return 0;
  } catch (e) {
    progress.finish();
    return fail("import", e);
  }
}
