import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { cp, mkdir, mkdtemp, readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { RiscvEngine } from "../engines/riscv/riscv-engine.ts";
import {
  MAP_MIN_BYTES,
  readSnapshot,
  type SnapshotLike,
  StateFileError,
  writeSnapshot,
} from "./snapshot-file.ts";

const root = await mkdtemp(join(tmpdir(), "tsvm-snapshot-"));
after(() => rm(root, { recursive: true, force: true }));
let n = 0;
async function freshDir(): Promise<string> {
  const dir = join(root, `s${n++}`);
  await mkdir(dir);
  return dir;
}

const META = { arch: "riscv64", writer: "tsvm test" };

function sample(): SnapshotLike {
  const ram = new Uint8Array(8 << 20); // 8 MiB, mostly zero: written sparse
  ram.set([1, 2, 3], 0);
  ram[5 * 4096 + 17] = 0xaa;
  ram[ram.length - 1] = 0x55;
  return {
    engine: "riscv",
    version: 3,
    data: {
      harts: [
        { pc: 0x8020_0000, x: new Int32Array([1, -2, 3, 0x7fffffff]), f: new Float64Array([1.5, -0, 3e300]) },
        { pc: 0x8000_0000, x: new Int32Array(64), f: new Float64Array(32) },
      ],
      mtime: 123456789012345678901234567890n,
      counters: new BigUint64Array([0n, 2n ** 64n - 1n]),
      plic: { pending: new Uint32Array([0, 1 << 31]), name: "plic", enabled: true, none: null },
      ram,
    },
  };
}

test("a snapshot round-trips: typed arrays of each kind, bigints, nested objects", async () => {
  const dir = await freshDir();
  const snap = sample();
  await writeSnapshot(dir, snap, META);
  const back = await readSnapshot(dir, { arch: "riscv64" });
  assert.equal(back.engine, "riscv");
  assert.equal(back.version, 3);
  assert.deepEqual(back.data, snap.data);
  const d = back.data as { harts: Array<{ x: Int32Array }>; ram: Uint8Array };
  assert.ok(d.harts[0]!.x instanceof Int32Array);
  assert.ok(d.ram instanceof Uint8Array && d.ram.length === 8 << 20);
});

test("guest RAM is written sparse: zero pages take no disk blocks", async () => {
  const dir = await freshDir();
  await writeSnapshot(dir, sample(), META);
  const ram = await stat(join(dir, "section-6.bin"));
  assert.equal(ram.size, 8 << 20);
  assert.ok(ram.blocks * 512 < 1 << 20, `8 MiB of mostly zeros used ${ram.blocks * 512} bytes of disk`);
});

test("truncated, corrupt, foreign or missing files are refused with the file and the problem, and left as they are", async () => {
  const cases: Array<[string, (dir: string) => Promise<void>, RegExp]> = [
    [
      "truncated RAM",
      (d) => truncate(join(d, "section-6.bin"), 4096),
      /section-6\.bin is truncated: 4096 bytes, expected 8388608/,
    ],
    [
      "flipped byte",
      async (d) => {
        const p = join(d, "section-0.bin");
        const b = await readFile(p);
        b[0]! ^= 1;
        await writeFile(p, b);
      },
      /section-0\.bin is corrupt/,
    ],
    ["missing section", (d) => rm(join(d, "section-2.bin")), /section-2\.bin is missing/],
    ["truncated tree", (d) => truncate(join(d, "state.json"), 10), /state\.json is truncated or corrupt/],
    ["truncated manifest", (d) => truncate(join(d, "manifest.json"), 20), /manifest\.json is not valid JSON/],
    ["no manifest", (d) => rm(join(d, "manifest.json")), /manifest\.json is missing/],
    [
      "other format",
      async (d) => {
        const p = join(d, "manifest.json");
        const m = JSON.parse(await readFile(p, "utf8"));
        await writeFile(p, JSON.stringify({ ...m, format: { major: 2, minor: 0 } }));
      },
      /format \{"major":2,"minor":0\} is not 1\.x/,
    ],
  ];
  for (const [what, damage, message] of cases) {
    const dir = await freshDir();
    await writeSnapshot(dir, sample(), META);
    await damage(dir);
    const before = await readFile(join(dir, "state.json")).catch(() => undefined);
    await assert.rejects(
      readSnapshot(dir, { arch: "riscv64" }),
      (e: unknown) => e instanceof StateFileError && e.code === "bad-state" && message.test(e.message),
      what,
    );
    assert.deepEqual(
      await readFile(join(dir, "state.json")).catch(() => undefined),
      before,
      `${what}: nothing rewritten`,
    );
  }
  const dir = await freshDir();
  await writeSnapshot(dir, sample(), META);
  await assert.rejects(readSnapshot(dir, { arch: "x86_64" }), /it is a riscv64 state, not x86_64/);
});

test("what a state cannot hold is refused when writing", async () => {
  const bad: Array<[unknown, RegExp]> = [
    [{ a: Number.NaN }, /data\.a is NaN/],
    [{ f: () => 1 }, /data\.f is a function/],
    [{ $section: 1 }, /reserved/],
  ];
  for (const [data, message] of bad)
    await assert.rejects(
      writeSnapshot(await freshDir(), { engine: "riscv", version: 1, data }, META),
      message,
    );
  const cyclic: Record<string, unknown> = {};
  cyclic.self = cyclic;
  await assert.rejects(
    writeSnapshot(await freshDir(), { engine: "riscv", version: 1, data: cyclic }, META),
    /refers back/,
  );
});

test("a key __proto__ in state.json is a plain key: it cannot replace an object's prototype", async () => {
  const dir = await freshDir();
  await writeSnapshot(dir, { engine: "riscv", version: 1, data: { a: 1 } }, META);
  const tree = Buffer.from('{"a":1,"dev":{"__proto__":{"polluted":true},"b":2}}');
  await writeFile(join(dir, "state.json"), tree);
  const manifest = JSON.parse(await readFile(join(dir, "manifest.json"), "utf8"));
  manifest.treeBytes = tree.length;
  manifest.treeSha256 = createHash("sha256").update(tree).digest("hex");
  await writeFile(join(dir, "manifest.json"), JSON.stringify(manifest));
  const back = await readSnapshot(dir, { arch: "riscv64" });
  const dev = (back.data as { dev: Record<string, unknown> }).dev;
  assert.equal(Object.getPrototypeOf(dev), Object.prototype);
  assert.equal(dev.polluted, undefined);
  assert.deepEqual(Object.getOwnPropertyDescriptor(dev, "__proto__")?.value, { polluted: true });
  assert.equal(dev.b, 2);
});

/** SHA-256 of every file in `dir`, by name. */
async function hashes(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort())
    out[name] = createHash("sha256")
      .update(await readFile(join(dir, name)))
      .digest("hex");
  return out;
}

