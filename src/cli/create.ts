// `tsvm create NAME`: provisions a VM from an image and starts it (the API's instances.insert).

import { parseMiB } from "../api/sizes.ts";
import type { InsertInstanceRequest } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { NETWORK_OPTIONS, networkFieldsOf } from "./network-options.ts";
import { SCHEDULING_OPTIONS, schedulingOf } from "./scheduling-options.ts";
import { waitUnlessAsync } from "./wait-operation.ts";

const HELP = `Usage: tsvm create NAME [options]

Creates a VM with its own copy of the image's root disk and starts it. It has a NAT card (eth0: outbound
access through passt, an address by DHCP) unless --no-nat, then one card per --network.

Options:
  --machine-type TYPE     t1-micro, t1-small (default), t1-medium, t1-standard-2, t1-standard-4,
                          or custom-CPUS-MEMORYMIB
  --cpus N                vCPUs (1-8); with --memory instead of --machine-type
  --memory SIZE           memory, e.g. 128M, 1G (32 MiB to 2 GiB)
  --image NAME            image to copy the root disk from (default: default)
  --engine NAME           engine to run the VM (default: the daemon's, riscv)
  --host NAME             in a cluster, the host to run the VM on (default: the scheduler places it on
                          the UP host with the most free memory; tsvm hosts list)
  --shared-storage        in a cluster with shared storage, keep the VM's files there: when its host
                          goes DOWN another host restarts it (no snapshots, clones, export or move yet)
  --cpu-cap PERCENT       CPU cap in percent of one host core, e.g. 50%
  --cpu-weight N          share under contention, 1-10000 (default 100)
  --no-automatic-restart  after a crash, stay TERMINATED instead of booting again
  --on-host-maintenance MIGRATE|TERMINATE
                          what 'tsvm host drain' does with it: move it to another host (the
                          default) or stop it
  --forward PROTO:[ADDR:]HOSTPORT:GUESTPORT
                          forward a host port to the guest through its NAT card (repeatable), e.g.
                          tcp:8080:80, udp:5353:53; passt listens on 127.0.0.1 unless ADDR is given
                          (tcp:0.0.0.0:8080:80); host ports 1024-65535, not in use
  --network NAME          a card on private network NAME after the NAT card (repeatable; tsvm network)
  --no-nat                no NAT card (no outbound network, no forwards)
  --async                 print the operation id and return at once
  --format table|json     output format
`;

export async function createCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return fail("create", e, true);
  }
  if (parsed.values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const { values, positionals } = parsed;
  const format = parseFormat(values.format);
  const usage = (message: string) => fail("create", new Error(`${message}; see 'tsvm create --help'`), true);
  if (format !== "table" && format !== "json") return usage(format);
  if (positionals.length !== 1) return usage("give exactly one VM name");
  const req: { -readonly [K in keyof InsertInstanceRequest]: InsertInstanceRequest[K] } = {
    name: positionals[0]!,
  };
  if (values["machine-type"] !== undefined) req.machineType = values["machine-type"];
  if (values.host !== undefined) req.host = values.host;
  if (values["shared-storage"]) req.sharedStorage = true;
  if (values.cpus !== undefined) {
    if (!/^\d+$/.test(values.cpus)) return usage(`--cpus must be a whole number (got '${values.cpus}')`);
    req.cpus = Number(values.cpus);
  }
  if (values.memory !== undefined) {
    const mib = parseMiB(values.memory);
    if (typeof mib === "string") return usage(`--memory: ${mib}`);
    req.memoryMiB = mib;
  }
  if (values.image !== undefined) req.image = values.image;
  if (values.engine !== undefined) req.engine = values.engine;
  const scheduling = schedulingOf(values);
  if (typeof scheduling === "string") return usage(scheduling);
  Object.assign(req, scheduling);
  const network = networkFieldsOf(values);
  if (typeof network === "string") return usage(network);
  Object.assign(req, network);
  try {
    const client = await connectDaemon();
    const op = await client.insertInstance(req);
    const done = await waitUnlessAsync(client, op, { async: values.async, json: format === "json" });
    if (done === undefined) return 0;
    const vm = await client.getInstance(req.name);
    if (format === "json") printJson(vm);
    else
      process.stdout.write(
        `Created ${vm.name} (${vm.machineType}: ${vm.cpus} vCPU, ${vm.memoryMiB} MiB): ${vm.status}\n`,
      );
    return 0;
  } catch (e) {
    return fail("create", e);
  }
}

function parse(argv: string[]) {
  return parseCommandLine("create", argv, {
    allowPositionals: true,
    options: {
      "machine-type": { type: "string" },
      cpus: { type: "string" },
      memory: { type: "string" },
      image: { type: "string" },
      engine: { type: "string" },
      host: { type: "string" },
      "shared-storage": { type: "boolean" },
      ...SCHEDULING_OPTIONS,
      ...NETWORK_OPTIONS,
      async: { type: "boolean" },
      format: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}
