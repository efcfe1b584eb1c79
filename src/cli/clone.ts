// `tsvm clone SRC NEW [--snapshot NAME]`: a new VM from a stopped or suspended VM or from one of its
// snapshots, sharing the unchanged disk data, with a new identity (the API's instances.insert with
// sourceInstance / sourceSnapshot).

import type { InsertInstanceRequest } from "../api/types.ts";
import { fail, parseFormat } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { FORWARD_OPTIONS, forwardsOf } from "./network-options.ts";
import { SCHEDULING_OPTIONS, schedulingOf } from "./scheduling-options.ts";
import { runInstanceAction } from "./wait-operation.ts";

const HELP = `Usage: tsvm clone SRC NEW [options]

Creates the VM NEW from the VM SRC and starts it. SRC must be TERMINATED or SUSPENDED (or give a snapshot).
The clone shares SRC's disk as it is now (copy-on-write: unchanged data is stored once) and has the same
machine type, image, engine and networks, but a new identity: name, hostname, /etc/machine-id, new MAC
addresses, and fresh randomness. SRC's port forwards are SRC's: give the clone its own with --forward.
From a SUSPENDED VM, or a snapshot with memory, the clone resumes where its source was; otherwise it boots.

Options:
  --snapshot NAME         clone SRC's snapshot NAME instead of its present disk
  --cpu-cap PERCENT       CPU cap in percent of one host core, e.g. 50% (default: SRC's)
  --cpu-weight N          share under contention, 1-10000 (default: SRC's)
  --no-automatic-restart  after a crash, stay TERMINATED instead of booting again
  --on-host-maintenance MIGRATE|TERMINATE
                          what 'tsvm host drain' does with it: move it to another host (the
                          default) or stop it
  --forward PROTO:[ADDR:]HOSTPORT:GUESTPORT   forward a host port to the clone (repeatable; see create)
  --async                 print the operation id and return at once
  --format table|json     output format
`;

export async function cloneCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return fail("clone", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { values, positionals } = parsed;
  const format = parseFormat(values.format);
  const usage = (message: string) => fail("clone", new Error(`${message}; see 'tsvm clone --help'`), true);
  if (format !== "table" && format !== "json") return usage(format);
  if (positionals.length !== 2) return usage("give the source VM's name and the new VM's name");
  const [source, name] = positionals as [string, string];
  const req: { -readonly [K in keyof InsertInstanceRequest]: InsertInstanceRequest[K] } = {
    name,
    sourceInstance: source,
  };
  if (values.snapshot !== undefined) req.sourceSnapshot = values.snapshot;
  const scheduling = schedulingOf(values);
  if (typeof scheduling === "string") return usage(scheduling);
  Object.assign(req, scheduling);
  const forwards = forwardsOf(values.forward);
  if (typeof forwards === "string") return usage(forwards);
  if (forwards.length > 0) req.forwards = forwards;
  return runInstanceAction(
    "clone",
    name,
    { async: values.async, json: format === "json" },
    (client) => client.insertInstance(req),
    (vm) =>
      `Cloned ${source}${req.sourceSnapshot ? ` (snapshot ${req.sourceSnapshot})` : ""} as ${vm.name} (hostname ${vm.identity.hostname}, machine id ${vm.identity.machineId}): ${vm.status}`,
  );
}

function parse(argv: string[]) {
  return parseCommandLine("clone", argv, {
    allowPositionals: true,
    options: {
      snapshot: { type: "string" },
      ...SCHEDULING_OPTIONS,
      ...FORWARD_OPTIONS,
      async: { type: "boolean" },
      format: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}
