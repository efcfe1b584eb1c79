// VMs on the real emulator: the daemon's hypervisor, real VMM processes hosting RiscvEngine, Debian's
// OpenSBI and tiny S-mode kernels (assembled here) from an image cache in a temp directory.
import assert from "node:assert/strict";
import { existsSync } from "node:fs";
import { copyFile, mkdir, mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { type AddressInfo, createServer } from "node:net";
import { availableParallelism, loadavg, tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { skipUnless } from "../../tests/skip-unless.ts";
import { assembleElf, haveCrossAssembler } from "../engines/riscv/cross-assembler.ts";
import { RiscvEngine } from "../engines/riscv/riscv-engine.ts";
import { closeAndKill } from "./fixtures/close-and-kill.ts";
import { fixtureLauncherConfig } from "./fixtures/fixture-launcher.ts";
import { fixtureVmRecord } from "./fixtures/fixture-vm-record.ts";
import { Hypervisor } from "./hypervisor.ts";
import { ImageCacheCatalog } from "./image-catalog.ts";
import { hostCapacity } from "./resources.ts";
import { VmStore } from "./store.ts";
import { answerSource, receiveMigration, sendOverTcp } from "./migration-stream.ts";
import { createGuest } from "./riscv-guest.ts";
import { readSnapshot } from "./snapshot-file.ts";
import { ProcessVmmLauncher } from "./vmm-process.ts";
import type { VmmHandle } from "./vmm.ts";
import { VMM_PROTOCOL_VERSION, type VmmGuest, type VmmSpec } from "./vmm-protocol.ts";

const OPENSBI = "/usr/lib/riscv64-linux-gnu/opensbi/generic/fw_dynamic.bin";
const missing =
  skipUnless(haveCrossAssembler(), "riscv64-linux-gnu-gcc is not installed") ||
  skipUnless(existsSync(OPENSBI), `${OPENSBI} is missing (Debian package opensbi)`) ||
  undefined;

/** SBI legacy putchar of each character of `text`. */
const print = (text: string) =>
  [...text].map((c) => `  li a7, 1\n  li a0, ${c.charCodeAt(0)}\n  ecall\n`).join("");
const SBI_SHUTDOWN = "  li a7, 0x53525354\n  li a6, 0\n  li a0, 0\n  li a1, 0\n  ecall\n";

const root = await mkdtemp(join(tmpdir(), "tsvm-riscv-vm-"));
after(async () => {
  for (const hv of opened) await closeAndKill(hv);
  await rm(root, { recursive: true, force: true });
});
const opened: Hypervisor[] = [];

/** An image directory as the image builder leaves it (image.json written last). */
async function makeImage(cache: string, name: string, kernelSource: string): Promise<void> {
  const dir = join(cache, `${name}-0000000000000000`);
  await mkdir(dir, { recursive: true });
  await copyFile(OPENSBI, join(dir, "fw_dynamic.bin"));
  await writeFile(
    join(dir, "Image"),
    assembleElf(`.text\n.globl _start\n_start:\n${kernelSource}`, 0x8020_0000),
  );
  await writeFile(join(dir, "initrd.cpio"), "");
  await writeFile(join(dir, "disk.img"), Buffer.alloc(64 * 1024));
  await writeFile(
    join(dir, "image.json"),
    JSON.stringify({
      name,
      kernel: "Image",
      initrd: "initrd.cpio",
      disk: "disk.img",
      firmware: "fw_dynamic.bin",
      builtAt: new Date().toISOString(),
      recipeHash: "0".repeat(64),
      buildSeconds: 0,
      versions: {},
    }),
  );
}

async function until(cond: () => boolean, ms = 90_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error("timed out waiting");
    await new Promise((r) => setTimeout(r, 50));
  }
}

test("riscv VMs: a guest that shuts down via SBI ends TERMINATED with its console logged; a running one is repaired and stopped", {
  skip: missing,
}, async () => {
  const cache = join(root, "images");
  await makeImage(cache, "off", `${print("ok\n")}${SBI_SHUTDOWN}1: j 1b\n`);
  await makeImage(cache, "idle", `${print("up\n")}1: wfi\n  j 1b\n`);
  // The VMM finds images through the same cache setting as the daemon (it inherits the environment).
  process.env.TSVM_CACHE = dirname(cache);
  const store = await VmStore.open(join(root, "home"));
  const hv = await Hypervisor.open({
    store,
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 0, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 1024, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher({
      ...fixtureLauncherConfig,
      engineModules: { riscv: join(dirname(fileURLToPath(import.meta.url)), "riscv-guest.ts") },
    }),
    images: new ImageCacheCatalog({}, cache),
    defaultEngine: "riscv",
    defaultImage: "idle",
    stopTimeoutMs: 500,
  });
  opened.push(hv);

  const off = await hv.waitOperation(
    hv.insert({ name: "off", image: "off", machineType: "t1-micro" }).id,
    120_000,
  );
  assert.equal(off.error, null, off.error?.message);
  await until(() => hv.get("off").status === "TERMINATED");
  assert.deepEqual(
    hv.get("off").history.map((h) => h.to),
    ["PROVISIONING", "STAGING", "RUNNING", "STOPPING", "TERMINATED"],
  );
  assert.match(hv.get("off").history[3]!.reason, /the guest powered off/);
  await until(() => existsSync(store.paths("off").consoleLog));
  assert.match(await readFile(store.paths("off").consoleLog, "utf8"), /OpenSBI[\s\S]*ok\r?\n$/);

  const idle = await hv.waitOperation(hv.insert({ name: "idle", machineType: "t1-micro" }).id, 120_000);
  assert.equal(idle.error, null, idle.error?.message);
  assert.equal(hv.get("idle").status, "RUNNING");
  assert.ok(((await hv.stats("idle")).instret ?? 0) > 0, "the guest has run instructions");
  const pid = hv.get("idle").vmmPid!;
  process.kill(pid, "SIGKILL");
  await until(() => hv.get("idle").status === "RUNNING" && (hv.get("idle").vmmPid ?? pid) !== pid);
  const stop = await hv.waitOperation(hv.stop("idle").id, 60_000);
  assert.equal(stop.error, null);
  assert.equal(hv.get("idle").status, "TERMINATED");
  assert.match(
    hv.get("idle").history.at(-1)!.reason,
    /forced off \(the riscv engine cannot ask its guest to power off\)/,
  );
});

/** CPU seconds (user + system) of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks). */
async function cpuSeconds(pid: number): Promise<number> {
  const stat = await readFile(`/proc/${pid}/stat`, "utf8");
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

test("a CPU-hog guest capped at 50% uses between 40% and 55% of a core", { skip: missing }, async (t) => {
  const cache = join(root, "images");
  await makeImage(cache, "hog", "1: addi t0, t0, 1\n  j 1b\n");
  process.env.TSVM_CACHE = dirname(cache);
  const hv = await Hypervisor.open({
    store: await VmStore.open(join(root, "home-hog")),
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 0, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 1024, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher({
      ...fixtureLauncherConfig,
      engineModules: { riscv: join(dirname(fileURLToPath(import.meta.url)), "riscv-guest.ts") },
    }),
    images: new ImageCacheCatalog({}, cache),
    defaultEngine: "riscv",
    defaultImage: "hog",
    stopTimeoutMs: 200,
  });
  opened.push(hv);
  const op = await hv.waitOperation(
    hv.insert({ name: "hog", machineType: "t1-micro", cpuCapPercent: 50 }).id,
    120_000,
  );
  assert.equal(op.error, null, op.error?.message);
  const pid = hv.get("hog").vmmPid!;
  await new Promise((r) => setTimeout(r, 1000)); // past start-up
  const c0 = await cpuSeconds(pid);
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, 4000));
  const share = (await cpuSeconds(pid)) - c0;
  const percent = (100 * share) / ((performance.now() - t0) / 1000);
  assert.ok(percent <= 55, `the capped VMM used ${percent.toFixed(1)}% of a core, above its 50% cap`);
  // The floor needs a core to spare: on a host already busier than its cores, the VMM gets less than its cap.
  if (loadavg()[0]! < availableParallelism() - 0.5)
    assert.ok(percent >= 40, `the capped VMM used only ${percent.toFixed(1)}% of a core on an idle host`);
  else t.diagnostic(`host busy (load ${loadavg()[0]}): ${percent.toFixed(1)}% of a core; floor not checked`);
  assert.ok(((await hv.stats("hog")).instret ?? 0) > 1_000_000, "the guest was running, not stuck");
});

