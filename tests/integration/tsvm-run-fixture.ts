// `tsvm run` as a user runs it, for the integration tests that boot the default image's Linux through the
// CLI: the image (built when missing, else the tests skip loudly) and a runner with a deadline.
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { buildImage } from "../../src/images/build.ts";
import { findImage, type ImageInfo } from "../../src/images/image-store.ts";
import { skipUnless } from "../skip-unless.ts";

const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
/** One boot to a shell and back; generous because the guest runs on an interpreter. */
export const BOOT_TIMEOUT_MS = Number(process.env.TSVM_BOOT_TIMEOUT_MS ?? 15 * 60_000);

/** The default image, built when missing; null (with the reason) when this machine cannot build it. */
async function defaultImage(): Promise<{ image: ImageInfo | null; why: string }> {
  const found = findImage("default");
  if (found) return { image: found, why: "" };
  try {
    return { image: await buildImage("default", { onProgress: () => {} }), why: "" };
  } catch (e) {
    return { image: null, why: (e as Error).message };
  }
}

const built = await defaultImage();
export const img = built.image;
/** The `skip` option of every test that boots the default image. */
export const skip = skipUnless(
  img,
  `the default image cannot be built on this machine (run \`tsvm image build\` to see why): ${built.why}`,
);

export interface Result {
  status: number | null;
  stdout: string;
  stderr: string;
}

/** Starts `tsvm run ARGS` (through tsx, as the sources stand) with its output piped. */
export function spawnTsvmRun(args: string[]): ChildProcessWithoutNullStreams {
  return spawn(
    process.execPath,
    ["--import", join(root, "node_modules/tsx/dist/loader.mjs"), join(root, "bin/tsvm.ts"), "run", ...args],
    { stdio: ["pipe", "pipe", "pipe"] },
  );
}

/** `tsvm run ARGS`, killed (and failed) after `timeoutMs`. */
export function tsvmRun(args: string[], timeoutMs = BOOT_TIMEOUT_MS): Promise<Result> {
  return new Promise((resolvePromise, reject) => {
    const child = spawnTsvmRun(args);
    child.stdin.end();
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(
        new Error(`tsvm run ${args.join(" ")} did not finish in ${timeoutMs / 1000} s; stderr: ${stderr}`),
      );
    }, timeoutMs);
    child.on("exit", (status) => {
      clearTimeout(timer);
      resolvePromise({ status, stdout, stderr });
    });
  });
}
