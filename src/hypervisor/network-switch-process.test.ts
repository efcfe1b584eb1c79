// The switch as a process: started detached, it admits only members' hellos, carries length-prefixed frames
// between cards, closes a connection that sends a hostile length without disturbing the others, answers
// `stats`, and stops on request.
import assert from "node:assert/strict";
import { mkdtemp, rm, stat } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { connectUnix } from "./control-socket.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { switchHello } from "./network-interfaces.ts";
import { askSwitchStats, SwitchProcesses } from "./network-switch-process.ts";
import { Networks } from "./networks.ts";

const SWITCH_ENTRY = {
  entry: join(import.meta.dirname, "network-switch-main.ts"),
  nodeArgs: fixtureLauncherConfig.nodeArgs,
  idleMs: 60_000,
};

/** A card's end of the stream protocol: frames received, and a way to send them. */
function card(path: string, hello: string) {
  const socket = connectUnix(path);
  const frames: Buffer[] = [];
  let pending: Buffer = Buffer.alloc(0);
  let closed = false;
  socket.on("error", () => {});
  socket.on("close", () => {
    closed = true;
  });
  socket.on("data", (chunk: Buffer) => {
    pending = Buffer.concat([pending, chunk]);
    while (pending.length >= 4 && pending.length >= 4 + pending.readUInt32BE(0)) {
      frames.push(pending.subarray(4, 4 + pending.readUInt32BE(0)));
      pending = pending.subarray(4 + pending.readUInt32BE(0));
    }
  });
  socket.write(hello);
  return {
    frames,
    socket,
    closed: () => closed,
    send(frame: Uint8Array) {
      const h = Buffer.alloc(4);
      h.writeUInt32BE(frame.length);
      socket.write(Buffer.concat([h, frame]));
    },
  };
}

function frameTo(dst: string, src: string): Buffer {
  const f = Buffer.alloc(60);
  Buffer.from(dst.split(":").map((h) => Number.parseInt(h, 16))).copy(f, 0);
  Buffer.from(src.split(":").map((h) => Number.parseInt(h, 16))).copy(f, 6);
  f.writeUInt16BE(0x88b5, 12);
  return f;
}

async function until(check: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    if (await check()) return;
    await new Promise((r) => setTimeout(r, 25));
  }
  assert.fail(`timed out waiting for ${what}`);
}

test("the switch process: members only, frames between cards, hostile lengths close one connection", async () => {
  const home = await mkdtemp(join(tmpdir(), "tsvm-switch-"));
  const switches = new SwitchProcesses(SWITCH_ENTRY);
  const networks = await Networks.open(home);
  await networks.create("lab", undefined, new Date());
  const dir = networks.pathOf("lab");
  const vms = [
    {
      id: "vm-a",
      name: "a",
      networkInterfaces: [{ network: "lab", mac: "02:00:00:00:00:0a", ipv4: "10.77.0.2" }],
    },
    {
      id: "vm-b",
      name: "b",
      networkInterfaces: [{ network: "lab", mac: "02:00:00:00:00:0b", ipv4: "10.77.0.3" }],
    },
  ];
  await networks.syncMembers(vms);
  try {
    await switches.ensure(dir);
    const socketPath = networks.socketOf("lab");
    assert.equal((await stat(socketPath)).mode & 0o777, 0o600);
    await switches.ensure(dir); // already running: nothing new starts
    const a = card(socketPath, switchHello("vm-a", "02:00:00:00:00:0a"));
    const b = card(socketPath, switchHello("vm-b", "02:00:00:00:00:0b"));
    const stranger = card(socketPath, switchHello("vm-x", "02:00:00:00:00:0c"));
    await until(() => stranger.closed(), "the stranger to be refused");
    await until(async () => ((await askSwitchStats(socketPath))?.length ?? 0) === 2, "two ports");
    a.send(frameTo("02:00:00:00:00:0b", "02:00:00:00:00:0a"));
    await until(() => b.frames.length === 1, "b to receive a's frame");
    assert.equal(b.frames[0]!.readUInt16BE(12), 0x88b5);
    // A member added later is admitted once it is in the members file.
    await networks.syncMembers([
      ...vms,
      {
        id: "vm-c",
        name: "c",
        networkInterfaces: [{ network: "lab", mac: "02:00:00:00:00:0c", ipv4: "10.77.0.4" }],
      },
    ]);
    const c = card(socketPath, switchHello("vm-c", "02:00:00:00:00:0c"));
    c.send(frameTo("02:00:00:00:00:0a", "02:00:00:00:00:0c"));
    await until(() => a.frames.length === 1, "a to receive c's frame");
    // A length prefix of 1 GiB closes c's connection only: a and b still talk.
    c.socket.write(Buffer.from([0x40, 0, 0, 0]));
    await until(() => c.closed(), "c's connection to close");
    b.send(frameTo("02:00:00:00:00:0a", "02:00:00:00:00:0b"));
    await until(() => a.frames.length === 2, "a to receive b's frame after c's hostile length");
    const stats = (await askSwitchStats(socketPath))!;
    const portB = stats.find((p) => p.vmName === "b")!;
    assert.equal(portB.rxFrames, 1);
    assert.equal(portB.txFrames, 1);
    // A frame cut short (its length said, half its bytes sent, then the connection closed) reaches no one.
    const cut = card(socketPath, switchHello("vm-c", "02:00:00:00:00:0c"));
    await until(async () => ((await askSwitchStats(socketPath))?.length ?? 0) === 3, "c back");
    const whole = frameTo("02:00:00:00:00:0a", "02:00:00:00:00:0c");
    const header = Buffer.alloc(4);
    header.writeUInt32BE(whole.length);
    cut.socket.end(Buffer.concat([header, whole.subarray(0, whole.length >> 1)]));
    await until(() => cut.closed(), "the cut connection to close");
    b.send(frameTo("02:00:00:00:00:0a", "02:00:00:00:00:0b"));
    await until(() => a.frames.length === 3, "a to receive b's next frame");
    assert.equal(a.frames[2]!.subarray(6, 12).toString("hex"), "02000000000b", "b's, not the cut one");
    // Deleting b's card from the members disconnects it.
    await networks.syncMembers([vms[0]!]);
    await until(() => b.closed(), "b to be disconnected once it is no member");
    a.socket.destroy();
    await switches.stop(dir);
    assert.equal(await askSwitchStats(socketPath), undefined);
  } finally {
    await switches.stop(dir);
    await rm(home, { recursive: true, force: true });
  }
});