/** Whether this build's RiscvEngine can save and restore a VM (capabilities.snapshot). */
function engineHasSnapshots(): boolean {
  try {
    const engine = new RiscvEngine({
      config: { harts: 1, memoryBytes: 16 << 20, firmware: null, kernel: null, initrd: null, bootargs: "" },
      console: { write: () => {} },
    });
    return engine.capabilities.snapshot;
  } catch {
    return false;
  }
}

const noSnapshots =
  missing ??
  (skipUnless(engineHasSnapshots(), "the riscv engine has no snapshot capability yet") || undefined);

test("suspend and resume a riscv VM: it continues without rebooting; a corrupt state keeps it SUSPENDED", {
  skip: noSnapshots,
}, async () => {
  const cache = join(root, "images");
  // Prints "<up>", then a dot after every few million instructions, forever.
  await makeImage(
    cache,
    "ticker",
    `${print("<up>")}1:\n  li t1, 2000000\n2: addi t1, t1, -1\n  bnez t1, 2b\n${print(".")}  j 1b\n`,
  );
  process.env.TSVM_CACHE = dirname(cache);
  const store = await VmStore.open(join(root, "home-ticker"));
  const hv = await Hypervisor.open({
    store,
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 0, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 1024, diskAvailableMiB: 1000 },
    ),
    launcher: new ProcessVmmLauncher({
      ...fixtureLauncherConfig,
      engineModules: { riscv: join(dirname(fileURLToPath(import.meta.url)), "riscv-guest.ts") },
    }),
    images: new ImageCacheCatalog({}, cache),
    defaultEngine: "riscv",
    defaultImage: "ticker",
    stopTimeoutMs: 200,
  });
  opened.push(hv);
  const log = () => readFile(store.paths("t").consoleLog, "utf8").catch(() => "");
  // Only the guest's own dots count: OpenSBI's banner has dots of its own ("v1.1", …), and a suspend
  // before "<up>" would then not be a suspend of the ticking guest at all.
  const dots = async () => {
    const text = await log();
    const up = text.indexOf("<up>");
    return up < 0 ? 0 : (text.slice(up).match(/\./g) ?? []).length;
  };
  assert.equal(
    (await hv.waitOperation(hv.insert({ name: "t", machineType: "t1-micro" }).id, 120_000)).error,
    null,
  );
  while ((await dots()) < 2) await new Promise((r) => setTimeout(r, 100));
  const suspended = await hv.waitOperation(hv.suspend("t").id, 120_000);
  assert.equal(suspended.error, null, suspended.error?.message);
  assert.equal(hv.get("t").status, "SUSPENDED");
  const atSuspend = await dots();

  const section = join(store.paths("t").stateDir, "section-0.bin");
  const original = await readFile(section);
  const damaged = Buffer.from(original);
  damaged[0]! ^= 0xff;
  await writeFile(section, damaged);
  const failed = await hv.waitOperation(hv.resume("t").id, 120_000);
  assert.match(failed.error?.message ?? "", /section-0\.bin is corrupt/);
  assert.equal(hv.get("t").status, "SUSPENDED");
  assert.deepEqual(await readFile(section), damaged, "the state file is left as it was");
  await writeFile(section, original);

  const resumed = await hv.waitOperation(hv.resume("t").id, 120_000);
  assert.equal(resumed.error, null, resumed.error?.message);
  while ((await dots()) < atSuspend + 2) await new Promise((r) => setTimeout(r, 100));
  const text = await log();
  assert.equal(text.split("OpenSBI v").length - 1, 1, "resumed, not rebooted: one firmware banner");
  assert.equal(text.split("<up>").length - 1, 1, "the guest's start-up ran once");
});

