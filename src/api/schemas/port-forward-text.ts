// A port forward as people write it (the CLI's --forward, describe, error messages):
// PROTOCOL:[HOSTADDRESS:]HOSTPORT:GUESTPORT, e.g. tcp:8080:80, udp:5353:53, tcp:0.0.0.0:8080:80,
// tcp:[::1]:8080:80 (an IPv6 address in brackets).

import type { PortForward, PortForwardRequest } from "./vm-schemas.ts";

/** tcp:127.0.0.1:8080:80 (the address always shown; an IPv6 one in brackets). */
export function formatPortForward(f: PortForward): string {
  const address = f.hostAddress.includes(":") ? `[${f.hostAddress}]` : f.hostAddress;
  return `${f.protocol}:${address}:${f.hostPort}:${f.guestPort}`;
}

const FORWARD_TEXT = /^(tcp|udp):(?:(\[[0-9a-fA-F:.]+\]|\d{1,3}(?:\.\d{1,3}){3}):)?(\d{1,5}):(\d{1,5})$/;

/**
 * The forward `text` names, its ranges left to the hypervisor (which says what is wrong with a port); a
 * string saying what is wrong when `text` is not of the form.
 */
export function parsePortForward(text: string): PortForwardRequest | string {
  const m = FORWARD_TEXT.exec(text);
  if (!m)
    return `'${text.slice(0, 80)}' is not a forward: write PROTOCOL:[HOSTADDRESS:]HOSTPORT:GUESTPORT, e.g. tcp:8080:80, udp:5353:53 or tcp:0.0.0.0:8080:80`;
  const [, protocol, address, hostPort, guestPort] = m;
  return {
    protocol: protocol as "tcp" | "udp",
    ...(address === undefined ? {} : { hostAddress: address.replace(/^\[|\]$/g, "") }),
    hostPort: Number(hostPort),
    guestPort: Number(guestPort),
  };
}
