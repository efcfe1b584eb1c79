// The start-up bundle (scripts/bundle.ts, scripts/launch.ts, bin/tsvm) on a copy of the repository: the
// stamp follows the sources, a change rebuilds, stack traces point into the .ts files, concurrent first
// runs agree, and a bundle that cannot be built falls back to tsx with one line on stderr.
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  utimesSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, test } from "node:test";
import { fileURLToPath } from "node:url";
import { bundledEntry, bundleStamp, ensureBundle, fnv1a64 } from "../../scripts/bundle.ts";

const repo = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
let copy: string;

/** A copy of what the bundle is built from, with the real node_modules linked in. */
function copyRepo(): string {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-bundle-"));
  for (const p of [
    "bin",
    "src",
    "bench",
    "scripts",
    "package.json",
    "package-lock.json",
    "tsconfig.json",
    "tsconfig.base.json",
  ])
    cpSync(join(repo, p), join(dir, p), { recursive: true, preserveTimestamps: true });
  symlinkSync(join(repo, "node_modules"), join(dir, "node_modules"));
  // Older than any install stamp: bin/tsvm in the copy must never run npm ci, which would replace the
  // shared node_modules through the link.
  utimesSync(join(dir, "package-lock.json"), 0, 0);
  return dir;
}

function run(
  file: string,
  args: string[],
  env: NodeJS.ProcessEnv = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((done) => {
    execFile(file, args, { env: { ...process.env, ...env }, timeout: 120_000 }, (e, stdout, stderr) =>
      done({ code: e ? ((e as { code?: number }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

/** Appends a line to a source file, which changes its size and mtime. */
function edit(root: string, rel: string, line: string): void {
  writeFileSync(join(root, rel), `${readFileSync(join(root, rel), "utf8")}${line}\n`);
}

before(() => {
  copy = copyRepo();
});
after(() => rmSync(copy, { recursive: true, force: true }));

test("the stamp's hash is 64-bit FNV-1a (the published test vectors)", () => {
  assert.equal(fnv1a64(""), "cbf29ce484222325");
  assert.equal(fnv1a64("a"), "af63dc4c8601ec8c");
  assert.equal(fnv1a64("foobar"), "85944171f73967e8");
});

test("the stamp changes with a source's size or mtime, not with tests or other files", () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-stamp-"));
  try {
    for (const d of ["bin", "src/a", "bench"]) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(join(dir, "src/a/x.ts"), "export const x = 1;\n");
    writeFileSync(join(dir, "bin/tsvm.ts"), "\n");
    const s0 = bundleStamp(dir);
    assert.match(s0, /^[0-9a-f]{16}$/);
    assert.equal(bundleStamp(dir), s0, "nothing changed");
    writeFileSync(join(dir, "src/a/x.test.ts"), "test\n");
    writeFileSync(join(dir, "src/a/notes.md"), "words\n");
    assert.equal(bundleStamp(dir), s0, "a test or a non-source file is not part of the bundle");
    utimesSync(join(dir, "src/a/x.ts"), new Date(), new Date(Date.now() + 5000));
    const s1 = bundleStamp(dir);
    assert.notEqual(s1, s0, "an mtime changed");
    writeFileSync(join(dir, "bench/peer.ts"), "\n");
    assert.notEqual(bundleStamp(dir), s1, "a new source");
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test("ensureBundle builds once, reuses the bundle, and rebuilds after a source change", async () => {
  const first = await ensureBundle(copy);
  assert.ok(first.ok, !first.ok ? first.problem : "");
  assert.equal(first.built, true);
  assert.ok(existsSync(bundledEntry(first.dir, "src/hypervisor/vmm-main.ts")));
  const again = await ensureBundle(copy);
  assert.deepEqual(again, { ok: true, dir: first.dir, built: false });

  const help = await run(process.execPath, [
    "--enable-source-maps",
    bundledEntry(first.dir, "bin/tsvm.ts"),
    "--help",
  ]);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^tsvm — a hypervisor written in TypeScript/);

  // A change shows in the next bundle, and its stack trace names the .ts file and line.
  edit(copy, "bin/tsvm.ts", 'if (process.argv[2] === "boom") throw new Error("boom from the sources");');
  const changed = await ensureBundle(copy);
  assert.ok(changed.ok);
  assert.notEqual(changed.dir, first.dir);
  assert.equal(changed.built, true);
  const boom = await run(process.execPath, [
    "--enable-source-maps",
    bundledEntry(changed.dir, "bin/tsvm.ts"),
    "boom",
  ]);
  assert.notEqual(boom.code, 0);
  assert.match(boom.stderr, /boom from the sources/);
  assert.match(boom.stderr, /bin\/tsvm\.ts:\d+/, "the source map leads back to the TypeScript file");
});

test("bundled modules find files beside their sources, not beside the bundle", async () => {
  const b = await ensureBundle(copy);
  assert.ok(b.ok);
  const chunks = readdirSync(join(b.dir, "chunks")).filter((f) => f.endsWith(".mjs"));
  const text = chunks.map((f) => readFileSync(join(b.dir, "chunks", f), "utf8")).join("\n");
  assert.doesNotMatch(text, /import\.meta\.url/);
  assert.ok(text.includes(JSON.stringify(`file://${join(copy, "src/images/build.ts")}`)));
});

test("bin/tsvm: concurrent first runs both work and leave one bundle; a failed build falls back to tsx", async () => {
  const fresh = copyRepo();
  try {
    const tsvm = join(fresh, "bin/tsvm");
    const [a, b] = await Promise.all([run(tsvm, ["--help"]), run(tsvm, ["--help"])]);
    for (const r of [a, b]) {
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^tsvm — a hypervisor/);
      assert.equal(r.stderr, "");
    }
    const bundles = readdirSync(join(fresh, "dist/bundle"));
    assert.equal(bundles.length, 1, `one bundle, no leftovers: ${bundles.join(" ")}`);
    assert.equal(bundles[0], bundleStamp(fresh), "named after the sources' stamp");

    // dist/bundle cannot be created: the launcher warns once and runs the TypeScript sources.
    rmSync(join(fresh, "dist/bundle"), { recursive: true });
    writeFileSync(join(fresh, "dist/bundle"), "not a directory\n");
    const fallback = await run(tsvm, ["--help"]);
    assert.equal(fallback.code, 0, fallback.stderr);
    assert.match(fallback.stdout, /^tsvm — a hypervisor/);
    assert.equal(fallback.stderr.trimEnd().split("\n").length, 1, fallback.stderr);
    assert.match(
      fallback.stderr,
      /^tsvm: building the JavaScript bundle failed .*running the TypeScript sources/,
    );

    // TSVM_NO_BUNDLE=1 asks for tsx without trying, and says nothing.
    const forced = await run(tsvm, ["--help"], { TSVM_NO_BUNDLE: "1" });
    assert.equal(forced.code, 0);
    assert.equal(forced.stderr, "");
  } finally {
    rmSync(fresh, { recursive: true, force: true });
  }
});

test("a source that does not compile gives ok: false with the reason, and keeps the log", async () => {
  edit(copy, "src/cli/list.ts", "export const broken = ;");
  const r = await ensureBundle(copy);
  assert.equal(r.ok, false);
  assert.ok(!r.ok);
  assert.match(r.problem, /^building the JavaScript bundle failed \(.*see .*build-failed\.log\)$/);
  assert.doesNotMatch(r.problem, /\n/);
  assert.match(readFileSync(join(copy, "dist/bundle/build-failed.log"), "utf8"), /list\.ts/);
  assert.deepEqual(
    readdirSync(join(copy, "dist/bundle")).filter((n) => n.startsWith(".build-")),
    [],
    "no temporary directory left",
  );
});
