// `tsvm update NAME --forward … | --no-forwards`: changes a TERMINATED VM's port forwards (the API's
// instances.update, PATCH /v1/instances/NAME); they take effect at its next start.

import { formatPortForward } from "../api/schemas/port-forward-text.ts";
import type { UpdateInstanceRequest } from "../api/types.ts";
import { FORWARD_OPTIONS, forwardsOf } from "./network-options.ts";
import { fail, parseFormat } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";
import { runInstanceAction } from "./wait-operation.ts";

const HELP = `Usage: tsvm update NAME (--forward PROTO:[ADDR:]HOSTPORT:GUESTPORT… | --no-forwards) [options]

Changes a TERMINATED VM (stop it first); the change takes effect at its next start.

Options:
  --forward PROTO:[ADDR:]HOSTPORT:GUESTPORT
                        the VM's port forwards, replacing all it has (repeatable), e.g. tcp:8080:80,
                        udp:5353:53, tcp:0.0.0.0:8080:80; host ports 1024-65535, not in use
  --no-forwards         remove every port forward
  --async               print the operation id and return at once
  --format table|json   output format
`;

export async function updateCommand(argv: string[]): Promise<number> {
  let parsed: ReturnType<typeof parse>;
  try {
    parsed = parse(argv);
  } catch (e) {
    return fail("update", e, true);
  }
  const { values, positionals } = parsed;
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const usage = (message: string) => fail("update", new Error(`${message}; see 'tsvm update --help'`), true);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return usage(format);
  if (positionals.length !== 1) return usage("give exactly one VM name");
  const name = positionals[0]!;
  const forwards = forwardsOf(values.forward);
  if (typeof forwards === "string") return usage(forwards);
  if (values["no-forwards"] && forwards.length > 0) return usage("give --forward or --no-forwards, not both");
  if (!values["no-forwards"] && forwards.length === 0)
    return usage("nothing to change: give --forward (repeatable) or --no-forwards");
  const req: UpdateInstanceRequest = { forwards };
  return runInstanceAction(
    "update",
    name,
    { async: values.async, json: format === "json" },
    (client) => client.updateInstance(name, req),
    (vm) =>
      `${vm.name}: port forwards ${vm.forwards.length === 0 ? "none" : vm.forwards.map(formatPortForward).join(", ")} (from its next start).`,
  );
}

function parse(argv: string[]) {
  return parseCommandLine("update", argv, {
    allowPositionals: true,
    options: {
      ...FORWARD_OPTIONS,
      "no-forwards": { type: "boolean" },
      async: { type: "boolean" },
      format: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}
