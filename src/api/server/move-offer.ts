// The query of migrations.incoming (a VM moved here by another host of the cluster) as a MoveOffer: every
// parameter present and well formed, or one line naming what is wrong.

import type { MoveOffer } from "../../hypervisor/cluster/move-transport.ts";
import { checkVmName } from "../../hypervisor/store.ts";
import { HOST_NAME_PATTERN } from "../schemas/host-schemas.ts";
import { ApiFailure } from "./validation.ts";

export function parseMoveOffer(query: URLSearchParams): MoveOffer {
  const get = (key: string): string => {
    const value = query.get(key);
    if (value === null) throw new ApiFailure(400, "invalid-argument", `query parameter '${key}' is missing`);
    return value;
  };
  const name = get("name");
  checkVmName(name);
  const revision = get("revision");
  if (!/^\d{1,15}$/.test(revision) || Number(revision) < 1)
    throw new ApiFailure(400, "invalid-argument", "query parameter 'revision' must be a whole number from 1");
  const from = get("from");
  if (!HOST_NAME_PATTERN.test(from))
    throw new ApiFailure(400, "invalid-argument", "query parameter 'from' must be a host name");
  const resume = get("resume");
  if (resume !== "true" && resume !== "false")
    throw new ApiFailure(400, "invalid-argument", "query parameter 'resume' must be true or false");
  const shared = query.get("shared") ?? "false";
  if (shared !== "true" && shared !== "false")
    throw new ApiFailure(400, "invalid-argument", "query parameter 'shared' must be true or false");
  return { name, revision: Number(revision), from, resume: resume === "true", shared: shared === "true" };
}
