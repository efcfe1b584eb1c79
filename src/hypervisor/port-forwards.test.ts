import assert from "node:assert/strict";
import { createSocket } from "node:dgram";
import { createServer } from "node:net";
import { test } from "node:test";
import { formatPortForward, parsePortForward } from "../api/schemas/port-forward-text.ts";
import { HypervisorError } from "./hypervisor-error.ts";
import {
  checkForwardsUnshared,
  checkHostPortsFree,
  forwardsClash,
  forwardsForRequest,
  type PortForward,
} from "./port-forwards.ts";

const refusedWith = (code: string, text: RegExp) => (e: unknown) =>
  e instanceof HypervisorError && e.code === code && text.test(e.message);

test("forwardsForRequest: 127.0.0.1 by default, addresses kept, order kept", () => {
  assert.deepEqual(
    forwardsForRequest(
      [
        { protocol: "tcp", hostPort: 8080, guestPort: 80 },
        { protocol: "udp", hostPort: 5353, guestPort: 53 },
        { protocol: "tcp", hostAddress: "0.0.0.0", hostPort: 8443, guestPort: 443 },
        { protocol: "tcp", hostAddress: "::1", hostPort: 8080, guestPort: 80 },
      ],
      true,
    ),
    [
      { protocol: "tcp", hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80 },
      { protocol: "udp", hostAddress: "127.0.0.1", hostPort: 5353, guestPort: 53 },
      { protocol: "tcp", hostAddress: "0.0.0.0", hostPort: 8443, guestPort: 443 },
      { protocol: "tcp", hostAddress: "::1", hostPort: 8080, guestPort: 80 },
    ],
  );
  assert.deepEqual(forwardsForRequest(undefined, false), []);
  assert.deepEqual(forwardsForRequest([], false), []);
});

test("forwardsForRequest: each bad forward refused with one line naming it", () => {
  const bad: Array<[Parameters<typeof forwardsForRequest>[0], RegExp]> = [
    [[{ protocol: "tcp", hostPort: 80, guestPort: 80 }], /host port 80 is privileged \(below 1024\)/],
    [[{ protocol: "tcp", hostPort: 1023, guestPort: 80 }], /1023 is privileged/],
    [[{ protocol: "tcp", hostPort: 70000, guestPort: 80 }], /70000 is not a port/],
    [[{ protocol: "tcp", hostPort: 8080, guestPort: 0 }], /guest port 0 is not a port/],
    [[{ protocol: "sctp" as "tcp", hostPort: 8080, guestPort: 80 }], /tcp or udp/],
    [
      [{ protocol: "tcp", hostAddress: "localhost", hostPort: 8080, guestPort: 80 }],
      /'localhost' is not an IP/,
    ],
    [[{ protocol: "tcp", hostAddress: "10.0.0.300", hostPort: 8080, guestPort: 80 }], /not an IP/],
    [
      [
        { protocol: "tcp", hostPort: 8080, guestPort: 80 },
        { protocol: "tcp", hostPort: 8080, guestPort: 81 },
      ],
      /tcp:127\.0\.0\.1:8080:80 and tcp:127\.0\.0\.1:8080:81 both want host port 8080\/tcp/,
    ],
    [
      [
        { protocol: "tcp", hostAddress: "0.0.0.0", hostPort: 8080, guestPort: 80 },
        { protocol: "tcp", hostPort: 8080, guestPort: 81 },
      ],
      /both want host port 8080/,
    ],
  ];
  for (const [req, text] of bad)
    assert.throws(() => forwardsForRequest(req, true), refusedWith("invalid-forward", text), String(text));
  assert.throws(
    () => forwardsForRequest([{ protocol: "tcp", hostPort: 8080, guestPort: 80 }], false),
    refusedWith("invalid-forward", /NAT card/),
  );
  // The same port on two protocols, or on two distinct addresses, are two host sockets.
  assert.equal(
    forwardsForRequest(
      [
        { protocol: "tcp", hostPort: 8080, guestPort: 80 },
        { protocol: "udp", hostPort: 8080, guestPort: 80 },
        { protocol: "tcp", hostAddress: "127.0.0.2", hostPort: 8080, guestPort: 80 },
      ],
      true,
    ).length,
    3,
  );
});