/** A 64 MiB guest of the "counter" image (makeCounterImage) in `dir`, booted or restored from `stateDir`. */
function counterSpec(dir: string, mode: "boot" | "restore", stateDir: string): VmmSpec {
  return {
    protocol: VMM_PROTOCOL_VERSION,
    mode,
    vmId: "00000000-0000-4000-8000-000000000000",
    name: "saver",
    engine: "riscv",
    engineModule: fileURLToPath(new URL("./riscv-guest.ts", import.meta.url)),
    cpus: 1,
    memoryMiB: 64,
    image: "counter",
    cpuCapPercent: null,
    cpuWeight: 100,
    identity: { hostname: "saver", machineId: "0123456789abcdef0123456789abcdef" },
    vmDir: dir,
    diskPath: join(dir, "disk.img"),
    stateDir,
    consoleLog: join(dir, "console.log"),
    socketPath: join(dir, "vmm.sock"),
  };
}

/** The "counter" image: counts a word in memory for ever. */
async function makeCounterImage(cache: string): Promise<void> {
  await makeImage(
    cache,
    "counter",
    "  la t0, count\n1: ld t1, 0(t0)\n  addi t1, t1, 1\n  sd t1, 0(t0)\n  j 1b\n.data\ncount: .dword 0\n",
  );
  process.env.TSVM_CACHE = dirname(cache);
}

