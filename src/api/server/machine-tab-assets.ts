// The /machine page's files: its HTML, and its script, worker and style bundled from src/web/machine (and
// src/machine, which the worker runs) with esbuild the first time they are asked for, then kept in memory.
// No CDN and nothing fetched at run time: xterm.js comes from node_modules.

import { readFile } from "node:fs/promises";
import { basename } from "node:path";
import { fileURLToPath } from "node:url";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";

const SOURCE_DIR = fileURLToPath(new URL("../../web/machine/", import.meta.url));

export interface MachineTabAsset {
  readonly type: string;
  readonly body: Buffer;
}

const TYPES: Record<string, string> = {
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".html": "text/html; charset=utf-8",
};

async function build(): Promise<Map<string, MachineTabAsset>> {
  const { build: esbuild } = await import("esbuild");
  const assets = new Map<string, MachineTabAsset>();
  let result: Awaited<ReturnType<typeof esbuild>>;
  try {
    result = await esbuild({
      entryPoints: {
        machine: `${SOURCE_DIR}machine-page.ts`,
        "machine-worker": `${SOURCE_DIR}machine-worker.ts`,
      },
      bundle: true,
      write: false,
      outdir: "/machine",
      format: "iife",
      target: "es2022",
      platform: "browser",
      minify: true,
      sourcemap: "inline",
      logLevel: "silent",
    });
  } catch (e) {
    throw new HypervisorError("internal", `the /machine page could not be built: ${(e as Error).message}`);
  }
  for (const file of result.outputFiles ?? []) {
    const name = basename(file.path);
    const ext = name.slice(name.lastIndexOf("."));
    assets.set(name, { type: TYPES[ext] ?? "application/octet-stream", body: Buffer.from(file.contents) });
  }
  assets.set("", { type: TYPES[".html"]!, body: await readFile(`${SOURCE_DIR}machine.html`) });
  return assets;
}

let built: Promise<Map<string, MachineTabAsset>> | undefined;

/** The asset named `name` ("" is the page itself), or undefined. Built once per process. */
export async function machineTabAsset(name: string): Promise<MachineTabAsset | undefined> {
  built ??= build();
  try {
    return (await built).get(name);
  } catch (e) {
    built = undefined; // a failed build is tried again at the next request
    throw e;
  }
}
