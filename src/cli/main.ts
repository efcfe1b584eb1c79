// Entry of the tsvm command line: dispatches to one file per command.

import type { InstanceAction } from "./instance-action.ts";
import { takeRemoteOptions } from "./remote-api.ts";

const HELP = `tsvm — a hypervisor written in TypeScript

Usage: tsvm <command> [options]

Commands:
  run          boot a Linux guest (or any kernel for QEMU's virt board) on the terminal
  image        build or list guest images
  create       create a VM and start it          list       list VMs
  describe     show one VM                       start      start a VM
  stop         stop a VM                         reset      reset a VM
  suspend      suspend a VM to files             resume     resume a suspended VM
  delete       delete a VM                       events     VM events (--follow)
  operations   wait for or show operations       daemon     run, stop or query the daemon
  logs         a VM's console history            top        live per-VM CPU, MIPS, memory, disk, net
  console      attach to a VM's serial console (Ctrl-A d detaches)
  exec         run a command in a VM through its guest agent: tsvm exec NAME [-i] [-t] -- CMD…
  shell        an interactive login shell in a VM, through its guest agent
  cp           copy files and directories into or out of a VM: tsvm cp SRC VM:DST, tsvm cp VM:SRC DST
  export       write a stopped or suspended VM as one file (or - for stdout)
  import       recreate a VM from an export file (or - for stdin), on any host
  snapshot     create, list, restore or delete a VM's snapshots (with memory when running)
  clone        a new VM from a stopped or suspended VM or a snapshot, with a new identity
  network      create, list, describe or delete private networks (VMs on one reach each other by name)
  set-machine-type   change a stopped VM's vCPUs and memory
  update       change a stopped VM's port forwards
  machine-types      list the machine types
  web          serve the web console and print its one-time login URL
  hosts        list the cluster's hosts (status, capacity, used, VMs): tsvm hosts list
  host         maintenance of a cluster host: tsvm host drain H, tsvm host undrain H
  move         move a VM to another host of the cluster: tsvm move NAME --host HOST
  version      print tsvm's version (also tsvm --version)

Run 'tsvm help <command>' or 'tsvm <command> --help' for a command's options.

Global options: --api-url http://HOST:PORT and --token-file FILE (or TSVM_API_URL, TSVM_API_TOKEN_FILE) run
the command against that daemon's API, e.g. a cluster host's (docs/cluster.md), instead of $TSVM_HOME's.
`;

type Command = (argv: string[]) => Promise<number> | number;

const action =
  (name: InstanceAction): Command =>
  async (argv) =>
    (await import("./instance-action.ts")).instanceActionCommand(name, argv);

/** Each command's module is loaded only when it runs: a command pays for its own imports alone. */
const COMMANDS = new Map<string, Command>([
  ["run", async (argv) => (await import("./run.ts")).runCommand(argv)],
  ["image", async (argv) => (await import("./image.ts")).imageCommand(argv)],
  ["create", async (argv) => (await import("./create.ts")).createCommand(argv)],
  ["clone", async (argv) => (await import("./clone.ts")).cloneCommand(argv)],
  ["list", async (argv) => (await import("./list.ts")).listCommand(argv)],
  ["describe", async (argv) => (await import("./describe.ts")).describeCommand(argv)],
  ["start", action("start")],
  ["stop", action("stop")],
  ["reset", action("reset")],
  ["suspend", action("suspend")],
  ["resume", action("resume")],
  ["delete", action("delete")],
  ["operations", async (argv) => (await import("./operations.ts")).operationsCommand(argv)],
  ["events", async (argv) => (await import("./events.ts")).eventsCommand(argv)],
  ["daemon", async (argv) => (await import("./daemon.ts")).daemonCommand(argv)],
  ["hosts", async (argv) => (await import("./hosts.ts")).hostsCommand(argv)],
  ["host", async (argv) => (await import("./host.ts")).hostCommand(argv)],
  ["move", async (argv) => (await import("./move.ts")).moveCommand(argv)],
  ["logs", async (argv) => (await import("./logs.ts")).logsCommand(argv)],
  ["top", async (argv) => (await import("./top.ts")).topCommand(argv)],
  ["console", async (argv) => (await import("./console.ts")).consoleCommand(argv)],
  ["exec", async (argv) => (await import("./exec.ts")).execCommand(argv)],
  ["shell", async (argv) => (await import("./shell.ts")).shellCommand(argv)],
  ["cp", async (argv) => (await import("./cp.ts")).cpCommand(argv)],
  ["export", async (argv) => (await import("./export.ts")).exportCommand(argv)],
  ["import", async (argv) => (await import("./import.ts")).importCommand(argv)],
  ["network", async (argv) => (await import("./network.ts")).networkCommand(argv)],
  ["snapshot", async (argv) => (await import("./snapshot.ts")).snapshotCommand(argv)],
  ["set-machine-type", async (argv) => (await import("./set-machine-type.ts")).setMachineTypeCommand(argv)],
  ["update", async (argv) => (await import("./update.ts")).updateCommand(argv)],
  ["machine-types", async (argv) => (await import("./machine-types.ts")).machineTypesCommand(argv)],
  ["web", async (argv) => (await import("./web.ts")).webCommand(argv)],
  ["version", async (argv) => (await import("./version.ts")).versionCommand(argv)],
]);

export async function main(args: string[]): Promise<number> {
  let argv: string[];
  try {
    argv = takeRemoteOptions(args);
  } catch (e) {
    return unknown((e as Error).message);
  }
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "--version") return (await import("./version.ts")).versionCommand(rest);
  if (command === "help") {
    // `tsvm help CMD` is `tsvm CMD --help`.
    const [topic, ...extra] = rest;
    if (topic === undefined) {
      process.stdout.write(HELP);
      return 0;
    }
    if (extra.length > 0) return unknown(`'help' takes one command name, got ${rest.length}`);
    const help = COMMANDS.get(topic);
    if (help === undefined) return unknown(`unknown command '${topic}'`);
    return help(["--help"]);
  }
  const run = COMMANDS.get(command);
  if (run === undefined) return unknown(`unknown command '${command}'`);
  return run(rest);
}

function unknown(message: string): number {
  process.stderr.write(`tsvm: ${message}; see 'tsvm --help'\n`);
  return 2;
}
