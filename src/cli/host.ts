// `tsvm host drain H` / `tsvm host undrain H`: a cluster host's maintenance (docs/cluster.md). A drain
// marks the host DRAINING (no new VMs), stops its VMs whose onHostMaintenance is TERMINATE and moves its
// MIGRATE ones to other hosts, then prints what it did; undrain lets the host take new VMs again.

import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm host drain HOST [--format table|json]
       tsvm host undrain HOST [--format table|json]

drain: HOST takes no new VMs (DRAINING); each of its running VMs is stopped (onHostMaintenance TERMINATE)
or moved live to another host (MIGRATE, the default). Prints what was stopped, moved and left (and why);
exits 1 when a VM was left. undrain: HOST takes new VMs again (its VMs are not moved back).
`;

export async function hostCommand(argv: string[]): Promise<number> {
  let values: { format?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseCommandLine("host", argv, {
      allowPositionals: true,
      options: { format: { type: "string" }, help: { type: "boolean", short: "h" } },
    }));
  } catch (e) {
    return fail("host", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const [action, name, ...rest] = positionals;
  if ((action !== "drain" && action !== "undrain") || name === undefined || rest.length > 0)
    return fail("host", new Error("usage: tsvm host drain HOST | tsvm host undrain HOST"), true);
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("host", new Error(format), true);
  try {
    const daemon = await connectDaemon();
    if (action === "undrain") {
      const host = await daemon.undrainHost(name);
      if (format === "json") printJson(host);
      else process.stdout.write(`${host.name}: ${host.status}\n`);
      return 0;
    }
    const result = await daemon.drainHost(name);
    if (format === "json") printJson(result);
    else {
      const lines = [`${result.host.name}: ${result.host.status}`];
      for (const vm of result.stopped) lines.push(`  ${vm}: stopped (onHostMaintenance TERMINATE)`);
      for (const vm of result.moved) lines.push(`  ${vm.name}: moved to ${vm.to}`);
      for (const vm of result.remaining) lines.push(`  ${vm.name}: left on the host: ${vm.reason}`);
      process.stdout.write(`${lines.join("\n")}\n`);
    }
    return result.remaining.length === 0 ? 0 : 1;
  } catch (e) {
    return fail("host", e);
  }
}
