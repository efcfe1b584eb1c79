// A guest's identity on the real default image: at boot from the kernel command line (hostname,
// /etc/hostname, /etc/machine-id), and after a restore from memory through the agent, with the kernel's
// CRNG reseeded. One saved state is restored four times: twice on bare engines, which shows that without a
// reseed both restores read the same /dev/urandom bytes and that tsvm-reseed is what changes them, and twice
// through the riscv engine adapter (riscv-guest.ts) with two identities, which must differ in everything.
import assert from "node:assert/strict";
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileBlockBackend } from "../../src/engines/backends/file-block-backend.ts";
import { GUEST_AGENT_PORT_NAME, GuestAgentClient } from "../../src/engines/riscv/guest-agent-client.ts";
import { RiscvEngine } from "../../src/engines/riscv/riscv-engine.ts";
import { buildImage } from "../../src/images/build.ts";
import { copyDiskFor, type ImageInfo } from "../../src/images/image-store.ts";
import { type GuestIdentity, RESEED_PROGRAM } from "../../src/hypervisor/guest-identity.ts";
import { createGuest } from "../../src/hypervisor/riscv-guest.ts";
import { readSnapshot } from "../../src/hypervisor/snapshot-file.ts";
import type { LaunchMode } from "../../src/hypervisor/vmm.ts";
import { VMM_PROTOCOL_VERSION, type VmmGuest, type VmmSpec } from "../../src/hypervisor/vmm-protocol.ts";
import { skipUnless } from "../skip-unless.ts";

/** Boot to the agent's first answer; generous because the guest runs on an interpreter. */
const BOOT_TIMEOUT_MS = Number(process.env.TSVM_BOOT_TIMEOUT_MS ?? 15 * 60_000);
const COMMAND_TIMEOUT_MS = 5 * 60_000;
const MEMORY_MIB = 128;
/** The agent's port: port 0 is the virtio console itself, named ports follow. */
const AGENT_PORT = 1;
/**
 * Linux 6.1 reseeds its CRNG by itself every 60 s once the guest has been up 120 s (more often before):
 * the saved guest is older than that and reseeded just before the save, so no timed reseed falls between
 * a restore and its first read, and the bare restores show what a restore without tsvm's reseed gives.
 */
const SAVED_UPTIME_S = 125;
/** How long after it is armed, in guest time, the reader reads (the save must be done by then). */
const READ_DELAY_S = 20;

let img: ImageInfo | null = null;
let why = "";
try {
  // The image of the current recipe: an older build lacks tsvm-reseed.
  img = await buildImage("default", { onProgress: () => {} });
} catch (e) {
  why = (e as Error).message;
}
const skip = skipUnless(
  img,
  `the default image cannot be built on this machine (run \`tsvm image build\` to see why): ${why}`,
);

const dir = mkdtempSync(join(tmpdir(), "tsvm-guest-identity-"));
const cleanups: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => {});
  rmSync(dir, { recursive: true, force: true });
});

function spec(name: string, mode: LaunchMode, disk: string, identity: GuestIdentity): VmmSpec {
  return {
    protocol: VMM_PROTOCOL_VERSION,
    mode,
    vmId: `test-${name}`,
    name,
    engine: "riscv",
    engineModule: "riscv-guest.ts",
    cpus: 1,
    memoryMiB: MEMORY_MIB,
    image: "default",
    cpuCapPercent: null,
    cpuWeight: 100,
    identity,
    vmDir: dir,
    diskPath: disk,
    stateDir: join(dir, "state"),
    consoleLog: join(dir, `${name}.console.log`),
    socketPath: join(dir, `${name}.sock`),
  };
}

/** Runs `command` in a guest of the adapter, which must succeed; its stdout. */
async function run(guest: VmmGuest, command: string): Promise<string> {
  let out = "";
  let err = "";
  assert.ok(guest.exec, "the riscv adapter runs commands");
  const { exitCode } = await guest.exec(command, {
    onOutput: (b, stream) => {
      if (stream === "stdout") out += Buffer.from(b).toString();
      else err += Buffer.from(b).toString();
    },
    timeoutMs: COMMAND_TIMEOUT_MS,
    agentWaitMs: BOOT_TIMEOUT_MS,
    signal: new AbortController().signal,
  });
  assert.equal(exitCode, 0, `'${command}' failed: ${err}`);
  return out;
}

/** A restore of the saved state on a bare RiscvEngine with an agent client: nothing runs in it unasked. */
async function bareRestore(disk: string) {
  const image = img!;
  const backend = await FileBlockBackend.open(disk);
  const file = (path: string) => ({ name: path, bytes: new Uint8Array(readFileSync(path)) });
  let agent: GuestAgentClient | null = null;
  const engine = new RiscvEngine({
    config: {
      harts: 1,
      memoryBytes: MEMORY_MIB * 1048576,
      firmware: file(image.firmware),
      kernel: file(image.kernel),
      initrd: file(image.initrd),
      bootargs: "console=ttyS0",
    },
    console: { write: () => {} },
    disks: [backend],
    virtioConsole: {
      sink: { write: () => {} },
      ports: [{ name: GUEST_AGENT_PORT_NAME, sink: { write: (b) => agent?.receive(b) } }],
    },
  });
  agent = new GuestAgentClient((bytes) => {
    if (engine.sendVirtioConsole(AGENT_PORT, bytes) !== bytes.length) throw new Error("agent port full");
  });
  const client = agent;
  const stop = async () => {
    client.close("the test ended");
    if (engine.state !== "exited") await engine.stop();
    await backend.close();
  };
  await engine.restoreState(await readSnapshot(join(dir, "state"), { arch: "riscv64" }));
  await engine.start();
  await client.waitForAgent(BOOT_TIMEOUT_MS);
  const sh = async (command: string) => {
    let out = "";
    const { exitCode } = await client.exec(command, {
      timeoutMs: COMMAND_TIMEOUT_MS,
      onOutput: (b, stream) => {
        if (stream === "stdout") out += Buffer.from(b).toString();
      },
    });
    assert.equal(exitCode, 0, `'${command}' failed`);
    return out;
  };
  return { sh, stop };
}