test("mapped: RAM comes from its file without being read; writes to it never reach the file", async () => {
  const dir = await freshDir();
  const snap = sample();
  await writeSnapshot(dir, snap, META);
  const before = await hashes(dir);
  const back = await readSnapshot(dir, { arch: "riscv64", largeSections: "map" });
  assert.deepEqual(back.data, snap.data);
  const ram = (back.data as { ram: Uint8Array }).ram;
  assert.ok(ram.length >= MAP_MIN_BYTES);
  ram.fill(0x77);
  (back.data as { harts: Array<{ x: Int32Array }> }).harts[0]!.x[0] = 99;
  assert.deepEqual(await hashes(dir), before, "no state file changed");
  // A second read sees the file as written, not the first mapping's writes.
  const again = await readSnapshot(dir, { arch: "riscv64", largeSections: "map" });
  assert.deepEqual(again.data, snap.data);
});

test("mapped: RAM's size is checked, its SHA-256 is not; small sections and the tree are checked as ever", async () => {
  const flip = async (path: string, at: number) => {
    const b = await readFile(path);
    b[at]! ^= 1;
    await writeFile(path, b);
  };
  const map = { arch: "riscv64", largeSections: "map" } as const;
  const truncated = await freshDir();
  await writeSnapshot(truncated, sample(), META);
  await truncate(join(truncated, "section-6.bin"), 4096);
  await assert.rejects(
    readSnapshot(truncated, map),
    /section-6\.bin is truncated: 4096 bytes, expected 8388608/,
  );
  const small = await freshDir();
  await writeSnapshot(small, sample(), META);
  await flip(join(small, "section-0.bin"), 0);
  await assert.rejects(readSnapshot(small, map), /section-0\.bin is corrupt/);
  const tree = await freshDir();
  await writeSnapshot(tree, sample(), META);
  await flip(join(tree, "state.json"), 3);
  await assert.rejects(readSnapshot(tree, map), /state\.json is truncated or corrupt/);
  // The one thing a mapped read does not check (it would read all of RAM): a changed RAM byte. The
  // default read, used for states that come from elsewhere, finds it.
  const ram = await freshDir();
  await writeSnapshot(ram, sample(), META);
  await flip(join(ram, "section-6.bin"), 17);
  const mapped = await readSnapshot(ram, map);
  assert.equal((mapped.data as { ram: Uint8Array }).ram[17], 1);
  await assert.rejects(readSnapshot(ram, { arch: "riscv64" }), /section-6\.bin is corrupt/);
});

test("a riscv state written before RAM was mapped (tests/fixtures/riscv-state-1.0) loads both ways and runs on", async () => {
  const fixture = join(import.meta.dirname, "../../tests/fixtures/riscv-state-1.0");
  const dir = await freshDir();
  await cp(fixture, dir, { recursive: true });
  const before = await hashes(dir);
  const COUNTER = 0x10_0000;
  const SAVED = 36_489_998;
  const config = {
    harts: 1,
    memoryBytes: 16 << 20,
    firmware: null,
    kernel: null,
    initrd: null,
    bootargs: "",
  };
  for (const largeSections of ["read", "map"] as const) {
    const snapshot = await readSnapshot(dir, { arch: "riscv64", largeSections });
    // Read: copied into the board's own RAM, as before mapping existed; mapped: the board runs on it.
    const ram = largeSections === "map" ? RiscvEngine.ramOf(snapshot) : undefined;
    assert.equal(largeSections === "read" || ram !== undefined, true, "a mapped RAM is its own buffer");
    const engine = new RiscvEngine({ config, console: { write: () => {} }, ram });
    await engine.restoreState(snapshot);
    assert.equal(engine.board.ram.buffer === ram, largeSections === "map", "the board runs on the mapping");
    assert.equal(engine.board.ram.view.getUint32(COUNTER, true), SAVED);
    await engine.start();
    while (engine.board.ram.view.getUint32(COUNTER, true) < SAVED + 100_000)
      await new Promise((r) => setTimeout(r, 10));
    await engine.stop();
    // The loop went on from the saved count: RAM beyond the counter is the program, unchanged.
    assert.equal(engine.board.ram.view.getUint32(0, true), 0x00100297);
  }
  assert.deepEqual(await hashes(dir), before, "running the guest changed no state file");
});