const instret = (g: { stats(): Record<string, number> }) => g.stats().instret ?? 0;

/** Waits until `guest` has retired a million instructions more than `from`. */
async function runsOn(guest: { stats(): Record<string, number> }, from: number): Promise<void> {
  for (let i = 0; i < 1000 && instret(guest) < from + 1_000_000; i++)
    await new Promise((r) => setTimeout(r, 10));
  assert.ok(instret(guest) >= from + 1_000_000, `the guest runs (instret ${from} → ${instret(guest)})`);
}

test("saveState with keepRunning: paused for the copy only, whilePaused runs paused, the state restores exactly", {
  skip: noSnapshots,
}, async () => {
  await makeCounterImage(join(root, "images"));
  const dir = join(root, "vm-save");
  await mkdir(dir);
  await writeFile(join(dir, "disk.img"), Buffer.alloc(64 * 1024));
  const spec = (mode: "boot" | "restore", stateDir: string) => counterSpec(dir, mode, stateDir);
  const guest = await createGuest(spec("boot", join(dir, "unused")));
  try {
    await guest.start("boot");
    await runsOn(guest, 0);

    let duringPause = -1;
    const saved = join(dir, "saved");
    await mkdir(saved);
    const { pausedMs } = await guest.saveState(saved, {
      keepRunning: true,
      whilePaused: async () => {
        duringPause = instret(guest);
        await new Promise((r) => setTimeout(r, 50));
        assert.equal(instret(guest), duringPause, "paused while whilePaused runs");
      },
    });
    assert.ok(duringPause > 0 && pausedMs >= 50, `paused ${pausedMs} ms, across whilePaused`);
    await runsOn(guest, duringPause);

    // A failing whilePaused: nothing saved, the guest runs on.
    const failed = join(dir, "failed");
    await mkdir(failed);
    await assert.rejects(
      guest.saveState(failed, {
        keepRunning: true,
        whilePaused: async () => {
          throw new Error("no room for the overlay");
        },
      }),
      /no room for the overlay/,
    );
    await runsOn(guest, instret(guest));

    // A suspend: RAM first in rounds while the guest runs (it keeps counting in RAM meanwhile), then without
    // keepRunning the guest stays paused until told.
    const stopped = join(dir, "stopped");
    await mkdir(stopped);
    const before = instret(guest);
    const pre = await guest.prewriteRam!(join(dir, "ram.pre"));
    assert.ok(pre && pre.rounds >= 2 && pre.bytes > 0, `rounds ${JSON.stringify(pre)}`);
    assert.ok(instret(guest) > before, "the guest ran during the rounds");
    await guest.saveState(stopped);
    assert.ok(!existsSync(join(dir, "ram.pre")), "the rounds' file became the state's RAM");
    const atStop = instret(guest);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(instret(guest), atStop, "paused after a save without keepRunning");
    // Its RAM is the paused guest's, byte for byte: the same as a state written whole now.
    const whole = join(dir, "whole");
    await mkdir(whole);
    await guest.saveState(whole);
    const ramOf = async (d: string) =>
      ((await readSnapshot(d, { arch: "riscv64" })).data as { ram: Uint8Array }).ram;
    assert.ok(Buffer.from(await ramOf(stopped)).equals(Buffer.from(await ramOf(whole))), "the same RAM");
    await guest.resume();
    await runsOn(guest, atStop);

    /** Restores `stateDir` in a new guest: it has retired exactly `at` instructions, then runs on. */
    const restoresAt = async (stateDir: string, at: number) => {
      const restored = await createGuest(spec("restore", stateDir));
      try {
        await restored.start("restore");
        assert.equal(instret(restored), at);
        await new Promise((r) => setTimeout(r, 200));
        assert.ok(instret(restored) > at, "the restored guest runs");
      } finally {
        await restored.close();
      }
    };
    // The keepRunning state is the guest at the copy, not later: restored, it has retired exactly as many
    // instructions as it had in whilePaused (checked before its first slice runs).
    await restoresAt(saved, duringPause);
    // The suspend's state (written from the live RAM, not a copy) is the guest where it stopped.
    await restoresAt(stopped, atStop);
  } finally {
    await guest.close();
  }
});