test("forwardsClash: same protocol and port on overlapping addresses", () => {
  const f = (protocol: "tcp" | "udp", hostAddress: string, hostPort = 8080): PortForward => ({
    protocol,
    hostAddress,
    hostPort,
    guestPort: 80,
  });
  assert.ok(forwardsClash(f("tcp", "127.0.0.1"), f("tcp", "127.0.0.1")));
  assert.ok(forwardsClash(f("tcp", "0.0.0.0"), f("tcp", "127.0.0.1")));
  assert.ok(forwardsClash(f("tcp", "::"), f("tcp", "127.0.0.1")));
  assert.ok(!forwardsClash(f("tcp", "127.0.0.1"), f("udp", "127.0.0.1")));
  assert.ok(!forwardsClash(f("tcp", "127.0.0.1"), f("tcp", "127.0.0.1", 8081)));
  assert.ok(!forwardsClash(f("tcp", "127.0.0.1"), f("tcp", "127.0.0.2")));
  assert.ok(!forwardsClash(f("tcp", "0.0.0.0"), f("tcp", "::1")));
});

test("checkForwardsUnshared: another VM's forward of the same host socket is refused, naming that VM", () => {
  const web = {
    name: "web",
    forwards: [{ protocol: "tcp" as const, hostAddress: "127.0.0.1", hostPort: 8080, guestPort: 80 }],
  };
  const mine = forwardsForRequest([{ protocol: "tcp", hostPort: 8080, guestPort: 8000 }], true);
  assert.throws(
    () => checkForwardsUnshared("db", mine, [web, { name: "old" }]),
    refusedWith("port-in-use", /8080\/tcp .* is already forwarded to VM 'web'/),
  );
  // Its own forwards (an update) and a record without forwards are no conflict.
  checkForwardsUnshared("web", mine, [web]);
  checkForwardsUnshared(
    "db",
    forwardsForRequest([{ protocol: "udp", hostPort: 8080, guestPort: 80 }], true),
    [web],
  );
});

test("checkHostPortsFree: a TCP or UDP port a process holds is refused; a free one passes", async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, resolve));
  const tcpPort = (server.address() as { port: number }).port;
  const udp = createSocket("udp4");
  await new Promise<void>((resolve) => udp.bind({ address: "127.0.0.1", port: 0 }, resolve));
  const udpPort = udp.address().port;
  try {
    await assert.rejects(
      checkHostPortsFree("web", [
        { protocol: "tcp", hostAddress: "127.0.0.1", hostPort: tcpPort, guestPort: 80 },
      ]),
      refusedWith(
        "port-in-use",
        new RegExp(`host port ${tcpPort}/tcp .*VM 'web': another process on the host holds it`),
      ),
    );
    await assert.rejects(
      checkHostPortsFree("web", [
        { protocol: "udp", hostAddress: "127.0.0.1", hostPort: udpPort, guestPort: 53 },
      ]),
      refusedWith("port-in-use", /another process on the host holds it/),
    );
    // 0.0.0.0 overlaps the held 127.0.0.1 socket.
    await assert.rejects(
      checkHostPortsFree("web", [
        { protocol: "tcp", hostAddress: "0.0.0.0", hostPort: tcpPort, guestPort: 80 },
      ]),
      refusedWith("port-in-use", /holds it/),
    );
    // An address this host does not have.
    await assert.rejects(
      checkHostPortsFree("web", [
        { protocol: "tcp", hostAddress: "192.0.2.77", hostPort: 18080, guestPort: 80 },
      ]),
      refusedWith("port-in-use", /192\.0\.2\.77 is not an address of this host/),
    );
  } finally {
    server.close();
    udp.close();
  }
  // Let go of: free again, and the check itself holds nothing afterwards (checked twice).
  const free = [{ protocol: "tcp" as const, hostAddress: "127.0.0.1", hostPort: tcpPort, guestPort: 80 }];
  await checkHostPortsFree("web", free);
  await checkHostPortsFree("web", free);
});

test("parsePortForward / formatPortForward: the CLI's PROTO:[ADDR:]HOSTPORT:GUESTPORT", () => {
  assert.deepEqual(parsePortForward("tcp:8080:80"), { protocol: "tcp", hostPort: 8080, guestPort: 80 });
  assert.deepEqual(parsePortForward("udp:5353:53"), { protocol: "udp", hostPort: 5353, guestPort: 53 });
  assert.deepEqual(parsePortForward("tcp:0.0.0.0:8080:80"), {
    protocol: "tcp",
    hostAddress: "0.0.0.0",
    hostPort: 8080,
    guestPort: 80,
  });
  assert.deepEqual(parsePortForward("tcp:[::1]:8080:80"), {
    protocol: "tcp",
    hostAddress: "::1",
    hostPort: 8080,
    guestPort: 80,
  });
  for (const bad of ["8080:80", "tcp:8080", "icmp:1:1", "tcp:host:8080:80", "tcp:8080:80:1", ""])
    assert.match(String(parsePortForward(bad)), /is not a forward: write PROTOCOL/);
  assert.equal(
    formatPortForward({ protocol: "udp", hostAddress: "::1", hostPort: 5353, guestPort: 53 }),
    "udp:[::1]:5353:53",
  );
});
