// One VM's page: its details and lifecycle buttons, a live CPU and MIPS chart, its serial console,
// its snapshots and port forwards, and the history of its transitions; updated from the event stream.

import type { Instance, PortForward, Snapshot } from "../../api/types.ts";
import { formatMiB } from "../../api/sizes.ts";
import { api, followEvents, settle } from "./console-api.ts";
import { el, fill } from "./element.ts";
import { attempt, notice } from "./notice.ts";
import { SerialTerminal } from "./serial-terminal.ts";
import { StatsChart } from "./stats-chart.ts";
import { StatsSampler } from "./stats-sampler.ts";
import { actionButtons } from "./vm-actions.ts";

export async function showVmPage(main: HTMLElement, name: string): Promise<void> {
  document.title = `tsvm: ${name}`;
  const heading = el("h1", {}, name, " ", el("span", { class: "status", id: "vm-status" }));
  const actions = el("div", { class: "vm-actions" });
  const details = el("dl", { class: "details" });
  const chart = new StatsChart();
  const consoleState = el("span", { id: "console-state", "aria-live": "polite" }, "not connected");
  const terminalBox = el("div", { class: "terminal", id: "terminal" });
  const reconnect = el("button", { type: "button", id: "console-connect" }, "Connect");
  const snapshots = el("tbody");
  const forwards = el("tbody");
  const history = el("tbody");
  fill(
    main,
    el("p", {}, el("a", { href: "/" }, "← All VMs")),
    heading,
    actions,
    el(
      "section",
      { "aria-labelledby": "console-title" },
      el("h2", { id: "console-title" }, "Serial console"),
      el("p", {}, consoleState, " ", reconnect),
      terminalBox,
    ),
    el(
      "section",
      { "aria-labelledby": "details-title" },
      el("h2", { id: "details-title" }, "Details"),
      details,
    ),
    el(
      "section",
      { "aria-labelledby": "chart-title" },
      el("h2", { id: "chart-title" }, "CPU and MIPS"),
      chart.element,
    ),
    el(
      "section",
      { "aria-labelledby": "snapshots-title" },
      el("h2", { id: "snapshots-title" }, "Snapshots"),
      table(["Name", "Taken", "Memory", "Current", "Actions"], snapshots, "Snapshots"),
      snapshotForm(name, () => void loadSnapshots()),
    ),
    el(
      "section",
      { "aria-labelledby": "forwards-title" },
      el("h2", { id: "forwards-title" }, "Port forwards"),
      table(["Protocol", "Host", "Guest port", "Actions"], forwards, "Port forwards"),
      forwardForm(
        () => current,
        () => void load(),
      ),
    ),
    el(
      "section",
      { "aria-labelledby": "history-title" },
      el("h2", { id: "history-title" }, "Transition history"),
      table(["When", "From", "To", "Why"], history, "Transition history"),
    ),
  );

  let current: Instance | null = null;
  const terminal = new SerialTerminal(
    terminalBox,
    name,
    (problem) => notice(problem, "error"),
    (state) => {
      consoleState.textContent = state;
    },
  );
  reconnect.addEventListener("click", () => void terminal.connect());

  const loadSnapshots = async () => {
    try {
      const list = await api.listSnapshots(name);
      fill(snapshots, ...list.items.map((s) => snapshotRow(name, s, () => void loadSnapshots())));
    } catch (e) {
      notice((e as Error).message, "error");
    }
  };
  const load = async (): Promise<void> => {
    let vm: Instance;
    try {
      vm = await api.getInstance(name);
    } catch (e) {
      notice((e as Error).message, "error");
      return;
    }
    const was = current?.status;
    current = vm;
    const status = document.getElementById("vm-status")!;
    status.textContent = vm.status;
    status.className = `status ${vm.status.toLowerCase()}`;
    fill(
      actions,
      actionButtons(vm, () => location.assign("/")),
    );
    fill(details, ...detailItems(vm));
    fill(forwards, ...vm.forwards.map((f) => forwardRow(vm, f, () => void load())));
    fill(
      history,
      ...[...vm.history]
        .reverse()
        .map((h) =>
          el(
            "tr",
            {},
            el("td", {}, h.at),
            el("td", {}, h.from ?? "-"),
            el("td", {}, h.to),
            el("td", {}, h.reason),
          ),
        ),
    );
    if (vm.status === "RUNNING" && was !== "RUNNING") await terminal.connect();
  };

  const sampler = new StatsSampler();
  await load();
  await loadSnapshots();
  const { lastSeq } = await api.events(name).catch(() => ({ lastSeq: 0 }));
  void followEvents(
    lastSeq,
    (e) => {
      if (e === null || e.vmName === name) {
        void load();
        void loadSnapshots();
      }
    },
    new AbortController().signal,
    (problem) => {
      if (problem) notice(`live updates stopped: ${problem}`, "error");
    },
  );
  setInterval(async () => {
    if (current?.status !== "RUNNING") return;
    await sampler.sample([name]);
    chart.update(sampler.history(name));
  }, 2000);
}

