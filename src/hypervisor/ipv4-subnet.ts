// IPv4 addresses and the subnets of private networks: parsing (strict dotted quads), the private ranges of
// RFC 1918 a network's subnet must lie in, overlap, and the host addresses a subnet hands out.

import { HypervisorError } from "./hypervisor-error.ts";

export interface Ipv4Subnet {
  /** The network address as an unsigned 32-bit number. */
  readonly base: number;
  readonly prefix: number;
}

/** Smallest and largest subnet a network may have: /29 leaves the switch and 5 cards; /16 is plenty. */
export const MIN_PREFIX = 16;
export const MAX_PREFIX = 29;

/** RFC 1918 section 3: the address blocks reserved for private internets. */
const PRIVATE_RANGES: readonly Ipv4Subnet[] = [
  { base: 0x0a000000, prefix: 8 },
  { base: 0xac100000, prefix: 12 },
  { base: 0xc0a80000, prefix: 16 },
];

export class InvalidSubnetError extends HypervisorError {
  constructor(subnet: string, problem: string) {
    super("invalid-subnet", `invalid subnet '${subnet.slice(0, 40)}': ${problem}`);
  }
}

/** "10.1.2.3" → its number; undefined unless four decimal parts 0-255 without leading zeros. */
export function parseIpv4(text: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  let n = 0;
  for (const part of m.slice(1)) {
    if (part.length > 1 && part.startsWith("0")) return undefined;
    const v = Number(part);
    if (v > 255) return undefined;
    n = n * 256 + v;
  }
  return n;
}

export function formatIpv4(n: number): string {
  return `${n >>> 24}.${(n >>> 16) & 255}.${(n >>> 8) & 255}.${n & 255}`;
}

export function formatSubnet(s: Ipv4Subnet): string {
  return `${formatIpv4(s.base)}/${s.prefix}`;
}

function size(prefix: number): number {
  return 2 ** (32 - prefix);
}

function contains(outer: Ipv4Subnet, inner: Ipv4Subnet): boolean {
  return (
    inner.prefix >= outer.prefix && inner.base >= outer.base && inner.base < outer.base + size(outer.prefix)
  );
}

export function overlaps(a: Ipv4Subnet, b: Ipv4Subnet): boolean {
  return a.base < b.base + size(b.prefix) && b.base < a.base + size(a.prefix);
}

/** A network's subnet: "A.B.C.D/N", N from 16 to 29, the network address itself, in a private range. */
export function parseSubnet(text: string): Ipv4Subnet {
  const slash = text.indexOf("/");
  const base = parseIpv4(slash < 0 ? text : text.slice(0, slash));
  const prefixText = slash < 0 ? "" : text.slice(slash + 1);
  if (base === undefined || !/^\d{1,2}$/.test(prefixText))
    throw new InvalidSubnetError(text, "write it as an IPv4 CIDR such as 10.77.0.0/24");
  const prefix = Number(prefixText);
  if (prefix < MIN_PREFIX || prefix > MAX_PREFIX)
    throw new InvalidSubnetError(text, `the prefix length must be from /${MIN_PREFIX} to /${MAX_PREFIX}`);
  if (base % size(prefix) !== 0)
    throw new InvalidSubnetError(
      text,
      `${formatIpv4(base)} is not the first address of a /${prefix} (that is ${formatIpv4(base - (base % size(prefix)))})`,
    );
  const subnet = { base, prefix };
  if (!PRIVATE_RANGES.some((r) => contains(r, subnet)))
    throw new InvalidSubnetError(text, "it must lie in 10.0.0.0/8, 172.16.0.0/12 or 192.168.0.0/16");
  return subnet;
}

/** The switch's own address: the subnet's first host (.1). */
export function gatewayOf(s: Ipv4Subnet): number {
  return s.base + 1;
}

/** The host addresses cards get: .2 up to the last before the broadcast address. */
export function cardAddresses(s: Ipv4Subnet): { first: number; last: number } {
  return { first: s.base + 2, last: s.base + size(s.prefix) - 2 };
}

/** The subnet mask as a number (for DHCP's option 1). */
export function maskOf(s: Ipv4Subnet): number {
  return (0xffffffff << (32 - s.prefix)) >>> 0;
}
