import assert from "node:assert/strict";
import { mkdtempSync, rmSync, statSync } from "node:fs";
import { connect } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { PasstMissingError, PasstProcess, passtForwardSpec } from "./passt-process.ts";
import { StreamFrameSocket } from "./stream-frame-socket.ts";

async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** Whether something on the host listens on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, "127.0.0.1");
    s.once("connect", () => {
      s.destroy();
      resolve(true);
    });
    s.once("error", () => resolve(false));
  });
}

test("a missing passt is one line naming the Debian package", async () => {
  const p = new PasstProcess({ socketPath: "/tmp/nowhere/p.sock", executable: "/nonexistent/passt" });
  await assert.rejects(p.start(), (e: Error) => {
    assert.ok(e instanceof PasstMissingError);
    assert.equal((e as PasstMissingError).code, "passt-missing");
    assert.match(e.message, /apt-get install passt/);
    assert.ok(!e.message.includes("\n"));
    return true;
  });
});

test("forward specs are passt's [addr/]hostport:guestport", () => {
  assert.equal(passtForwardSpec({ protocol: "tcp", hostPort: 8080, guestPort: 80 }), "127.0.0.1/8080:80");
  assert.equal(
    passtForwardSpec({ protocol: "udp", hostAddress: "0.0.0.0", hostPort: 5353, guestPort: 53 }),
    "0.0.0.0/5353:53",
  );
});

test("passt starts on its socket with forwards, answers a client, is restarted when killed, and stops", async () => {
  const dir = mkdtempSync(join(tmpdir(), "tsvm-passt-"));
  const socketPath = join(dir, "net", "passt.sock");
  const restarts: string[] = [];
  const hostPort = 20000 + Math.floor(Math.random() * 20000);
  const p = new PasstProcess({
    socketPath,
    forwards: [{ protocol: "tcp", hostPort, guestPort: 80 }],
    onRestart: (reason) => restarts.push(reason),
  });
  let sock: StreamFrameSocket | null = null;
  try {
    await p.start();
    assert.ok(statSync(socketPath).isSocket());
    assert.ok(await listening(hostPort), "the forward listens on 127.0.0.1");
    sock = new StreamFrameSocket(socketPath, { backoffMs: 20 });
    const s = sock;
    await until("connected", () => s.connected);
    // A DHCP DISCOVER from the guest's MAC: passt answers with an OFFER (a frame back to us).
    const got: Uint8Array[] = [];
    s.onFrame = (f) => {
      got.push(new Uint8Array(f));
      return true;
    };
    s.send(dhcpDiscover());
    await until("DHCP offer", () => got.some(isDhcpOffer));
    const firstPid = p.pid!;
    process.kill(firstPid, "SIGKILL");
    await until("restart", () => restarts.length === 1 && p.pid !== undefined && p.pid !== firstPid);
    assert.match(restarts[0]!, /passt killed by SIGKILL/);
    assert.equal(p.restarts, 1);
    // The client notices nothing but a reconnect, and passt answers again.
    await until("reconnected", () => s.connected && s.stats.reconnects >= 1);
    got.length = 0;
    s.send(dhcpDiscover());
    await until("DHCP offer again", () => got.some(isDhcpOffer));
    // The client going away ends passt (--one-off: a dead VMM leaves none behind); it is started again.
    const before = p.pid!;
    await s.close();
    await until("restart after the client left", () => restarts.length === 2 && p.pid !== before);
    assert.match(restarts[1]!, /passt exited with status 0/);
    const pid = p.pid!;
    await p.stop();
    assert.throws(() => process.kill(pid, 0), "passt is gone after stop");
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(restarts.length, 2, "no restart after stop");
  } finally {
    await sock?.close();
    await p.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

const GUEST_MAC = [0x02, 0x00, 0x00, 0x12, 0x34, 0x56];

/** A minimal DHCPDISCOVER from GUEST_MAC, broadcast (RFC 2131). */
function dhcpDiscover(): Uint8Array {
  const bootp = new Uint8Array(240 + 4);
  bootp[0] = 1; // BOOTREQUEST
  bootp[1] = 1; // Ethernet
  bootp[2] = 6;
  bootp.set([0x12, 0x34, 0x56, 0x78], 4); // xid
  bootp.set([0x80, 0], 10); // broadcast flag
  bootp.set(GUEST_MAC, 28);
  bootp.set([99, 130, 83, 99], 236); // magic cookie
  bootp.set([53, 1, 1, 255], 240); // DHCP message type DISCOVER, end
  const udp = new Uint8Array(8 + bootp.length);
  const uv = new DataView(udp.buffer);
  uv.setUint16(0, 68);
  uv.setUint16(2, 67);
  uv.setUint16(4, udp.length);
  udp.set(bootp, 8);
  const ip = new Uint8Array(20 + udp.length);
  const iv = new DataView(ip.buffer);
  ip[0] = 0x45;
  iv.setUint16(2, ip.length);
  ip[8] = 64;
  ip[9] = 17;
  ip.set([255, 255, 255, 255], 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += iv.getUint16(i);
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  iv.setUint16(10, ~sum & 0xffff);
  ip.set(udp, 20);
  const eth = new Uint8Array(14 + ip.length);
  eth.set([255, 255, 255, 255, 255, 255], 0);
  eth.set(GUEST_MAC, 6);
  eth.set([0x08, 0x00], 12);
  eth.set(ip, 14);
  return eth;
}

/** An IPv4/UDP frame from port 67 to port 68 addressed to GUEST_MAC or broadcast. */
function isDhcpOffer(f: Uint8Array): boolean {
  if (f.length < 14 + 20 + 8 + 240 || f[12] !== 0x08 || f[13] !== 0) return false;
  const ihl = (f[14]! & 15) * 4;
  const udp = 14 + ihl;
  return (
    f[14 + 9] === 17 && ((f[udp]! << 8) | f[udp + 1]!) === 67 && ((f[udp + 2]! << 8) | f[udp + 3]!) === 68
  );
}