test("live migration over a socket: RAM in rounds while the guest runs, then a short pause, and the target runs on from memory; a wrong ticket leaves it running here", {
  skip: noSnapshots,
}, async () => {
  await makeCounterImage(join(root, "images"));
  const dir = join(root, "vm-live");
  await mkdir(dir);
  await writeFile(join(dir, "disk.img"), Buffer.alloc(64 * 1024));
  const ticket = randomBytes(16).toString("hex");
  const hello = { engine: "riscv", memoryBytes: 64 << 20, ticket };
  // The target: takes one stream per connection into a new guest, restored from memory (no state file).
  const targets: Array<{ guest: VmmGuest; atStart: number }> = [];
  const server = createServer(async (socket) => {
    // As a target VMM does: the machine is built on the RAM the stream fills, its start waits for the end.
    const ram = new ArrayBuffer(hello.memoryBytes);
    const state = receiveMigration(socket, hello, ram).then((got) => got.snapshot);
    state.catch(() => {});
    const target = await createGuest(counterSpec(dir, "restore", join(dir, "no-state")), undefined, {
      ram,
      state,
    });
    try {
      await target.start("restore");
    } catch (e) {
      await target.close();
      await answerSource(socket, e as Error);
      return;
    }
    targets.push({ guest: target, atStart: instret(target) });
    await answerSource(socket);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const port = (server.address() as AddressInfo).port;
  const migrate = (g: VmmGuest, withTicket: string) =>
    sendOverTcp({ host: "127.0.0.1", port, ticket: withTicket }, g.migrateOut!);
  const source = await createGuest(counterSpec(dir, "boot", join(dir, "unused")));
  try {
    await source.start("boot");
    await runsOn(source, 0);
    await assert.rejects(migrate(source, "not-the-ticket"), /ticket is wrong/);
    assert.equal(targets.length, 0, "nothing runs on the target");
    await runsOn(source, instret(source));

    const figures = await migrate(source, ticket);
    const atPause = instret(source);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(instret(source), atPause, "the source stays paused");
    assert.equal(targets.length, 1);
    const target = targets[0]!;
    // The target begins exactly where the source paused: the same instructions retired, then it runs on.
    assert.equal(target.atStart, atPause);
    await runsOn(target.guest, atPause);
    assert.ok(figures.rounds >= 2, `rounds while it ran: ${JSON.stringify(figures)}`);
    assert.ok(figures.pausedMs < figures.runningMs + figures.pausedMs, "the pause is part of the whole");
    console.log(`live migration of a 64 MiB guest: ${JSON.stringify(figures)}`);
    await target.guest.close();
  } finally {
    server.close();
    await source.close();
  }
});

test("live migration between VMM processes: the target VMM runs the guest from the stream and the source exits 'migrated'; a wrong ticket or a dead target leaves it running on its source", {
  skip: noSnapshots,
}, async () => {
  await makeCounterImage(join(root, "images"));
  const launcher = new ProcessVmmLauncher({
    ...fixtureLauncherConfig,
    engineModules: { riscv: join(dirname(fileURLToPath(import.meta.url)), "riscv-guest.ts") },
  });
  const vm = fixtureVmRecord("mover", { engine: "riscv", image: "counter", memoryMiB: 64 });
  /** The VM's directory on a host of its own (a data directory each), with its disk. */
  const onHost = async (home: string) => {
    const store = await VmStore.open(join(root, home));
    await store.create(vm);
    const paths = store.paths(vm.name);
    await writeFile(join(paths.dir, "disk.img"), Buffer.alloc(64 * 1024));
    return paths;
  };
  const [from, to] = [await onHost("home-from"), await onHost("home-to")];
  /** A target VMM waiting for the guest; `port` resolves once it listens. */
  const target = (ticket: string) => {
    let listening!: (port: number) => void;
    const port = new Promise<number>((r) => {
      listening = r;
    });
    const launch = launcher.launch(vm, to, "restore", {
      incoming: { ticket, waitMs: 60_000, onListening: listening },
    });
    launch.catch(() => {});
    return { port, launch };
  };
  const source = await launcher.launch(vm, from, "boot");
  const pids = [source.pid];
  try {
    const count = async (h: VmmHandle) => (await h.stats()).instret ?? 0;
    const advances = async (h: VmmHandle) => {
      const c0 = await count(h);
      for (let i = 0; i < 500 && (await count(h)) < c0 + 1_000_000; i++)
        await new Promise((r) => setTimeout(r, 20));
      assert.ok((await count(h)) >= c0 + 1_000_000, "the guest runs");
    };
    await advances(source);

    // A wrong ticket: the target refuses the stream and ends, the guest runs on here.
    const forged = target("the-ticket");
    await assert.rejects(
      source.migrateOut!({ host: "127.0.0.1", port: await forged.port, ticket: "not-the-ticket" }),
      /ticket is wrong|closed the connection/,
    );
    await assert.rejects(forged.launch, /ticket is wrong/);
    await advances(source);

    // A target killed before the stream: the source cannot reach it and runs on.
    const killed = target("the-ticket");
    const killedPort = await killed.port;
    const killedPid = JSON.parse(await readFile(to.vmm, "utf8")).pid as number;
    process.kill(killedPid, "SIGKILL");
    await assert.rejects(killed.launch);
    await assert.rejects(
      source.migrateOut!({ host: "127.0.0.1", port: killedPort, ticket: "the-ticket" }),
      /cannot reach the target VMM|closed the connection/,
    );
    await advances(source);

    // The move itself.
    const ticket = randomBytes(16).toString("hex");
    const good = target(ticket);
    const before = await count(source);
    const figures = await source.migrateOut!({ host: "127.0.0.1", port: await good.port, ticket });
    const moved = await good.launch;
    pids.push(moved.pid);
    assert.equal((await source.exited).reason, "migrated");
    // The same guest carried on (a fresh boot would have retired fewer instructions than the source had).
    assert.ok((await count(moved)) >= before, "the target carries on where the source was");
    assert.ok(figures.rounds >= 2 && figures.bytes > 0, JSON.stringify(figures));
    await advances(moved);
    console.log(`live migration between VMM processes (64 MiB): ${JSON.stringify(figures)}`);
    await moved.stop(5000);
  } finally {
    for (const pid of pids)
      try {
        process.kill(pid, "SIGKILL");
      } catch {}
  }
});
