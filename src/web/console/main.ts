// The web console's entry: shows the VM list at / and a VM's page at /vm/NAME (the server answers both
// paths with the same page), and the host's figures in the header.

import { formatMiB } from "../../api/sizes.ts";
import { api } from "./console-api.ts";
import { notice } from "./notice.ts";
import { showVmListPage } from "./vm-list-page.ts";
import { showVmPage } from "./vm-page.ts";

async function start(): Promise<void> {
  const main = document.getElementById("main")!;
  const vm = /^\/vm\/([^/]+)$/.exec(location.pathname);
  try {
    const host = await api.host();
    document.getElementById("host")!.textContent =
      `${host.vcpusUsed}/${host.vcpus} vCPUs, ${formatMiB(host.memoryUsedMiB)}/${formatMiB(host.memoryMiB)} in use`;
    if (vm) await showVmPage(main, decodeURIComponent(vm[1]!));
    else await showVmListPage(main);
  } catch (e) {
    notice((e as Error).message, "error");
  }
}

void start();
