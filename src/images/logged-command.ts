// Runs the external commands of an image build with their whole output appended to a log file, and
// turns a failure into one ImageBuildError naming the step and that log.
import { spawn } from "node:child_process";
import { closeSync, openSync, writeSync } from "node:fs";
import { ImageBuildError } from "./image-build-error.ts";

export interface LoggedCommandOptions {
  /** Step name used in the error, e.g. "busybox: building". */
  readonly step: string;
  readonly logPath: string;
  readonly cwd: string;
  readonly env?: NodeJS.ProcessEnv;
  /** Text fed to the command's standard input (closed otherwise). */
  readonly input?: string;
}

/** Runs `command args…`, appending its stdout and stderr to the log; rejects on a non-zero exit. */
export function runLogged(
  command: string,
  args: readonly string[],
  opts: LoggedCommandOptions,
): Promise<void> {
  const fd = openSync(opts.logPath, "a");
  writeSync(fd, `\n$ (cd ${opts.cwd} && ${[command, ...args].join(" ")})\n`);
  return new Promise<void>((resolve, reject) => {
    // "error" (command not found) may be followed by "close": settle and close the log once.
    let settled = false;
    const settle = () => {
      if (settled) return false;
      settled = true;
      closeSync(fd);
      return true;
    };
    const fail = (why: string) =>
      reject(
        new ImageBuildError(
          "IMAGE_BUILD_FAILED",
          `image build step '${opts.step}' failed: ${why}; full log: ${opts.logPath}`,
          opts.step,
          opts.logPath,
        ),
      );
    const child = spawn(command, args, {
      cwd: opts.cwd,
      env: opts.env ?? process.env,
      stdio: [opts.input === undefined ? "ignore" : "pipe", fd, fd],
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    child.on("error", (err) => {
      if (settle()) fail(`cannot run ${command} (${err.message})`);
    });
    child.on("close", (code, signal) => {
      if (!settle()) return;
      if (code === 0) resolve();
      else fail(signal ? `${command} was killed by ${signal}` : `${command} exited with status ${code}`);
    });
  });
}

/** Runs a command and returns its standard output; for quick queries (dpkg-query, apt-get --print-uris). */
export function captureOutput(command: string, args: readonly string[]): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (b: Buffer) => out.push(b));
    child.stderr.on("data", (b: Buffer) => err.push(b));
    child.on("error", (e) => reject(new Error(`cannot run ${command}: ${e.message}`)));
    child.on("close", (code) => {
      if (code === 0) resolve(Buffer.concat(out).toString());
      else {
        const detail = Buffer.concat(err).toString().trim().split("\n").slice(-3).join(" / ");
        reject(new Error(`${command} ${args.join(" ")} exited with status ${code}: ${detail}`));
      }
    });
  });
}
