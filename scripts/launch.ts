// Starts one of tsvm's entry points from the start-up bundle (scripts/bundle.ts), building the bundle
// first when the sources changed; when it cannot be built, says so in one line on stderr and runs the
// TypeScript entry through tsx in this same process, as before the bundle existed.
//
// bin/tsvm compiles this file to dist/launch.mjs (it must run before any TypeScript can) and runs
//   node --enable-source-maps dist/launch.mjs bin/tsvm.ts ARGS…
// The entry then sees process.argv as if node had run it directly: [node, entry file, ARGS…].

import { dirname, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { BUNDLE_ENTRY_POINTS, bundledEntry, ensureBundle } from "./bundle.ts";

// scripts/launch.ts, or dist/launch.mjs once compiled: the repository is one level up from either.
const root = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const [entry, ...args] = process.argv.slice(2);

if (!entry || !(BUNDLE_ENTRY_POINTS as readonly string[]).includes(entry)) {
  process.stderr.write(`usage: launch ENTRY [ARGS…], ENTRY one of: ${BUNDLE_ENTRY_POINTS.join(", ")}\n`);
  process.exit(2);
}

let target = join(root, entry);
const bundle = process.env.TSVM_NO_BUNDLE ? undefined : await ensureBundle(root);
if (bundle?.ok) {
  target = bundledEntry(bundle.dir, entry);
} else {
  if (bundle)
    process.stderr.write(`tsvm: ${bundle.problem}; running the TypeScript sources (slower start)\n`);
  // Under tsx the code reads the real environment: no bundle, whatever a parent process had.
  delete process.env.TSVM_BUNDLE_DIR;
  await import(pathToFileURL(join(root, "node_modules/tsx/dist/loader.mjs")).href);
}
process.argv.splice(1, process.argv.length - 1, target, ...args);
await import(pathToFileURL(target).href);
