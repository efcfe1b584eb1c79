// Entry of the tsvm command line: dispatches to one file per command.

const HELP = `tsvm — a hypervisor written in TypeScript

Usage: tsvm <command> [options]

Commands:
  run          boot a Linux guest (or any kernel for QEMU's virt board) on the terminal
  image        build or list guest images

Run 'tsvm <command> --help' for a command's options.
`;

export async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  if (command === undefined || command === "--help" || command === "-h" || command === "help") {
    process.stdout.write(HELP);
    return command === undefined ? 2 : 0;
  }
  process.stderr.write(
    `tsvm: unknown command '${command}' (rest: ${rest.length} arguments); see 'tsvm --help'\n`,
  );
  return 2;
}
