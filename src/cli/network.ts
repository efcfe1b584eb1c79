// `tsvm network create|list|describe|delete`: private networks (the API's networks collection, as gcloud's
// `compute networks`).

import type { Network, Operation } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson, printTable } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm network create NAME [--subnet CIDR] [--format table|json]
       tsvm network list [--format table|json]
       tsvm network describe NAME [--format table|json]
       tsvm network delete NAME [--format table|json]

A private network is an IPv4 subnet with its own switch: VMs with a card on it (tsvm create --network
NAME) get their address from it by DHCP and reach each other by VM name (an /etc/hosts block tsvm keeps
current), and nothing else: no route to the host or beyond, and no other network's VMs.

  create    makes a network; its subnet is a private-range IPv4 CIDR from /16 to /29 that overlaps no
            other network's (default: the first free /24 from 10.77.0.0/24 on). 'nat' is reserved.
  list      the networks, their cards and the frames their switches carried
  describe  one network, with its switch's counters per card
  delete    removes a network; refused while any VM (in any status) has a card on it

Options:
  --subnet CIDR        the network's subnet (create), e.g. 192.168.50.0/24
  --format table|json  output format
`;

const SUBCOMMANDS: Readonly<Record<string, number>> = { create: 1, list: 0, describe: 1, delete: 1 };

function frames(n: Network): string {
  const rx = n.ports.reduce((sum, p) => sum + p.rxFrames, 0);
  const dropped = n.ports.reduce(
    (sum, p) => sum + p.forgedDropped + p.floodDropped + p.queueDropped + p.unknownDropped + p.invalidDropped,
    0,
  );
  return n.switchRunning ? `${rx} in, ${dropped} dropped` : "-";
}

function describe(n: Network): string {
  const lines = [
    `name:      ${n.name}`,
    `subnet:    ${n.subnet} (the switch is ${n.gatewayAddress}: DHCP and ARP only, no route)`,
    `created:   ${n.creationTimestamp}`,
    `switch:    ${n.switchRunning ? "running" : "not running (it starts with the network's first VM)"}`,
    "cards:",
    ...(n.members.length === 0 ? ["  none"] : n.members.map((m) => `  ${m.instance}  ${m.mac}  ${m.ipv4}`)),
  ];
  if (n.ports.length > 0) {
    lines.push("switch ports (frames):");
    for (const p of n.ports)
      lines.push(
        `  ${p.vmName} ${p.mac}: in ${p.rxFrames}, out ${p.txFrames}; dropped: forged ${p.forgedDropped}, ` +
          `flood ${p.floodDropped}, queue ${p.queueDropped}, unknown ${p.unknownDropped}, invalid ${p.invalidDropped}`,
      );
  }
  return `${lines.join("\n")}\n`;
}

function checkDone(op: Operation): void {
  if (op.error) throw new Error(op.error.message);
}

export async function networkCommand(argv: string[]): Promise<number> {
  let parsed: { values: { subnet?: string; format?: string; help?: boolean }; positionals: string[] };
  try {
    parsed = parseCommandLine("network", argv, {
      allowPositionals: true,
      options: {
        subnet: { type: "string" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    return fail("network", e, true);
  }
  const { values, positionals } = parsed;
  const [sub, name, ...extra] = positionals;
  if (values.help || sub === undefined) {
    process.stdout.write(HELP);
    return values.help ? 0 : 2;
  }
  const usage = (message: string) =>
    fail("network", new Error(`${message}; see 'tsvm network --help'`), true);
  const arity = SUBCOMMANDS[sub];
  if (arity === undefined || !Object.hasOwn(SUBCOMMANDS, sub)) return usage(`unknown subcommand '${sub}'`);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return usage(format);
  if (positionals.length - 1 !== arity)
    return usage(
      arity === 0 ? `'network ${sub}' takes no argument` : `'network ${sub}' takes the network's name`,
    );
  if (extra.length > 0) return usage(`unexpected argument '${extra[0]}'`);
  if (values.subnet !== undefined && sub !== "create") return usage("--subnet is for create only");
  try {
    const client = await connectDaemon();
    if (sub === "list") {
      const list = await client.listNetworks();
      if (format === "json") printJson(list.items);
      else if (list.items.length === 0) process.stdout.write("no networks\n");
      else
        printTable(
          ["NAME", "SUBNET", "CARDS", "SWITCH"],
          list.items.map((n) => [n.name, n.subnet, String(n.members.length), frames(n)]),
        );
      return 0;
    }
    if (sub === "describe") {
      const n = await client.getNetwork(name!);
      if (format === "json") printJson(n);
      else process.stdout.write(describe(n));
      return 0;
    }
    if (sub === "create") {
      const op = await client.insertNetwork({
        name: name!,
        ...(values.subnet === undefined ? {} : { subnet: values.subnet }),
      });
      checkDone(op);
      const n = await client.getNetwork(name!);
      if (format === "json") printJson(n);
      else process.stdout.write(`created network '${n.name}' (${n.subnet})\n`);
      return 0;
    }
    const op = await client.deleteNetwork(name!);
    checkDone(op);
    if (format === "json") printJson(op);
    else process.stdout.write(`deleted network '${name}'\n`);
    return 0;
  } catch (e) {
    return fail("network", e);
  }
}
