// `tsvm snapshot create|list|describe|restore|delete`: a VM's snapshots (the API's snapshots collection under
// the instance, as gcloud's `compute machine-images` are for Compute Engine).

import type { Snapshot } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { waitUnlessAsync } from "./wait-operation.ts";

const HELP = `Usage: tsvm snapshot create VM NAME [--description TEXT] [--async] [--format table|json]
       tsvm snapshot list VM [--format table|json]
       tsvm snapshot describe VM NAME [--format table|json]
       tsvm snapshot restore VM NAME [--async] [--format table|json]
       tsvm snapshot delete VM NAME [--async] [--format table|json]

  create    takes a snapshot. Of a RUNNING VM with its memory: the guest is paused briefly and runs on.
            Of a TERMINATED VM its disk; of a SUSPENDED VM its disk and saved memory.
  list      the VM's snapshots as a tree (each with its parent), with their size on disk
  describe  one snapshot
  restore   makes the VM what it was at the snapshot. With memory the guest runs on from that moment
            (the VM ends RUNNING); a disk-only snapshot leaves the VM TERMINATED with that disk (a running
            VM is stopped first: its guest and disk are replaced).
  delete    removes a snapshot; every other one stays restorable

Options:
  --description TEXT   what the snapshot is for (create)
  --async              print the operation id and return at once
  --format table|json  output format
`;

const SUBCOMMANDS: Readonly<Record<string, number>> = {
  create: 2,
  list: 1,
  describe: 2,
  restore: 2,
  delete: 2,
};

function size(bytes: number): string {
  if (bytes < 1048576) return `${Math.ceil(bytes / 1024)} KiB`;
  return `${(bytes / 1048576).toFixed(1)} MiB`;
}

/** The snapshots as a tree: each under its parent, indented, oldest first among siblings. */
function treeRows(items: readonly Snapshot[]): string[][] {
  const children = new Map<string | null, Snapshot[]>();
  for (const s of items) children.set(s.parent, [...(children.get(s.parent) ?? []), s]);
  const rows: string[][] = [];
  const walk = (parent: string | null, depth: number) => {
    for (const s of children.get(parent) ?? []) {
      rows.push([
        `${"  ".repeat(depth)}${s.name}${s.current ? " *" : ""}`,
        s.parent ?? "-",
        s.creationTimestamp,
        size(s.diskSizeBytes + s.memorySizeBytes),
        s.memory ? "yes" : "no",
        s.description,
      ]);
      walk(s.name, depth + 1);
    }
  };
  walk(null, 0);
  return rows;
}

export function printSnapshotTree(items: readonly Snapshot[]): void {
  if (items.length === 0) {
    process.stdout.write("no snapshots\n");
    return;
  }
  printTable(["NAME", "PARENT", "CREATED", "SIZE", "MEMORY", "DESCRIPTION"], treeRows(items));
}

export async function snapshotCommand(argv: string[]): Promise<number> {
  let parsed: {
    values: { description?: string; async?: boolean; format?: string; help?: boolean };
    positionals: string[];
  };
  try {
    parsed = parseCommandLine("snapshot", argv, {
      allowPositionals: true,
      options: {
        description: { type: "string" },
        async: { type: "boolean" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail("snapshot", e, true);
  }
  const { values, positionals } = parsed;
  const [sub, vm, name, ...extra] = positionals;
  if (values.help || sub === undefined) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  const usage = (message: string) =>
    fail("snapshot", new Error(`${message}; see 'tsvm snapshot --help'`), true);
  const arity = SUBCOMMANDS[sub];
  if (arity === undefined || !Object.hasOwn(SUBCOMMANDS, sub)) return usage(`unknown subcommand '${sub}'`);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return usage(format);
  const given = positionals.length - 1;
  if (given !== arity)
    return usage(
      `'snapshot ${sub}' takes ${arity === 1 ? "the VM's name" : "the VM's name and the snapshot's"}`,
    );
  if (extra.length > 0) return usage(`unexpected argument '${extra[0]}'`);
  if (values.description !== undefined && sub !== "create") return usage("--description is for create only");
  try {
    const client = await connectDaemon();
    if (sub === "list") {
      const list = await client.listSnapshots(vm!);
      if (format === "json") printJson(list.items);
      else printSnapshotTree(list.items);
      return 0;
    }
    if (sub === "describe") {
      const s = await client.getSnapshot(vm!, name!);
      if (format === "json") printJson(s);
      else
        process.stdout.write(
          `${[
            `name:         ${s.name}${s.current ? " (current)" : ""}`,
            `instance:     ${s.instance}`,
            `parent:       ${s.parent ?? "-"}`,
            `created:      ${s.creationTimestamp} (the VM was ${s.vmStatus}, ${s.machineType})`,
            `memory:       ${s.memory ? `yes (${size(s.memorySizeBytes)})` : "no"}`,
            `disk layer:   ${size(s.diskSizeBytes)}`,
            `description:  ${s.description || "-"}`,
          ].join("\n")}\n`,
        );
      return 0;
    }
    const op =
      sub === "create"
        ? await client.createSnapshot(vm!, { name: name!, description: values.description ?? "" })
        : sub === "restore"
          ? await client.restoreSnapshot(vm!, name!)
          : await client.deleteSnapshot(vm!, name!);
    const done = await waitUnlessAsync(client, op, { async: values.async, json: format === "json" });
    if (done === undefined) return 0;
    if (format === "json") printJson(done);
    else process.stdout.write(`${done.statusMessage || `${sub} of snapshot '${name}' done`}\n`);
    return 0;
  } catch (e) {
    return fail("snapshot", e);
  }
}
