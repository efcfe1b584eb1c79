// The compatibility contract of the export format: tests/fixtures/export-v1/counter.tsvm, written once by
// tsvm's format 1.0 (tests/fixtures/export-v1/generate.ts says how), must import and resume exactly on every
// later tsvm. Never regenerate or edit that file, and never change this test's expectations to fit a new
// one: a tsvm that cannot load it must be fixed (or given an upgrade for the old format) instead.
//
// It is a real riscv VM suspended mid-run (the emulator's own saved-state format inside, not a stand-in's),
// booted from an image no host has: a bare-metal program counting in RAM and printing "tick XXXXXXXX".
// Resumed here it must go on from the next count, without booting again.
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { mkdir, mkdtemp, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { fileURLToPath } from "node:url";
import { closeAndKill } from "../fixtures/close-and-kill.ts";
import { fixtureLauncherConfig } from "../fixtures/fixture-launcher.ts";
import { Hypervisor } from "../hypervisor.ts";
import { ImageCacheCatalog } from "../image-catalog.ts";
import { hostCapacity } from "../resources.ts";
import { VmStore } from "../store.ts";
import { ProcessVmmLauncher } from "../vmm-process.ts";

const here = dirname(fileURLToPath(import.meta.url));
const FIXTURE = join(here, "../../../tests/fixtures/export-v1/counter.tsvm");
/** The file as committed; a different digest means someone replaced the contract. */
const FIXTURE_SHA256 = "3e049ce0fcb044f3328060cd5ab74bf2a73ca1528e6f2dedfba613e0c6a4bd74";
/** From tests/fixtures/export-v1/counter.json: the VM's id and the last count it printed before its suspend. */
const FIXTURE_ID = "46635283-6b86-4c36-a543-18603ffe3c56";
const LAST_TICK = 42;

const root = await mkdtemp(join(tmpdir(), "tsvm-export-fixture-"));
let hv: Hypervisor | undefined;
const savedCache = process.env.TSVM_CACHE;
after(async () => {
  if (hv) await closeAndKill(hv);
  process.env.TSVM_CACHE = savedCache;
  await rm(root, { recursive: true, force: true });
});

test("the format 1.0 export in tests/fixtures imports and resumes exactly: the count goes on from where it was", async () => {
  const bytes = await readFile(FIXTURE);
  assert.equal(createHash("sha256").update(bytes).digest("hex"), FIXTURE_SHA256, "the fixture was changed");
  assert.ok(bytes.length < 256 * 1024, `${bytes.length} bytes`);
  // An empty image cache, for the daemon and (inherited) its VMMs: the boot files must come from the file.
  const cache = join(root, "cache/images");
  await mkdir(cache, { recursive: true });
  process.env.TSVM_CACHE = dirname(cache);
  hv = await Hypervisor.open({
    store: await VmStore.open(join(root, "home")),
    capacity: hostCapacity(
      { cpuOvercommit: 2, memoryReserveMiB: 0, diskReserveMiB: 0 },
      { cores: 2, totalMemoryMiB: 1024, diskAvailableMiB: 100 },
    ),
    launcher: new ProcessVmmLauncher({
      ...fixtureLauncherConfig,
      engineModules: { riscv: join(here, "../riscv-guest.ts") },
    }),
    images: new ImageCacheCatalog({}, cache),
    defaultEngine: "riscv",
    defaultImage: "default",
    stopTimeoutMs: 500,
  });

  const op = await hv.importVm(createReadStream(FIXTURE), { name: "old" });
  assert.equal(op.error, null);
  const vm = hv.get("old");
  assert.equal(vm.status, "SUSPENDED");
  assert.equal(vm.id, FIXTURE_ID);
  assert.equal(vm.engine, "riscv");
  assert.equal(vm.memoryMiB, 32);

  const resumed = await hv.waitOperation(hv.resume("old").id, 120_000);
  assert.equal(resumed.error, null, resumed.error?.message);
  let ticks: number[] = [];
  let contents = "";
  const t0 = Date.now();
  while (ticks.length < 5) {
    assert.ok(Date.now() - t0 < 60_000, "the resumed guest printed fewer than 5 ticks in 60 s");
    await new Promise((r) => setTimeout(r, 200));
    contents = (await hv.serialPortOutput("old", 0)).contents;
    ticks = [...contents.matchAll(/tick ([0-9a-f]{8})\n/g)].map((m) => Number.parseInt(m[1]!, 16));
  }
  // Suspended in the middle of printing tick 42 or in the wait after it: the first whole line is 43.
  assert.equal(ticks[0], LAST_TICK + 1, `ticks after the resume: ${ticks.join(", ")}`);
  for (const [i, t] of ticks.entries()) assert.equal(t, LAST_TICK + 1 + i, "consecutive");
  // Nothing else: at most the rest of the line cut by the suspend, and the line being printed now.
  assert.match(
    contents.replace(/tick [0-9a-f]{8}\n/g, ""),
    /^(?:t?i?c?k? ?[0-9a-f]{0,8}\n)?(?:t(?:i(?:c(?:k(?: [0-9a-f]{0,8})?)?)?)?)?$/,
    "no second boot, nothing but ticks",
  );
});
