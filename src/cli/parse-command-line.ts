// The one argument parser of every tsvm command: node:util's parseArgs (strict), whose errors are rewritten
// as one line in tsvm's own words; node's own text quotes unevenly and talks about its API, not ours.

import { type ParseArgsConfig, parseArgs } from "node:util";

/** A bad command line; the message is the line to print after `tsvm COMMAND: `. */
export class UsageError extends Error {
  readonly code = "usage";
}

type ParsedCommandLine<T extends ParseArgsConfig> = ReturnType<typeof parseArgs<T>>;

/**
 * Parses `argv` for `tsvm <command>` (strict: unknown options and missing values are errors). Throws a
 * UsageError naming the bad argument and pointing at `tsvm <command> --help`.
 */
export function parseCommandLine<T extends Omit<ParseArgsConfig, "args" | "strict">>(
  command: string,
  argv: readonly string[],
  config: T,
): ParsedCommandLine<T & { args: string[]; strict: true }> {
  try {
    return parseArgs({ ...config, args: [...argv], strict: true });
  } catch (e) {
    throw new UsageError(`${inOurWords(e)}; see 'tsvm ${command} --help'`);
  }
}

/** node:util's ERR_PARSE_ARGS_* errors as one short clause; the argument is read back from its message. */
function inOurWords(e: unknown): string {
  const error = e as { code?: string; message?: string };
  const message = String(error.message ?? e);
  const quoted = /'([^']*)'/.exec(message)?.[1] ?? "";
  switch (error.code) {
    case "ERR_PARSE_ARGS_UNKNOWN_OPTION":
      return `unknown option '${quoted}'`;
    case "ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL":
      return `unexpected argument '${quoted}'`;
    case "ERR_PARSE_ARGS_INVALID_OPTION_VALUE": {
      // The quoted part reads "--format <value>" or "-f, --format <value>": the long name is the last word
      // starting with a dash.
      const option =
        quoted
          .split(/[\s,]+/)
          .filter((w) => w.startsWith("-"))
          .pop() ?? quoted;
      if (/does not take an argument/.test(message)) return `${option} takes no value`;
      if (/ambiguous/.test(message))
        return `${option} needs a value (write ${option}=VALUE for one starting with '-')`;
      return `${option} needs a value`;
    }
    default:
      return message.split(/\.\s/)[0]!;
  }
}
