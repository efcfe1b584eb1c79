// The scheduling options `tsvm create` and `tsvm clone` share (--cpu-cap, --cpu-weight,
// --no-automatic-restart, --on-host-maintenance): their definitions for parseCommandLine and their translation into an insert.

import type { InsertInstanceRequest } from "../api/types.ts";

export const SCHEDULING_OPTIONS = {
  "cpu-cap": { type: "string" },
  "cpu-weight": { type: "string" },
  "no-automatic-restart": { type: "boolean" },
  "on-host-maintenance": { type: "string" },
} as const;

type Scheduling = Pick<
  InsertInstanceRequest,
  "cpuCapPercent" | "cpuWeight" | "automaticRestart" | "onHostMaintenance"
>;

/** The request's scheduling fields from the parsed options, or the usage error in the user's words. */
export function schedulingOf(values: {
  "cpu-cap"?: string;
  "cpu-weight"?: string;
  "no-automatic-restart"?: boolean;
  "on-host-maintenance"?: string;
}): Scheduling | string {
  const out: { -readonly [K in keyof Scheduling]: Scheduling[K] } = {};
  if (values["cpu-cap"] !== undefined) {
    const m = /^(\d+)%?$/.exec(values["cpu-cap"]);
    if (!m) return `--cpu-cap must be a percentage like 50% (got '${values["cpu-cap"]}')`;
    out.cpuCapPercent = Number(m[1]);
  }
  if (values["cpu-weight"] !== undefined) {
    if (!/^\d+$/.test(values["cpu-weight"])) return "--cpu-weight must be a whole number";
    out.cpuWeight = Number(values["cpu-weight"]);
  }
  if (values["no-automatic-restart"]) out.automaticRestart = false;
  const maintenance = values["on-host-maintenance"];
  if (maintenance !== undefined) {
    if (maintenance !== "MIGRATE" && maintenance !== "TERMINATE")
      return `--on-host-maintenance must be MIGRATE or TERMINATE (got '${maintenance.slice(0, 40)}')`;
    out.onHostMaintenance = maintenance;
  }
  return out;
}