const URANDOM = "head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n'";
const WHO = `hostname; cat /etc/hostname /etc/machine-id; ${URANDOM}`;
const identities: Record<string, GuestIdentity> = {
  alpha: { hostname: "alpha", machineId: "a1".repeat(16) },
  beta: { hostname: "beta", machineId: "b2".repeat(16) },
  gamma: { hostname: "gamma", machineId: "c3".repeat(16) },
};
/** A seed in the form tsvm-reseed takes: 64 bytes of `byte`. */
const seedOf = (byte: string) => byte.repeat(64);

test("identity at boot, and after restores from one saved state: the same urandom without a reseed, different identities and urandom with it", {
  skip,
  timeout: 4 * BOOT_TIMEOUT_MS,
}, async () => {
  // 1. Boot: rcS writes the command line's identity onto the root disk before `hostname -F`.
  const diskA = copyDiskFor(img!, join(dir, "alpha.img"));
  const alpha = await createGuest(spec("alpha", "boot", diskA, identities.alpha!));
  cleanups.push(() => alpha.close());
  await alpha.start("boot");
  const [cmdline, ...booted] = (await run(alpha, `cat /proc/cmdline; ${WHO}`)).trim().split("\n");
  assert.match(cmdline!, / tsvm\.hostname=alpha tsvm\.machine_id=(a1){16}( |$)/);
  assert.deepEqual(booted.slice(0, 3), ["alpha", "alpha", "a1".repeat(16)]);

  // 2. Saved past early boot, right after a reseed (see SAVED_UPTIME_S), with a reader armed: a shell that
  // waits (builtins only) until READ_DELAY_S after the save and then reads 32 bytes of /dev/urandom itself.
  // Nothing else draws from the CRNG before it in a restore (a fork would: an exec's processes draw in an
  // order that depends on timing), so two restores read the same bytes unless something reseeded.
  const armed = await run(
    alpha,
    `while [ "$(cut -d. -f1 /proc/uptime)" -lt ${SAVED_UPTIME_S} ]; do sleep 1; done
echo ${seedOf("5a")} | ${RESEED_PROGRAM}
cat >/tmp/reader <<'READER'
while read up idle </proc/uptime; [ "\${up%.*}" -lt "$1" ]; do :; done
exec 3</dev/urandom
i=0; s=
while [ $i -lt 32 ]; do IFS= read -r -n 1 c <&3; s="$s.$c"; i=$((i+1)); done
printf '%s' "$s" >/tmp/early
READER
read up idle </proc/uptime; t=$((\${up%.*} + ${READ_DELAY_S}))
setsid sh /tmp/reader $t </dev/null >/dev/null 2>&1 &
echo $t`,
  );
  const armedAt = Date.now();
  mkdirSync(join(dir, "state"));
  await alpha.saveState(join(dir, "state"));
  // Guest time runs with the host's clock: the reader must still be waiting when the state was taken.
  assert.ok(Date.now() - armedAt < (READ_DELAY_S - 5) * 1000, `the save took ${Date.now() - armedAt} ms`);
  await alpha.close();
  assert.match(armed.trim(), /^\d+$/);
  const copy = (name: string) => {
    copyFileSync(diskA, join(dir, `${name}.img`));
    return join(dir, `${name}.img`);
  };

  // 3. Bare restores: the reader reads the same bytes in both; tsvm-reseed with different seeds parts them.
  const bare: string[][] = [];
  for (const [name, seed] of [
    ["bare1", "01"],
    ["bare2", "02"],
  ] as const) {
    const guest = await bareRestore(copy(name));
    cleanups.push(guest.stop);
    // No command before the reader has read (see above); its deadline is READ_DELAY_S of guest time away.
    await new Promise((r) => setTimeout(r, (READ_DELAY_S + 10) * 1000));
    const early = await guest.sh("od -An -tx1 /tmp/early | tr -d ' \\n'");
    const reseeded = await guest.sh(`echo ${seedOf(seed)} | ${RESEED_PROGRAM} && ${URANDOM}`);
    bare.push([early, reseeded]);
    await guest.stop();
  }
  assert.match(bare[0]![0]!, /^([0-9a-f]{2})+$/);
  assert.ok(bare[0]![0]!.length >= 64, `the reader kept ${bare[0]![0]!.length / 2} bytes`);
  assert.equal(bare[0]![0], bare[1]![0], "two restores of one state read the same urandom without a reseed");
  assert.notEqual(bare[0]![1], bare[1]![1], "tsvm-reseed with different seeds gives different urandom");

  // 4. Through the adapter, as a VMM restores: each clone gets its identity and fresh randomness.
  const seen: Record<string, string[]> = {};
  for (const name of ["beta", "gamma"]) {
    const guest = await createGuest(spec(name, "restore", copy(name), identities[name]!));
    cleanups.push(() => guest.close());
    await guest.start("restore");
    seen[name] = (await run(guest, WHO)).trim().split("\n");
    await guest.close();
  }
  assert.deepEqual(seen.beta!.slice(0, 3), ["beta", "beta", "b2".repeat(16)]);
  assert.deepEqual(seen.gamma!.slice(0, 3), ["gamma", "gamma", "c3".repeat(16)]);
  assert.match(seen.beta![3]!, /^[0-9a-f]{64}$/);
  assert.notEqual(seen.beta![3], seen.gamma![3], "two restores through the VMM read different urandom");
});
