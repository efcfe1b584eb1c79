// The network options of `tsvm create`, `tsvm clone` and `tsvm update`: --forward (repeatable), --network
// (repeatable), --no-nat; their definitions for parseCommandLine and their translation into a request.

import { parsePortForward } from "../api/schemas/port-forward-text.ts";
import type { InsertInstanceRequest, PortForwardRequest } from "../api/types.ts";

export const FORWARD_OPTIONS = {
  forward: { type: "string", multiple: true },
} as const;

export const NETWORK_OPTIONS = {
  ...FORWARD_OPTIONS,
  network: { type: "string", multiple: true },
  "no-nat": { type: "boolean" },
} as const;

/** The forwards of `--forward` options, or the usage error in the user's words. */
export function forwardsOf(texts: readonly string[] | undefined): PortForwardRequest[] | string {
  const out: PortForwardRequest[] = [];
  for (const text of texts ?? []) {
    const forward = parsePortForward(text);
    if (typeof forward === "string") return `--forward: ${forward}`;
    out.push(forward);
  }
  return out;
}

type NetworkFields = Pick<InsertInstanceRequest, "networkInterfaces" | "forwards">;

/**
 * An insert's cards and forwards from the options: the NAT card first (unless --no-nat), then one card per
 * --network in the order given; fields left out when no option asks for a change from the default.
 */
export function networkFieldsOf(values: {
  forward?: string[];
  network?: string[];
  "no-nat"?: boolean;
}): NetworkFields | string {
  const forwards = forwardsOf(values.forward);
  if (typeof forwards === "string") return forwards;
  if (values["no-nat"] && forwards.length > 0)
    return "--forward needs the NAT card, which --no-nat leaves out";
  const networks = values.network ?? [];
  if (networks.includes("nat"))
    return "--network nat: the NAT card is there by default (leave it out with --no-nat)";
  const out: { -readonly [K in keyof NetworkFields]: NetworkFields[K] } = {};
  if (values["no-nat"] || networks.length > 0)
    out.networkInterfaces = [...(values["no-nat"] ? [] : ["nat"]), ...networks].map((network) => ({
      network,
    }));
  if (forwards.length > 0) out.forwards = forwards;
  return out;
}
