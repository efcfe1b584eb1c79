// Port forwards of a VM's NAT card (docs/networking.md): a request's forwards checked and completed
// (protocol, host address literal, host port 1024-65535, no duplicates), refused when another VM forwards
// the same host port, and — at create, update and start — when any process on the host holds it (tried by
// binding it for a moment), so passt is never started on a port it cannot have.

import { createSocket } from "node:dgram";
import { createServer, isIP } from "node:net";
import {
  DEFAULT_FORWARD_HOST_ADDRESS,
  MAX_PORT_FORWARDS,
  MIN_FORWARD_HOST_PORT,
  type PortForward,
  type PortForwardRequest,
} from "../api/schemas/vm-schemas.ts";
import { formatPortForward } from "../api/schemas/port-forward-text.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import type { VmRecord } from "./vm-record.ts";

export type { PortForward, PortForwardRequest } from "../api/schemas/vm-schemas.ts";

/** A forward as a user writes it: tcp:0.0.0.0:8080:80 (`tsvm describe`, error messages). */
export const describeForward = formatPortForward;

/** The wildcard addresses: a forward on one of them listens on every address of its family. */
function isWildcard(address: string): boolean {
  return address === "0.0.0.0" || address === "::";
}

/**
 * Whether two forwards want the same host socket: same protocol and port, and addresses that overlap (equal,
 * or one is a wildcard: Linux refuses 127.0.0.1:8080 while 0.0.0.0:8080 is bound, and IPv6's :: covers IPv4
 * too on a dual-stack host).
 */
export function forwardsClash(a: PortForward, b: PortForward): boolean {
  if (a.protocol !== b.protocol || a.hostPort !== b.hostPort) return false;
  if (a.hostAddress === b.hostAddress) return true;
  const family = (address: string) => (address.includes(":") ? 6 : 4);
  if (a.hostAddress === "::" || b.hostAddress === "::") return true;
  return (
    (isWildcard(a.hostAddress) || isWildcard(b.hostAddress)) &&
    family(a.hostAddress) === family(b.hostAddress)
  );
}

/**
 * The forwards of a request, completed (host address 127.0.0.1 unless given) and checked on their own:
 * each field in range, the address an IP literal, no two wanting the same host socket. `hasNat`: the VM
 * has a NAT card (forwards go through it).
 */
export function forwardsForRequest(
  requested: readonly PortForwardRequest[] | undefined,
  hasNat: boolean,
): PortForward[] {
  const list = requested ?? [];
  if (list.length > 0 && !hasNat)
    throw new HypervisorError(
      "invalid-forward",
      "port forwards go through the VM's NAT card, and this VM has none (it was created with --no-nat or without a 'nat' network)",
    );
  if (list.length > MAX_PORT_FORWARDS)
    throw new HypervisorError("invalid-forward", `a VM has at most ${MAX_PORT_FORWARDS} port forwards`);
  const out: PortForward[] = [];
  for (const r of list) {
    const f: PortForward = {
      protocol: r.protocol,
      hostAddress: (r.hostAddress ?? DEFAULT_FORWARD_HOST_ADDRESS).toLowerCase(),
      hostPort: r.hostPort,
      guestPort: r.guestPort,
    };
    checkForward(f);
    const twin = out.find((o) => forwardsClash(o, f));
    if (twin)
      throw new HypervisorError(
        "invalid-forward",
        `the forwards ${describeForward(twin)} and ${describeForward(f)} both want host port ${f.hostPort}/${f.protocol}`,
      );
    out.push(f);
  }
  return out;
}

function checkForward(f: PortForward): void {
  if (f.protocol !== "tcp" && f.protocol !== "udp")
    throw new HypervisorError(
      "invalid-forward",
      `the forward protocol must be tcp or udp (got '${String(f.protocol).slice(0, 20)}')`,
    );
  if (isIP(f.hostAddress) === 0)
    throw new HypervisorError(
      "invalid-forward",
      `the forward's host address '${f.hostAddress.slice(0, 60)}' is not an IP address (e.g. 127.0.0.1, 0.0.0.0, ::1)`,
    );
  if (!Number.isInteger(f.hostPort) || f.hostPort < 1 || f.hostPort > 65535)
    throw new HypervisorError("invalid-forward", `the host port ${f.hostPort} is not a port (1-65535)`);
  if (f.hostPort < MIN_FORWARD_HOST_PORT)
    throw new HypervisorError(
      "invalid-forward",
      `the host port ${f.hostPort} is privileged (below ${MIN_FORWARD_HOST_PORT}): tsvm forwards without root, so pick a host port from ${MIN_FORWARD_HOST_PORT} to 65535 (e.g. tcp:8080:${f.guestPort})`,
    );
  if (!Number.isInteger(f.guestPort) || f.guestPort < 1 || f.guestPort > 65535)
    throw new HypervisorError("invalid-forward", `the guest port ${f.guestPort} is not a port (1-65535)`);
}

/** Refuses `forwards` of VM `name` when another VM of `others` forwards the same host socket. */
export function checkForwardsUnshared(
  name: string,
  forwards: readonly PortForward[],
  others: Iterable<Pick<VmRecord, "name" | "forwards">>,
): void {
  for (const other of others) {
    if (other.name === name) continue;
    for (const theirs of other.forwards ?? []) {
      const mine = forwards.find((f) => forwardsClash(f, theirs));
      if (mine)
        throw new HypervisorError(
          "port-in-use",
          `host port ${mine.hostPort}/${mine.protocol} (${describeForward(mine)}) is already forwarded to VM '${other.name}' (${describeForward(theirs)})`,
        );
    }
  }
}

/** Resolves when the host socket of `f` can be bound now; the error's code otherwise (EADDRINUSE, …). */
function tryBind(f: PortForward): Promise<string | null> {
  return new Promise((resolve) => {
    if (f.protocol === "tcp") {
      const server = createServer();
      server.once("error", (e: NodeJS.ErrnoException) => resolve(e.code ?? e.message));
      server.listen({ host: f.hostAddress, port: f.hostPort, exclusive: true }, () =>
        server.close(() => resolve(null)),
      );
    } else {
      const socket = createSocket({ type: isIP(f.hostAddress) === 6 ? "udp6" : "udp4" });
      socket.once("error", (e: NodeJS.ErrnoException) => {
        socket.close();
        resolve(e.code ?? e.message);
      });
      socket.bind({ address: f.hostAddress, port: f.hostPort, exclusive: true }, () =>
        socket.close(() => resolve(null)),
      );
    }
  });
}

/**
 * Refuses `forwards` when a process on the host holds one of their host sockets (each is bound for a
 * moment and let go; passt binds them when the VM starts). `vmName` names the VM in the message.
 */
export async function checkHostPortsFree(vmName: string, forwards: readonly PortForward[]): Promise<void> {
  for (const f of forwards) {
    const problem = await tryBind(f);
    if (problem === null) continue;
    const why =
      problem === "EADDRINUSE"
        ? "another process on the host holds it"
        : problem === "EADDRNOTAVAIL"
          ? `${f.hostAddress} is not an address of this host`
          : problem === "EACCES"
            ? "binding it is not permitted"
            : `binding it failed (${problem})`;
    throw new HypervisorError(
      "port-in-use",
      `cannot forward host port ${f.hostPort}/${f.protocol} (${describeForward(f)}) to VM '${vmName}': ${why}`,
    );
  }
}
