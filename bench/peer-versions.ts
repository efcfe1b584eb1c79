// The versions a benchmark's report names: tsvm's (package version and short commit) and QEMU's first
// `--version` line. Shared by bench/run.ts and bench/real-programs.ts.
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";

export const QEMU = "qemu-system-riscv64";

/** tsvm's and QEMU's versions; throws one line naming the problem when QEMU does not run. */
export function peerVersions(root: string): { tsvm: string; qemu: string } {
  const pkg = JSON.parse(readFileSync(join(root, "package.json"), "utf8")) as { version: string };
  let commit = "";
  try {
    commit = execFileSync("git", ["-C", root, "rev-parse", "--short", "HEAD"], { encoding: "utf8" }).trim();
  } catch {
    // Not a git checkout.
  }
  let qemu: string;
  try {
    qemu = execFileSync(QEMU, ["--version"], { encoding: "utf8" }).split("\n")[0]!.trim();
  } catch {
    throw new Error(`${QEMU} does not run; install Debian's qemu-system-misc`);
  }
  return { tsvm: commit ? `${pkg.version} (${commit})` : pkg.version, qemu };
}
