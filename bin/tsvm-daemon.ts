// Composition root of the tsvm daemon process (started by `tsvm daemon`, or by the first CLI command that
// needs it): wires the API server, the hypervisor, and the engines a VMM can host.
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { dataDir } from "../src/api/data-dir.ts";
import { runDaemon } from "../src/api/server/daemon.ts";
import type { ClusterOptions } from "../src/api/server/cluster-join.ts";
import { parseArgs } from "node:util";
import { bundleStamp } from "../scripts/bundle.ts";
import { ensureWebBuild } from "../scripts/build-web.ts";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
/** The start-up bundle this daemon runs from (scripts/bundle.ts defines it in bundled code), or none under tsx. */
const bundleDir = process.env.TSVM_BUNDLE_DIR;
// A VMM's JS heap is bounded (guest RAM is a fixed ArrayBuffer outside it): a runaway VMM dies alone and its
// VM is repaired, instead of growing until the host swaps.
const vmmNodeArgs = ["--enable-source-maps", "--max-old-space-size=512"];
const typeScriptVmm = {
  vmmEntry: join(root, "src/hypervisor/vmm-main.ts"),
  nodeArgs: [...vmmNodeArgs, "--import", `file://${join(root, "node_modules/tsx/dist/loader.mjs")}`],
};
/** Engine adapters: modules exporting createGuest, loaded by the VMM process of each VM. */
const engineModules: Record<string, string> = {
  riscv: bundleDir
    ? join(bundleDir, "src/hypervisor/riscv-guest.mjs")
    : join(root, "src/hypervisor/riscv-guest.ts"),
};

/**
 * The code a VMM started now would run: this daemon's bundle never changes under it; the TypeScript sources
 * may, and a spare VMM that loaded older ones must not run a VM (TSVM_VMM_SPARE=0: no spare at all).
 */
const spareVmm =
  process.env.TSVM_VMM_SPARE === "0"
    ? undefined
    : { codeStamp: bundleDir ? () => bundleDir : () => bundleStamp(root) };

/** `--cluster URL --host NAME --listen ADDR:PORT --token-file FILE` (checked whole by `tsvm daemon`). */
function clusterOptions(): ClusterOptions | undefined {
  const { values } = parseArgs({
    args: process.argv.slice(2),
    options: {
      cluster: { type: "string" },
      host: { type: "string" },
      listen: { type: "string" },
      "token-file": { type: "string" },
      "shared-storage": { type: "string" },
    },
    strict: true,
  });
  if (values.cluster === undefined) return undefined;
  const leaseTtl = Number(process.env.TSVM_LEASE_TTL_SECONDS);
  return {
    url: values.cluster,
    host: values.host ?? "",
    listen: values.listen ?? "",
    tokenFile: values["token-file"] ?? "",
    ...(values["shared-storage"] === undefined ? {} : { sharedStorage: values["shared-storage"] }),
    ...(Number.isInteger(leaseTtl) && leaseTtl > 0 ? { leaseTtlSeconds: leaseTtl } : {}),
  };
}

try {
  await runDaemon({
    cluster: clusterOptions(),
    home: dataDir(),
    ...(bundleDir
      ? { vmmEntry: join(bundleDir, "src/hypervisor/vmm-main.mjs"), nodeArgs: vmmNodeArgs, typeScriptVmm }
      : typeScriptVmm),
    engineModules,
    switchEntry: bundleDir
      ? {
          entry: join(bundleDir, "src/hypervisor/network-switch-main.mjs"),
          nodeArgs: ["--enable-source-maps"],
        }
      : { entry: join(root, "src/hypervisor/network-switch-main.ts"), nodeArgs: typeScriptVmm.nodeArgs },
    spareVmm,
    webAssets: async () => {
      const built = await ensureWebBuild(root);
      if (!built.ok) throw new Error(built.problem);
      return built.dir;
    },
    log: (line) => process.stderr.write(`${new Date().toISOString()} ${line}\n`),
  });
} catch (e) {
  process.stderr.write(`tsvm daemon: ${(e as Error).message}\n`);
  process.exitCode = (e as { code?: string }).code === "already-running" ? 3 : 1;
}