/** A table that scrolls sideways on its own when wider than a phone, the page does not. */
function table(columns: readonly string[], body: HTMLTableSectionElement, label: string): HTMLElement {
  return el(
    "div",
    { class: "scroll" },
    el(
      "table",
      { "aria-label": label },
      el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", { scope: "col" }, c)))),
      body,
    ),
  );
}

function detailItems(vm: Instance): Node[] {
  const items: Array<[string, string]> = [
    ["Status message", vm.statusMessage || "-"],
    ["Machine type", vm.machineType],
    ["vCPUs", String(vm.cpus)],
    ["Memory", formatMiB(vm.memoryMiB)],
    ["Disk", formatMiB(vm.diskMiB)],
    ["Image", vm.image],
    ["Engine", vm.engine],
    ["Hostname", vm.identity.hostname],
    ["Network", vm.networkInterfaces.map((n) => `${n.network} ${n.mac}`).join(", ") || "none"],
    ["Created", vm.creationTimestamp],
    ["Last started", vm.lastStartTimestamp ?? "-"],
    ["Last stopped", vm.lastStopTimestamp ?? "-"],
    ["Id", vm.id],
  ];
  return items.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]);
}

function snapshotRow(vm: string, s: Snapshot, reload: () => void): HTMLTableRowElement {
  const restore = el("button", { type: "button", "aria-label": `restore snapshot ${s.name}` }, "Restore");
  restore.addEventListener(
    "click",
    () =>
      void attempt(
        async () => settle(await api.restoreSnapshot(vm, s.name)),
        `${vm} restored to ${s.name}`,
      ).then(reload),
  );
  const remove = el("button", { type: "button", "aria-label": `delete snapshot ${s.name}` }, "Delete");
  remove.addEventListener("click", () => {
    if (!window.confirm(`Delete the snapshot ${s.name} of ${vm}?`)) return;
    void attempt(async () => settle(await api.deleteSnapshot(vm, s.name)), `snapshot ${s.name} deleted`).then(
      reload,
    );
  });
  return el(
    "tr",
    {},
    el("td", {}, s.name),
    el("td", {}, s.creationTimestamp),
    el("td", {}, s.memory ? "yes" : "no"),
    el("td", {}, s.current ? "yes" : ""),
    el("td", {}, restore, remove),
  );
}

function snapshotForm(vm: string, reload: () => void): HTMLFormElement {
  const name = el("input", { id: "snapshot-name", required: true, maxlength: "63", autocomplete: "off" });
  const form = el(
    "form",
    { class: "inline" },
    el("label", { for: "snapshot-name" }, "New snapshot"),
    name,
    el("button", { type: "submit" }, "Take snapshot"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    void attempt(
      async () => settle(await api.insertSnapshot(vm, name.value.trim())),
      `snapshot ${name.value} taken`,
    ).then((ok) => {
      if (ok) name.value = "";
      reload();
    });
  });
  return form;
}

function forwardRow(vm: Instance, f: PortForward, reload: () => void): HTMLTableRowElement {
  const remove = el("button", { type: "button", "aria-label": `remove forward ${f.hostPort}` }, "Remove");
  remove.addEventListener("click", () => {
    const rest = vm.forwards.filter((g) => g !== f);
    void attempt(
      async () => settle(await api.updateForwards(vm.name, rest)),
      `forward ${f.hostPort} removed`,
    ).then(reload);
  });
  return el(
    "tr",
    {},
    el("td", {}, f.protocol),
    el("td", {}, `${f.hostAddress}:${f.hostPort}`),
    el("td", {}, String(f.guestPort)),
    el("td", {}, remove),
  );
}

/** Adds a forward (the API allows it while the VM is TERMINATED, and says so otherwise). */
function forwardForm(vm: () => Instance | null, reload: () => void): HTMLFormElement {
  const protocol = el("select", { id: "forward-protocol" }, el("option", {}, "tcp"), el("option", {}, "udp"));
  const hostPort = el("input", {
    id: "forward-host-port",
    type: "number",
    min: "1024",
    max: "65535",
    required: true,
  });
  const guestPort = el("input", {
    id: "forward-guest-port",
    type: "number",
    min: "1",
    max: "65535",
    required: true,
  });
  const form = el(
    "form",
    { class: "inline" },
    el("label", { for: "forward-protocol" }, "Protocol"),
    protocol,
    el("label", { for: "forward-host-port" }, "Host port"),
    hostPort,
    el("label", { for: "forward-guest-port" }, "Guest port"),
    guestPort,
    el("button", { type: "submit" }, "Add forward"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const v = vm();
    if (!v) return;
    const added = {
      protocol: protocol.value as "tcp" | "udp",
      hostPort: Number(hostPort.value),
      guestPort: Number(guestPort.value),
    };
    void attempt(
      async () => settle(await api.updateForwards(v.name, [...v.forwards, added])),
      `forward ${added.hostPort} → ${added.guestPort} added`,
    ).then(reload);
  });
  return form;
}
