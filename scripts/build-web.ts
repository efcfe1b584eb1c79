// The web console's files: src/web bundled for the browser with esbuild into dist/web/<stamp>/ (scripts,
// style sheets with xterm.js's, and the HTML pages), built when the daemon first serves the console and
// again whenever the sources changed, as the start-up bundle is (scripts/bundle.ts). Everything a page
// loads is in that directory: nothing comes from a CDN or is fetched at run time.

import { chmodSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { join } from "node:path";
import { bundleStampOf, installBuild } from "./bundle.ts";

/** Script and style entry points: output name (without extension) → source, relative to the repository. */
export const WEB_ENTRY_POINTS: Readonly<Record<string, string>> = {
  console: "src/web/console/main.ts",
  "console-style": "src/web/console/console.css",
  // The machine in a browser tab: its page's script (with its style) and the worker running the machine.
  machine: "src/web/machine/machine-page.ts",
  "machine-worker": "src/web/machine/machine-worker.ts",
};

/** HTML pages copied as they are: output name → source. */
export const WEB_PAGES: Readonly<Record<string, string>> = {
  "index.html": "src/web/console/index.html",
  "machine.html": "src/web/machine/machine.html",
};

/** The sources a build depends on: src/web, the API's types (imported by the pages), the machine (run by
 *  the /machine page's worker), and the builder. */
const SOURCE_DIRS = ["src/web", "src/api", "src/machine"];
const BUILD_INPUTS = ["package-lock.json", "scripts/build-web.ts"];

export type WebBuild = { ok: true; dir: string } | { ok: false; problem: string };

/**
 * The directory of a build of the web files up to date with the sources at `root`, building it first when
 * there is none (in a temporary directory renamed into place, so a half-built one is never served).
 */
export async function ensureWebBuild(root: string): Promise<WebBuild> {
  const builds = join(root, "dist", "web");
  const stamp = bundleStampOf(root, SOURCE_DIRS, BUILD_INPUTS, /\.(?:ts|css|html|json)$/);
  const dir = join(builds, stamp);
  const complete = (): boolean => Object.keys(WEB_PAGES).every((p) => existsSync(join(dir, p)));
  if (complete()) return { ok: true, dir };
  let tmp: string | undefined;
  try {
    mkdirSync(builds, { recursive: true });
    tmp = mkdtempSync(join(builds, ".build-"));
    chmodSync(tmp, 0o755);
    const { build } = await import("esbuild");
    await build({
      absWorkingDir: root,
      entryPoints: Object.entries(WEB_ENTRY_POINTS).map(([out, src]) => ({ in: join(root, src), out })),
      outdir: tmp,
      bundle: true,
      format: "esm",
      platform: "browser",
      target: "es2022",
      minify: true,
      sourcemap: "linked",
      sourcesContent: false,
      legalComments: "linked",
      logLevel: "silent",
    });
    for (const [out, src] of Object.entries(WEB_PAGES)) copyFileSync(join(root, src), join(tmp, out));
    if (installBuild(tmp, dir)) tmp = undefined;
    return { ok: true, dir };
  } catch (e) {
    const first = (e instanceof Error ? e.message : String(e)).split("\n").slice(0, 3).join(" ");
    return { ok: false, problem: `building the web console's files failed: ${first}` };
  } finally {
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  }
}
