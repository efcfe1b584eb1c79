// The host's IPv4 default gateway, which passt gives a guest as its router and maps to the host's own
// 127.0.0.1: where a guest reaches a test server listening on the host's loopback.
import { readFileSync } from "node:fs";

/** The gateway of the host's IPv4 default route (/proc/net/route); throws when there is none. */
export function hostGateway(): string {
  for (const line of readFileSync("/proc/net/route", "utf8").split("\n").slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f[1] === "00000000" && f[7] === "00000000") {
      // Little-endian hex, as the kernel prints it.
      const g = Number.parseInt(f[2]!, 16);
      return [g & 255, (g >>> 8) & 255, (g >>> 16) & 255, g >>> 24].join(".");
    }
  }
  throw new Error("this host has no IPv4 default route: passt gives the guest no gateway");
}
