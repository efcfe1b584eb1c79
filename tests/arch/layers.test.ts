// The layer rule of docs/architecture.md, checked on every import in src/ and bin/.
import assert from "node:assert/strict";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { test } from "node:test";
import { fileURLToPath } from "node:url";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");

/** Layer of a repository-relative path: the longest matching prefix wins. */
const LAYERS: Array<[prefix: string, layer: string]> = [
  ["src/machine/base/", "machine/base"],
  ["src/machine/state/", "machine/state"],
  ["src/machine/bus/", "machine/bus"],
  ["src/machine/fdt/", "machine/fdt"],
  ["src/machine/riscv/", "machine/riscv"],
  ["src/machine/devices/", "machine/devices"],
  ["src/machine/boards/", "machine/boards"],
  ["src/machine/smp/", "machine/smp"],
  ["src/machine/", "machine"],
  ["src/engines/", "engines"],
  ["src/images/", "images"],
  ["src/hypervisor/", "hypervisor"],
  ["src/api/server/", "api/server"],
  ["src/api/schemas/", "api/schemas"],
  ["src/api/", "api"],
  ["src/cli/", "cli"],
  ["src/web/machine/", "web/machine"],
  ["src/web/", "web"],
  ["bin/", "bin"],
];

/** Which layers each layer may import (itself always allowed). Keep in step with docs/architecture.md. */
const ALLOWED: Record<string, string[]> = {
  "machine/base": [],
  "machine/state": ["machine/base"],
  "machine/bus": ["machine/base", "machine/state"],
  "machine/fdt": ["machine/base"],
  "machine/riscv": ["machine/base", "machine/state", "machine/bus"],
  "machine/devices": ["machine/base", "machine/state", "machine/bus", "machine"],
  "machine/smp": [
    "machine/base",
    "machine/state",
    "machine/bus",
    "machine/riscv",
    "machine/devices",
    "machine",
  ],
  "machine/boards": [
    "machine/base",
    "machine/state",
    "machine/bus",
    "machine/fdt",
    "machine/riscv",
    "machine/devices",
    "machine/smp",
    "machine",
  ],
  machine: [
    "machine/base",
    "machine/state",
    "machine/bus",
    "machine/fdt",
    "machine/riscv",
    "machine/devices",
    "machine/boards",
    "machine/smp",
  ],
  engines: [
    "machine",
    "machine/base",
    "machine/state",
    "machine/bus",
    "machine/boards",
    "machine/devices",
    "machine/riscv",
    "machine/fdt",
  ],
  images: [],
  // The shapes of the API are defined once, in api/schemas; the hypervisor persists some of them (vm.json,
  // the operation journal), so it imports them, and they import nothing of tsvm.
  "api/schemas": [],
  hypervisor: ["engines", "images", "api/schemas"],
  api: ["api/schemas"],
  "api/server": ["hypervisor", "api", "api/schemas"],
  // `tsvm run` and `tsvm image` work without a daemon, so the CLI may reach engines and images directly.
  cli: ["api", "api/schemas", "engines", "images"],
  web: ["api", "api/schemas"],
  // The machine in a browser tab (src/web/machine): the page and its worker, which runs the machine itself.
  "web/machine": [
    "machine",
    "machine/base",
    "machine/state",
    "machine/bus",
    "machine/boards",
    "machine/devices",
    "machine/riscv",
    "machine/fdt",
  ],
  bin: ["*"],
};

const NODE_FREE = new Set([
  "machine/base",
  "machine/state",
  "machine/bus",
  "machine/fdt",
  "machine/riscv",
  "machine/devices",
  "machine/boards",
  "machine",
]);

/** Layers that run in a browser: packages (xterm.js) are fine, Node's modules are not. */
const BROWSER = new Set(["web/machine"]);

function layerOf(rel: string): string | undefined {
  for (const [prefix, layer] of LAYERS) if (rel.startsWith(prefix)) return layer;
  return undefined;
}

function* sourceFiles(dir: string): Generator<string> {
  for (const name of readdirSync(dir)) {
    if (name === "node_modules") continue;
    const p = join(dir, name);
    if (statSync(p).isDirectory()) yield* sourceFiles(p);
    else if (p.endsWith(".ts") && !p.endsWith(".test.ts")) yield p;
  }
}

test("every import points down the layer table", () => {
  const problems: string[] = [];
  for (const top of ["src", "bin"]) {
    for (const file of sourceFiles(join(root, top))) {
      const rel = relative(root, file);
      const from = layerOf(rel);
      if (!from) continue;
      const text = readFileSync(file, "utf8");
      for (const m of text.matchAll(
        /(?:import|export)\s[^"']*?from\s+["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g,
      )) {
        const spec = m[1] ?? m[2]!;
        if (spec.startsWith(".")) {
          const target = layerOf(relative(root, resolve(dirname(file), spec)));
          if (!target || target === from) continue;
          const ok = ALLOWED[from]!.includes("*") || ALLOWED[from]!.includes(target);
          if (!ok)
            problems.push(
              `${rel}: imports ${spec} (layer ${target}); ${from} may import only: ${ALLOWED[from]!.join(", ") || "nothing"}`,
            );
        } else if (BROWSER.has(from) && spec.startsWith("node:")) {
          problems.push(`${rel}: imports ${spec}; ${from} runs in a browser, which has no node:* modules`);
        } else if (NODE_FREE.has(from)) {
          problems.push(
            `${rel}: imports ${spec}; the machine layer must run in a browser and imports no packages or node:*`,
          );
        }
      }
    }
  }
  assert.deepEqual(problems, []);
});
