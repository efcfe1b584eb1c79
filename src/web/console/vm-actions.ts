// The lifecycle buttons of one VM (start, stop, reset, suspend, resume, delete), offered by its status,
// shared by the list and the VM's page. Delete asks first.

import type { Instance } from "../../api/types.ts";
import { api, settle } from "./console-api.ts";
import { el } from "./element.ts";
import { attempt } from "./notice.ts";

type Action = "start" | "stop" | "reset" | "suspend" | "resume" | "delete";

const OFFERED: Readonly<Record<string, readonly Action[]>> = {
  TERMINATED: ["start", "delete"],
  RUNNING: ["stop", "reset", "suspend", "delete"],
  SUSPENDED: ["resume", "delete"],
};

const DONE: Readonly<Record<Action, string>> = {
  start: "started",
  stop: "stopped",
  reset: "reset",
  suspend: "suspended",
  resume: "resumed",
  delete: "deleted",
};

/** The buttons for `vm` as it is now; `afterDelete` runs once it is gone. */
export function actionButtons(vm: Instance, afterDelete?: () => void): HTMLElement {
  const box = el("span", { class: "actions" });
  for (const action of OFFERED[vm.status] ?? ["delete"]) {
    const button = el(
      "button",
      { type: "button", "data-action": action, "aria-label": `${action} ${vm.name}` },
      action[0]!.toUpperCase() + action.slice(1),
    );
    button.addEventListener("click", async () => {
      if (action === "delete" && !window.confirm(`Delete the VM ${vm.name} with its disk and snapshots?`))
        return;
      button.disabled = true;
      const ok = await attempt(
        async () =>
          settle(action === "delete" ? await api.deleteInstance(vm.name) : await api.action(vm.name, action)),
        `${vm.name} ${DONE[action]}`,
      );
      button.disabled = false;
      if (ok && action === "delete") afterDelete?.();
    });
    box.append(button);
  }
  return box;
}

/** "3h 12m" of a duration in milliseconds. */
export function duration(ms: number): string {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  if (s < 86400) return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
  return `${Math.floor(s / 86400)}d ${Math.floor((s % 86400) / 3600)}h`;
}
