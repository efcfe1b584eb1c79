// The console's first page: every VM with its status, size, CPU % and uptime, updated live from the
// API's event stream (and its stats every two seconds), with the lifecycle buttons and a create form.

import type { Instance, MachineType } from "../../api/types.ts";
import { formatMiB } from "../../api/sizes.ts";
import { api, followEvents, settle } from "./console-api.ts";
import { el, fill } from "./element.ts";
import { attempt, notice } from "./notice.ts";
import { StatsSampler } from "./stats-sampler.ts";
import { actionButtons, duration } from "./vm-actions.ts";

const COLUMNS = ["Name", "Status", "vCPUs", "Memory", "CPU %", "Uptime", "Actions"] as const;

export async function showVmListPage(main: HTMLElement): Promise<void> {
  document.title = "tsvm: virtual machines";
  const body = el("tbody");
  const table = el(
    "table",
    { class: "vms", "aria-label": "Virtual machines" },
    el("thead", {}, el("tr", {}, ...COLUMNS.map((c) => el("th", { scope: "col" }, c)))),
    body,
  );
  const empty = el("p", { class: "empty", hidden: true }, "No VMs yet: create one below.");
  const unreachable = el("ul", { class: "unreachable" });
  const types = await api.listMachineTypes().catch(() => ({ items: [] as MachineType[] }));
  fill(main, el("h1", {}, "Virtual machines"), table, empty, unreachable, createForm(types.items));

  const sampler = new StatsSampler();
  let vms: Instance[] = [];
  const render = () => {
    const focused = document.activeElement?.closest("tr")?.dataset.vm;
    const focusedAction = (document.activeElement as HTMLElement | null)?.dataset?.action;
    fill(body, ...vms.map((vm) => row(vm, sampler)));
    empty.hidden = vms.length > 0;
    if (focused && focusedAction)
      body
        .querySelector<HTMLElement>(`tr[data-vm="${CSS.escape(focused)}"] [data-action="${focusedAction}"]`)
        ?.focus();
  };
  let refreshing: Promise<void> | null = null;
  let again = false;
  const refresh = async (): Promise<void> => {
    if (refreshing) {
      again = true;
      return refreshing;
    }
    refreshing = (async () => {
      do {
        again = false;
        try {
          const list = await api.listInstances();
          vms = list.items.sort((a, b) => a.name.localeCompare(b.name));
          fill(unreachable, ...list.unreachable.map((u) => el("li", {}, `${u.name}: ${u.message}`)));
          render();
        } catch (e) {
          notice((e as Error).message, "error");
        }
      } while (again);
      refreshing = null;
    })();
    return refreshing;
  };

  const { lastSeq } = await api.events().catch(() => ({ lastSeq: 0 }));
  await refresh();
  const stop = new AbortController();
  void followEvents(
    lastSeq,
    () => void refresh(),
    stop.signal,
    (problem) => {
      if (problem) notice(`live updates stopped: ${problem}`, "error");
    },
  );
  // Figures only change what is shown in the rows' cells: the buttons (and the focus) stay.
  setInterval(async () => {
    await sampler.sample(vms.filter((v) => v.status === "RUNNING").map((v) => v.name));
    for (const vm of vms) {
      const tr = body.querySelector<HTMLTableRowElement>(`tr[data-vm="${CSS.escape(vm.name)}"]`);
      if (!tr) continue;
      tr.querySelector(".cpu")!.textContent = cpuText(vm, sampler);
      tr.querySelector(".uptime")!.textContent = uptimeText(vm);
    }
  }, 2000);
}

function cpuText(vm: Instance, sampler: StatsSampler): string {
  const cpu = vm.status === "RUNNING" ? sampler.latest(vm.name)?.cpuPercent : undefined;
  return cpu === undefined ? "-" : cpu.toFixed(1);
}

function uptimeText(vm: Instance): string {
  if (vm.status !== "RUNNING" || !vm.lastStartTimestamp) return "-";
  return duration(Date.now() - Date.parse(vm.lastStartTimestamp));
}

function row(vm: Instance, sampler: StatsSampler): HTMLTableRowElement {
  const cell = (label: string, content: Node | string, cls?: string) =>
    el("td", { "data-label": label, class: cls }, content);
  return el(
    "tr",
    { "data-vm": vm.name },
    el(
      "th",
      { scope: "row", "data-label": "Name" },
      el("a", { href: `/vm/${encodeURIComponent(vm.name)}` }, vm.name),
    ),
    cell("Status", el("span", { class: `status ${vm.status.toLowerCase()}` }, vm.status), "status-cell"),
    cell("vCPUs", String(vm.cpus)),
    cell("Memory", formatMiB(vm.memoryMiB)),
    cell("CPU %", cpuText(vm, sampler), "cpu"),
    cell("Uptime", uptimeText(vm), "uptime"),
    cell("Actions", actionButtons(vm)),
  );
}

/** Name, then a machine type or vCPUs and memory; the API checks them and its refusal is shown as it is. */
function createForm(types: readonly MachineType[]): HTMLFormElement {
  const name = el("input", {
    id: "new-name",
    name: "name",
    required: true,
    maxlength: "63",
    autocomplete: "off",
  });
  const type = el(
    "select",
    { id: "new-type", name: "machineType" },
    el("option", { value: "" }, "vCPUs and memory below"),
    ...types.map((t) =>
      el("option", { value: t.name }, `${t.name} (${t.cpus} vCPU, ${formatMiB(t.memoryMiB)})`),
    ),
  );
  if (types.length > 0) type.value = types[0]!.name;
  const cpus = el("input", { id: "new-cpus", name: "cpus", type: "number", min: "1", inputmode: "numeric" });
  const memory = el("input", {
    id: "new-memory",
    name: "memoryMiB",
    type: "number",
    min: "1",
    inputmode: "numeric",
  });
  const submit = el("button", { type: "submit" }, "Create");
  const form = el(
    "form",
    { class: "create", "aria-labelledby": "create-title" },
    el("h2", { id: "create-title" }, "Create a VM"),
    el("label", { for: "new-name" }, "Name"),
    name,
    el("label", { for: "new-type" }, "Machine type"),
    type,
    el("label", { for: "new-cpus" }, "vCPUs"),
    cpus,
    el("label", { for: "new-memory" }, "Memory (MiB)"),
    memory,
    submit,
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const custom = type.value === "";
    const request = {
      name: name.value.trim(),
      ...(custom
        ? {
            ...(cpus.value ? { cpus: Number(cpus.value) } : {}),
            ...(memory.value ? { memoryMiB: Number(memory.value) } : {}),
          }
        : { machineType: type.value }),
    };
    submit.disabled = true;
    const ok = await attempt(
      async () => settle(await api.insertInstance(request)),
      `${request.name} created`,
    );
    submit.disabled = false;
    if (ok) name.value = "";
  });
  return form;
}
