// The query of migrations.incoming (a VM moved here by another host of the cluster) as a MoveOffer, and of
// migrations.live as a LiveMoveOffer: every parameter present and well formed, or one line naming what is
// wrong.

import type { LiveMoveOffer, MoveOffer } from "../../hypervisor/cluster/move-transport.ts";
import { checkVmName } from "../../hypervisor/store.ts";
import { HOST_NAME_PATTERN } from "../schemas/host-schemas.ts";
import { ApiFailure } from "./validation.ts";

export function parseMoveOffer(query: URLSearchParams): MoveOffer {
  const offer = parseOffer(query);
  const resume = param(query, "resume");
  if (resume !== "true" && resume !== "false")
    throw new ApiFailure(400, "invalid-argument", "query parameter 'resume' must be true or false");
  const shared = query.get("shared") ?? "false";
  if (shared !== "true" && shared !== "false")
    throw new ApiFailure(400, "invalid-argument", "query parameter 'shared' must be true or false");
  return { ...offer, resume: resume === "true", shared: shared === "true" };
}

/** The query of migrations.live (a RUNNING VM another host moves here live) as a LiveMoveOffer. */
export function parseLiveMoveOffer(query: URLSearchParams): LiveMoveOffer {
  const offer = parseOffer(query);
  const diskBytes = param(query, "diskBytes");
  // qcow2's largest virtual size tsvm makes is 2 TiB (create-qcow2.ts).
  if (!/^\d{1,13}$/.test(diskBytes) || Number(diskBytes) % 512 !== 0 || Number(diskBytes) > 2 ** 41)
    throw new ApiFailure(
      400,
      "invalid-argument",
      "query parameter 'diskBytes' must be a whole number of 512-byte sectors up to 2 TiB",
    );
  return { ...offer, diskBytes: Number(diskBytes) };
}

function param(query: URLSearchParams, key: string): string {
  const value = query.get(key);
  if (value === null) throw new ApiFailure(400, "invalid-argument", `query parameter '${key}' is missing`);
  return value;
}

function parseOffer(query: URLSearchParams): Omit<MoveOffer, "resume" | "shared"> {
  const get = (key: string) => param(query, key);
  const name = get("name");
  checkVmName(name);
  const revision = get("revision");
  if (!/^\d{1,15}$/.test(revision) || Number(revision) < 1)
    throw new ApiFailure(400, "invalid-argument", "query parameter 'revision' must be a whole number from 1");
  const from = get("from");
  if (!HOST_NAME_PATTERN.test(from))
    throw new ApiFailure(400, "invalid-argument", "query parameter 'from' must be a host name");
  return { name, revision: Number(revision), from };
}
