// The switch process of one private network (started detached by network-switch-process.ts, like a VMM):
// listens on <network dir>/switch.sock (0600) for VMMs speaking QEMU's stream netdev protocol (each frame
// prefixed by its length, 4 bytes big-endian) after a hello line naming their VM and card, admits only the
// cards listed in members.json, and runs NetworkSwitch between them. A connection sending `stats` instead
// of a hello gets the ports' counters as one JSON line. It exits when no card has been connected for a
// while, or on SIGTERM.
//
//   node network-switch-main.ts <network dir> [idle ms] [flood frames/s]

import { readFileSync, statSync, unlinkSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { join } from "node:path";
import { NetworkMembersFile } from "../api/schemas/network-schemas.ts";
import { schemaCheck } from "../api/schemas/schema-check.ts";
import { listenPrivate } from "./control-socket.ts";
import { parseSubnet } from "./ipv4-subnet.ts";
import {
  DEFAULT_SWITCH_CONFIG,
  MAX_FRAME,
  MIN_FRAME,
  NetworkSwitch,
  parseMac,
  type SwitchPort,
} from "./network-switch.ts";

/** Bytes queued for one card past which frames for it are dropped: a stuck VMM never holds the switch. */
const MAX_QUEUED_BYTES = 256 * 1024;
const HELLO_MAX_BYTES = 200;
const HELLO_TIMEOUT_MS = 5_000;
const DEFAULT_IDLE_MS = 60_000;
/** How often members.json is looked at, so that a deleted VM's card is disconnected. */
const MEMBERS_POLL_MS = 2_000;
const HELLO = /^tsvm-switch 1 ([A-Za-z0-9-]{1,64}) ([0-9a-f]{2}(?::[0-9a-f]{2}){5})$/;

const dir = process.argv[2];
if (!dir) {
  process.stderr.write("usage: network-switch-main <network dir> [idle ms]\n");
  process.exit(2);
}
const idleMs = Number(process.argv[3] ?? DEFAULT_IDLE_MS);
const floodRate = Number(process.argv[4] ?? DEFAULT_SWITCH_CONFIG.floodRate);
const membersPath = join(dir, "members.json");
const socketPath = join(dir, "switch.sock");
const checkMembers = schemaCheck(NetworkMembersFile);

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} ${line}\n`);
}

interface Members {
  readonly file: NetworkMembersFile;
  readonly mtimeMs: number;
}

function readMembers(): Members {
  const mtimeMs = statSync(membersPath).mtimeMs;
  const checked = checkMembers(JSON.parse(readFileSync(membersPath, "utf8")));
  if (!checked.ok) throw new Error(`${membersPath}: ${checked.problem.field} ${checked.problem.text}`);
  return { file: checked.value, mtimeMs };
}

let members = readMembers();
const sw = new NetworkSwitch({
  subnet: parseSubnet(members.file.subnet),
  ...DEFAULT_SWITCH_CONFIG,
  floodRate,
  floodBurst: 2 * floodRate,
  now: () => performance.now(),
});
/** Each connected card's socket and the member entry it was admitted as. */
const connections = new Map<SwitchPort, { socket: Socket; vmId: string }>();

function memberOf(vmId: string, mac: string) {
  return members.file.members.find((m) => m.vmId === vmId && m.mac === mac);
}

/** Re-reads members.json when it changed; cards no longer listed are disconnected. */
function refreshMembers(): void {
  let mtimeMs: number;
  try {
    mtimeMs = statSync(membersPath).mtimeMs;
  } catch {
    shutdown("its network was deleted");
    return;
  }
  if (mtimeMs === members.mtimeMs) return;
  try {
    members = readMembers();
  } catch (e) {
    log(`keeping the previous members: ${(e as Error).message}`);
    return;
  }
  for (const [port, c] of connections)
    if (!memberOf(c.vmId, port.stats.mac)) {
      log(`${port.vmName} (${port.stats.mac}) is no longer a member: disconnected`);
      c.socket.destroy();
    }
}

let idleTimer: NodeJS.Timeout | undefined;
function armIdle(): void {
  if (idleTimer) clearTimeout(idleTimer);
  idleTimer = connections.size > 0 ? undefined : setTimeout(() => shutdown("no card connected"), idleMs);
}

function statsLine(): string {
  return `${JSON.stringify(sw.portList().map((p) => p.stats))}\n`;
}

/** After the hello: length-prefixed frames, each handed to the switch; a hostile length closes this one. */
function serveCard(socket: Socket, port: SwitchPort, rest: Buffer): void {
  let pending: Buffer = Buffer.alloc(0);
  const onData = (chunk: Buffer) => {
    pending = pending.length === 0 ? chunk : Buffer.concat([pending, chunk]);
    let at = 0;
    while (pending.length - at >= 4) {
      const length = pending.readUInt32BE(at);
      if (length < MIN_FRAME || length > MAX_FRAME) {
        port.stats.invalidDropped++;
        log(`${port.vmName} (${port.stats.mac}) sent a frame length of ${length}: disconnected`);
        socket.destroy();
        return;
      }
      if (pending.length - at - 4 < length) break;
      sw.receive(port, pending.subarray(at + 4, at + 4 + length));
      at += 4 + length;
    }
    pending = at === pending.length ? Buffer.alloc(0) : pending.subarray(at);
  };
  socket.on("data", onData);
  if (rest.length > 0) onData(rest);
}

function sinkOf(socket: Socket) {
  return (frame: Uint8Array): boolean => {
    if (socket.destroyed || socket.writableLength > MAX_QUEUED_BYTES) return false;
    const header = Buffer.allocUnsafe(4);
    header.writeUInt32BE(frame.length, 0);
    socket.write(header);
    socket.write(frame);
    return true;
  };
}

function accept(socket: Socket): void {
  let hello = Buffer.alloc(0);
  const timer = setTimeout(() => socket.destroy(), HELLO_TIMEOUT_MS);
  socket.on("error", () => {});
  const onHello = (chunk: Buffer) => {
    hello = Buffer.concat([hello, chunk]);
    const nl = hello.indexOf(10);
    if (nl < 0) {
      if (hello.length > HELLO_MAX_BYTES) socket.destroy();
      return;
    }
    clearTimeout(timer);
    socket.off("data", onHello);
    const line = hello.subarray(0, nl).toString("latin1");
    const rest = hello.subarray(nl + 1);
    if (line === "stats") {
      socket.end(statsLine());
      return;
    }
    const m = HELLO.exec(line);
    if (!m) {
      socket.destroy();
      return;
    }
    const [, vmId, mac] = m as unknown as [string, string, string];
    if (!memberOf(vmId, mac)) refreshMembers();
    const member = memberOf(vmId, mac);
    if (!member) {
      log(`refused a card that is not a member: VM ${vmId}, MAC ${mac}`);
      socket.destroy();
      return;
    }
    const { port, replaced } = sw.addPort(member.vmName, parseMac(mac)!, member.ipv4, sinkOf(socket));
    if (replaced) connections.get(replaced)?.socket.destroy();
    connections.set(port, { socket, vmId });
    log(`${member.vmName} (${mac}, ${member.ipv4}) connected`);
    armIdle();
    socket.on("close", () => {
      sw.removePort(port);
      connections.delete(port);
      log(`${member.vmName} (${mac}) disconnected`);
      armIdle();
    });
    serveCard(socket, port, rest);
  };
  socket.on("data", onHello);
}

const server = createServer(accept);
let closing = false;
function shutdown(why: string): void {
  if (closing) return;
  closing = true;
  log(`switch stopping: ${why}`);
  server.close();
  for (const { socket } of connections.values()) socket.destroy();
  try {
    unlinkSync(socketPath);
  } catch {}
  process.exit(0);
}

// A socket left by a switch that died is stale: this one replaces it (network-switch-process.ts starts a
// switch only when nothing answers there).
try {
  unlinkSync(socketPath);
} catch {}
await listenPrivate(server, socketPath);
setInterval(refreshMembers, MEMBERS_POLL_MS).unref();
process.on("SIGTERM", () => shutdown("SIGTERM"));
process.on("SIGINT", () => shutdown("SIGINT"));
armIdle();
log(`switch of ${dir} (pid ${process.pid}) listening; ${members.file.members.length} members`);
process.send?.({ type: "ready" });
process.disconnect?.();
