// The start-up bundle: tsvm's process entry points bundled into plain JavaScript with esbuild under
// dist/bundle/<stamp>/, so that a command starts without the tsx loader (whose transform worker cost
// about 1.2 s before tsvm's first line ran). Packaging only: the same modules run in the same order with
// the same semantics (esbuild is what tsx transforms with). Used by scripts/launch.ts (bin/tsvm) and by
// bench/run.ts; bundled code finds its own bundle as process.env.TSVM_BUNDLE_DIR (replaced at build time).

import {
  chmodSync,
  type Dirent,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { Plugin } from "esbuild";

/**
 * Every file a tsvm process starts from (node runs it, or imports it by path at run time), relative to
 * the repository. Each becomes <bundle>/<same path>.mjs; the modules they share go to <bundle>/chunks/,
 * so a VMM importing its engine module gets the same module instances as vmm-main.
 */
export const BUNDLE_ENTRY_POINTS = [
  "bin/tsvm.ts",
  "bin/tsvm-daemon.ts",
  "src/hypervisor/vmm-main.ts",
  "src/hypervisor/riscv-guest.ts",
  "src/engines/riscv/hart-worker.ts",
  "src/hypervisor/network-switch-main.ts",
  "bench/tsvm-peer.ts",
] as const;

/** Directories whose sources make up the bundle, and the other files that change what it contains. */
const SOURCE_DIRS = ["bin", "src", "bench"];
const BUILD_INPUTS = ["package-lock.json", "tsconfig.json", "tsconfig.base.json", "scripts/bundle.ts"];
const SOURCE_FILE = /\.(?:ts|mts|js|mjs|json)$/;
/**
 * Older bundles are kept while among the KEEP_BUNDLES newest or younger than KEEP_BUNDLE_MS: a daemon
 * started from one still starts its VMMs from it.
 */
const KEEP_BUNDLES = 8;
const KEEP_BUNDLE_MS = 24 * 3_600_000;

/** The bundled file for a repository-relative entry point: bin/tsvm.ts → <bundleDir>/bin/tsvm.mjs. */
export function bundledEntry(bundleDir: string, entryPoint: string): string {
  return join(bundleDir, entryPoint.replace(/\.ts$/, ".mjs"));
}

/** Where the bundles of the repository at `root` live. */
export function bundlesDir(root: string): string {
  return join(root, "dist", "bundle");
}

/**
 * A hash of the repository's path and of the path, size and mtime of every file the bundle is built from
 * (bin/, src/, bench/ without tests; the lock file, tsconfigs and this builder). Only directory listings
 * and stats, no file contents: a few milliseconds, paid by every command.
 */
export function bundleStamp(root: string): string {
  return bundleStampOf(root, SOURCE_DIRS, BUILD_INPUTS, SOURCE_FILE);
}

/** The stamp of the files named `sourceFile` under `sourceDirs` (tests left out) and of `buildInputs`. */
export function bundleStampOf(
  root: string,
  sourceDirs: readonly string[],
  buildInputs: readonly string[],
  sourceFile: RegExp,
): string {
  const lines: string[] = [root];
  const walk = (rel: string): void => {
    let entries: Dirent[];
    try {
      entries = readdirSync(join(root, rel), { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      const path = `${rel}/${e.name}`;
      if (e.isDirectory()) walk(path);
      else if (sourceFile.test(e.name) && !e.name.endsWith(".test.ts")) lines.push(statLine(root, path));
    }
  };
  for (const dir of sourceDirs) walk(dir);
  for (const file of buildInputs) lines.push(statLine(root, file));
  lines.sort();
  return fnv1a64(lines.join("\n"));
}

/**
 * 64-bit FNV-1a of a string's UTF-16 code units, as 16 hex digits, in two 32-bit halves. Not node:crypto:
 * loading that module cost each command about 10 ms, and the stamp only has to tell builds apart.
 */
export function fnv1a64(text: string): string {
  // The 64-bit offset basis 0xcbf29ce484222325 and prime 0x100000001b3, with the product split into halves.
  let hi = 0xcbf29ce4;
  let lo = 0x84222325;
  for (let i = 0; i < text.length; i++) {
    lo = (lo ^ text.charCodeAt(i)) >>> 0;
    // (hi:lo) * 0x100000001b3 = (hi:lo) * 0x1b3 + (lo << 40), modulo 2^64
    const loMul = lo * 0x1b3;
    const carry = Math.floor(loMul / 0x1_0000_0000);
    hi = (Math.imul(hi, 0x1b3) + carry + (lo << 8)) >>> 0;
    lo = loMul >>> 0;
  }
  return hi.toString(16).padStart(8, "0") + lo.toString(16).padStart(8, "0");
}

function statLine(root: string, path: string): string {
  try {
    const s = statSync(join(root, path));
    return `${path} ${s.size} ${s.mtimeMs}`;
  } catch {
    return `${path} missing`;
  }
}

/**
 * Replaces `import.meta.url` in each source with that source's own file URL: modules find files beside
 * them (src/images/build.ts its builder scripts, bin/tsvm-daemon.ts the repository root), and in a bundle
 * import.meta.url would name the bundle's file instead.
 */
const sourceUrls: Plugin = {
  name: "tsvm-source-urls",
  setup(b) {
    b.onLoad({ filter: /\.ts$/ }, (args) => {
      const text = readFileSync(args.path, "utf8");
      const url = JSON.stringify(pathToFileURL(args.path).href);
      return { contents: text.replace(/\bimport\.meta\.url\b/g, url), loader: "ts" };
    });
  },
};

/**
 * Writes the bundle of BUNDLE_ENTRY_POINTS under `outDir`; `finalDir` is where it will be renamed to (it
 * must sit beside `outDir`: the source maps name the .ts files relative to themselves).
 */
export async function buildBundle(root: string, outDir: string, finalDir: string): Promise<void> {
  // Loaded only to build: a command that finds its bundle up to date does not pay for esbuild's module.
  const { build } = await import("esbuild");
  await build({
    absWorkingDir: root,
    entryPoints: BUNDLE_ENTRY_POINTS.map((e) => join(root, e)),
    outdir: outDir,
    outbase: root,
    outExtension: { ".js": ".mjs" },
    chunkNames: "chunks/[name]-[hash]",
    bundle: true,
    splitting: true,
    format: "esm",
    platform: "node",
    target: "node20",
    // Packages (tsx, and any added later) load from node_modules as before.
    packages: "external",
    // Stack traces under --enable-source-maps point into the .ts files.
    sourcemap: "linked",
    sourcesContent: false,
    define: { "process.env.TSVM_BUNDLE_DIR": JSON.stringify(finalDir) },
    plugins: [sourceUrls],
    logLevel: "silent",
  });
}

export type EnsureBundleResult = { ok: true; dir: string; built: boolean } | { ok: false; problem: string };

/**
 * The directory of a bundle up to date with the sources at `root`, building it first when there is none.
 * A bundle directory appears only whole (built in a temporary directory beside it, then renamed), so
 * concurrent first runs never see half of one; when two build at once, the first rename wins and the
 * other's copy is dropped. Never throws: a failure is returned as the text a user reads, and the build's
 * messages are kept in dist/bundle/build-failed.log.
 */
export async function ensureBundle(root: string): Promise<EnsureBundleResult> {
  const bundles = bundlesDir(root);
  const stamp = bundleStamp(root);
  const dir = join(bundles, stamp);
  const complete = (): boolean => BUNDLE_ENTRY_POINTS.every((e) => existsSync(bundledEntry(dir, e)));
  if (complete()) return { ok: true, dir, built: false };
  let tmp: string | undefined;
  try {
    mkdirSync(bundles, { recursive: true });
    tmp = mkdtempSync(join(bundles, ".build-"));
    // mkdtemp makes it private; the bundle is as readable as the sources it is built from.
    chmodSync(tmp, 0o755);
    await buildBundle(root, tmp, dir);
    // A source saved during the build may or may not be in it: such a bundle is installed under neither name.
    if (bundleStamp(root) !== stamp) throw new Error("the sources changed while it was being built");
    if (installBuild(tmp, dir)) tmp = undefined;
    if (!complete()) throw new Error(`${dir} is incomplete`);
    prune(bundles, dir);
    return { ok: true, dir, built: true };
  } catch (e) {
    const text = e instanceof Error ? (e.stack ?? e.message) : String(e);
    const log = join(bundles, "build-failed.log");
    try {
      writeFileSync(log, `${new Date().toISOString()} ${text}\n`);
    } catch {
      // The log is a courtesy; the one-line problem below is what the user sees.
    }
    const firstLine = (e instanceof Error ? e.message : String(e)).split("\n")[0];
    return { ok: false, problem: `building the JavaScript bundle failed (${firstLine}; see ${log})` };
  } finally {
    if (tmp !== undefined) rmSync(tmp, { recursive: true, force: true });
  }
}

/**
 * Renames the build in `tmp` to `dir`; false when a concurrent build got there first (rename(2) refuses
 * to replace a non-empty directory), `tmp` then being the caller's to remove.
 */
export function installBuild(tmp: string, dir: string): boolean {
  try {
    renameSync(tmp, dir);
    return true;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code !== "ENOTEMPTY" && code !== "EEXIST") throw e;
    return false;
  }
}

/** Drops old bundles (see KEEP_BUNDLES), and temporary directories a killed build left behind. */
function prune(bundles: string, current: string): void {
  const now = Date.now();
  const dirs: Array<{ path: string; mtime: number }> = [];
  for (const e of readdirSync(bundles, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const path = join(bundles, e.name);
    const mtime = statSync(path).mtimeMs;
    if (e.name.startsWith(".build-")) {
      if (now - mtime > 3_600_000) rmSync(path, { recursive: true, force: true });
    } else if (path !== current) dirs.push({ path, mtime });
  }
  dirs.sort((a, b) => b.mtime - a.mtime);
  for (const old of dirs.slice(KEEP_BUNDLES - 1))
    if (now - old.mtime > KEEP_BUNDLE_MS) rmSync(old.path, { recursive: true, force: true });
}
