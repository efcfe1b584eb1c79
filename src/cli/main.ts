// Entry of the tsvm command line: dispatches to one file per command.

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
  logs         a VM's console history            top        live per-VM CPU, MIPS, memory, disk
  console      attach to a VM's serial console (Ctrl-A d detaches)
  exec         run a command in a VM through its guest agent: tsvm exec NAME -- CMD…

Run 'tsvm <command> --help' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  if (command === "run") return (await import("./run.ts")).runCommand(rest);
  if (command === "image") return (await import("./image.ts")).imageCommand(rest);
  if (command === "create") return (await import("./create.ts")).createCommand(rest);
  if (command === "list") return (await import("./list.ts")).listCommand(rest);
  if (command === "describe") return (await import("./describe.ts")).describeCommand(rest);
  if (["start", "stop", "reset", "suspend", "resume", "delete"].includes(command))
    return (await import("./instance-action.ts")).instanceActionCommand(command as "start", rest);
  if (command === "operations") return (await import("./operations.ts")).operationsCommand(rest);
  if (command === "events") return (await import("./events.ts")).eventsCommand(rest);
  if (command === "daemon") return (await import("./daemon.ts")).daemonCommand(rest);
  if (command === "logs") return (await import("./logs.ts")).logsCommand(rest);
  if (command === "top") return (await import("./top.ts")).topCommand(rest);
  if (command === "console") return (await import("./console.ts")).consoleCommand(rest);
  if (command === "exec") return (await import("./exec.ts")).execCommand(rest);
  process.stderr.write(
    `tsvm: unknown command '${command}' (rest: ${rest.length} arguments); see 'tsvm --help'\n`,
  );
  return 2;
}
