// `tsvm --version` / `tsvm version`: the version in package.json, read from the repository the command runs
// from (scripts/bundle.ts keeps each module's source import.meta.url, so the path holds in bundled code too).

import { readFileSync } from "node:fs";

const HELP = `Usage: tsvm version (or tsvm --version)

Prints tsvm's version, from the package.json of the repository it runs from.
`;

/** The "version" of the repository's package.json. */
export function tsvmVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as {
    version?: unknown;
  };
  if (typeof pkg.version !== "string") throw new Error("package.json has no version");
  return pkg.version;
}

export function versionCommand(argv: string[]): number {
  if (argv.length === 1 && (argv[0] === "--help" || argv[0] === "-h")) {
    process.stdout.write(HELP);
    return 0;
  }
  if (argv.length > 0) {
    process.stderr.write(`tsvm version: unexpected argument '${argv[0]}'; see 'tsvm version --help'\n`);
    return 2;
  }
  process.stdout.write(`tsvm ${tsvmVersion()}\n`);
  return 0;
}
