// `tsvm web`: makes the daemon serve the web console and prints the URL that signs a browser in (a
// one-time login code, as Jupyter prints), opening the host's browser on it when there is one.

import { spawn } from "node:child_process";
import { accessSync, constants } from "node:fs";
import { delimiter, join } from "node:path";
import { DEFAULT_WEB_LISTEN } from "../api/types.ts";
import { connectDaemon } from "./daemon-connection.ts";
import { fail, parseFormat, printJson } from "./output.ts";
import { parseCommandLine } from "./parse-command-line.ts";

const HELP = `Usage: tsvm web [--listen HOST:PORT] [--no-open] [--format table|json]

Makes the daemon serve the web console on HOST:PORT (default ${DEFAULT_WEB_LISTEN}) and prints the URL
to open: it carries a one-time login code that signs one browser in (run again for another). Without
--no-open the host's browser is opened on it when there is one (xdg-open).
`;

/** xdg-open's path when it is on PATH. */
function findOpener(): string | undefined {
  for (const dir of (process.env.PATH ?? "").split(delimiter)) {
    if (!dir) continue;
    const path = join(dir, "xdg-open");
    try {
      accessSync(path, constants.X_OK);
      return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Opens `url` in the host's browser if there is one; never fails (a headless host has none). */
function openBrowser(url: string): void {
  const opener = findOpener();
  if (!opener || (!process.env.DISPLAY && !process.env.WAYLAND_DISPLAY)) return;
  try {
    const child = spawn(opener, [url], { detached: true, stdio: "ignore" });
    child.on("error", () => {});
    child.unref();
  } catch {
    // No browser to open: the printed URL is enough.
  }
}

export async function webCommand(argv: string[]): Promise<number> {
  let values: { listen?: string; "no-open"?: boolean; format?: string; help?: boolean };
  try {
    ({ values } = parseCommandLine("web", argv, {
      options: {
        listen: { type: "string" },
        "no-open": { type: "boolean" },
        format: { type: "string" },
        help: { type: "boolean", short: "h" },
      },
    }));
  } catch (e) {
    return fail("web", e, true);
  }
  if (values.help) {
    process.stdout.write(HELP);
    return 0;
  }
  const format = parseFormat(values.format);
  if (format !== "table" && format !== "json") return fail("web", new Error(format), true);
  try {
    const web = await (await connectDaemon()).openWebConsole(values.listen);
    if (format === "json") printJson(web);
    else process.stdout.write(`${web.loginUrl}\n`);
    if (!values["no-open"]) openBrowser(web.loginUrl);
    return 0;
  } catch (e) {
    return fail("web", e);
  }
}
