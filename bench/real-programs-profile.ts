// Where tsvm's time goes on the real programs: boots the engine in this process and runs each program of
// bench/real-programs.ts at the prompt twice over, reading the machine from outside (src/machine unchanged):
//  - classes: the JIT off, each hart's run() split into chunks of random length; after each chunk the
//    instruction at the pc is decoded and counted by class (bench/real-programs-classes.ts), compressed or
//    not, and by privilege. An interpreter stops exactly after its budget, so the samples are uniform over
//    the dynamic instruction stream, which the JIT does not change. The program's own time in this pass is
//    its all-interpreted time.
//  - jit: the JIT on, every compiled block's function wrapped to count the instructions it retires and its
//    calls, and the block cache's counters (blocks compiled, flushes, invalidated pages).
//  - with --cpu-profile DIR, the jit pass also takes V8's CPU profile of each program's run (from typing it to
//    its prompt, the boot left out) into DIR/NAME.cpuprofile and prints where the time went: self time by
//    function, every compiled block's together.
// Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/real-programs-profile.ts [--only A,B]
//          [--pass classes,jit] [--sample-every N] [--cpu-profile DIR] [--format table|json]
import { execFileSync } from "node:child_process";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { RiscvEngine } from "../src/engines/riscv/riscv-engine.ts";
import { findImage } from "../src/images/image-store.ts";
import { BlockCache, type CompiledBlock } from "../src/machine/riscv/block-cache.ts";
import { Rv64Hart } from "../src/machine/riscv/hart.ts";
import { INSN_CLASSES, type InsnClass, insnClass } from "./real-programs-classes.ts";
import { parseResultLine, REAL_PROGRAMS, type RealProgram } from "./real-programs-report.ts";

const here = dirname(fileURLToPath(import.meta.url));
const PROMPT_TAIL = /[#$] $/;

/** The hart's private fields this profile reads (by name, at run time: the hart has no API for them). */
interface HartInside {
  count: number;
  pcLo: number;
  pcHi: number;
  fPageLo: number;
  fPageHi: number;
  fOff: number;
  privilege: number;
}

/** What one program's classes pass counted. */
interface ClassProfile {
  samples: number;
  /** Samples whose pc was not on the hart's current fetch page (just after a trap or a jump): not decoded. */
  undecoded: number;
  compressed: number;
  byPrivilege: Record<"user" | "supervisor" | "machine", number>;
  byClass: Record<InsnClass, number>;
  /** The program's all-interpreted time, seconds, as it measured itself. */
  interpretedSeconds: number | null;
  instret: number | null;
}

interface JitProfile {
  instret: number;
  /** Instructions the machine retired while the program ran (kernel's included), and those in blocks. */
  retired: number;
  inBlocks: number;
  blockCalls: number;
  /** Block entries through a link slot (Rv64Hart.chainedRuns), not the dispatch loop's lookup. */
  chained: number;
  blocksCompiled: number;
  cacheFlushes: number;
  pagesInvalidated: number;
  seconds: number | null;
}

const sampling = {
  on: false,
  every: 1000,
  seed: 0x2545f491,
  profile: null as ClassProfile | null,
};

function nextGap(): number {
  // xorshift32: chunk lengths uniform in [1, 2·every − 1], mean `every`.
  let s = sampling.seed;
  s ^= s << 13;
  s ^= s >>> 17;
  s ^= s << 5;
  sampling.seed = s;
  return 1 + ((s >>> 0) % (2 * sampling.every - 1));
}

function sample(h: HartInside, u16: Uint16Array): void {
  const p = sampling.profile!;
  p.samples++;
  p.byPrivilege[h.privilege === 0 ? "user" : h.privilege === 1 ? "supervisor" : "machine"]++;
  if ((h.pcLo & -4096) !== h.fPageLo || h.pcHi !== h.fPageHi || h.fOff < 0 || (h.pcLo & 0xfff) === 0xffe) {
    p.undecoded++;
    return;
  }
  const o = (h.fOff + (h.pcLo & 0xfff)) >>> 1;
  let insn = u16[o]!;
  if ((insn & 3) === 3) insn |= u16[o + 1]! << 16;
  else p.compressed++;
  p.byClass[insnClass(insn)]++;
}

/** Splits every hart's run() into chunks of random length while sampling is on (this process only). */
function patchHartRun(u16: () => Uint16Array): void {
  const original = Rv64Hart.prototype.run;
  Rv64Hart.prototype.run = function run(this: Rv64Hart, budget: number): number {
    if (!sampling.on) return original.call(this, budget);
    let done = 0;
    while (done < budget) {
      const chunk = Math.min(budget - done, nextGap());
      const took = original.call(this, chunk);
      done += took;
      if (took < chunk) break; // WFI or PAUSE
      sample(this as unknown as HartInside, u16());
    }
    return done;
  };
}

const blockCounts = { on: false, inBlocks: 0, calls: 0 };

/** Wraps each block the cache compiles so its calls and retired instructions are counted. */
function patchBlockCompile(): void {
  const original = BlockCache.prototype.compile;
  BlockCache.prototype.compile = function compile(
    this: BlockCache,
    off: number,
    counter?: number,
  ): CompiledBlock {
    const b = original.call(this, off, counter);
    const run = b.run;
    const counted: typeof run = (h, ...rest) => {
      const hart = h as HartInside;
      const before = hart.count;
      const exit = run(h, ...rest);
      if (blockCounts.on) {
        blockCounts.calls++;
        blockCounts.inBlocks += hart.count - before;
      }
      return exit;
    };
    // Replaced where the hart looks it up, with the same start, generation and length.
    const wrapped = Object.assign(Object.create(Object.getPrototypeOf(b) as object) as CompiledBlock, b, {
      run: counted,
    });
    this.dm[this.dm.indexOf(b)] = wrapped;
    return wrapped;
  };
}

/** V8's CPU profile as the inspector returns it (the fields read here). */
interface CpuProfile {
  nodes: { id: number; callFrame: { functionName: string; url: string } }[];
  samples: number[];
  timeDeltas: number[];
}

/** Self time by function, largest first, as % of the profile: compiled blocks (block_OFFSET) as one row. */
function selfTimes(profile: CpuProfile, top: number): string[] {
  const frames = new Map(profile.nodes.map((n) => [n.id, n.callFrame]));
  const byName = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const f = frames.get(id)!;
    const file = f.url.slice(f.url.lastIndexOf("/") + 1);
    const name = f.functionName.startsWith("block_")
      ? "compiled blocks"
      : `${f.functionName || "(anonymous)"}${file ? ` ${file}` : ""}`;
    const dt = profile.timeDeltas[i] ?? 0;
    byName.set(name, (byName.get(name) ?? 0) + dt);
    total += dt;
  });
  return [...byName]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([name, t]) => `${pct(t, total).padStart(6)} %  ${name}`);
}

function fail(message: string): never {
  process.stderr.write(`real-programs-profile: ${message}\n`);
  process.exit(2);
}

function emptyClasses(): ClassProfile {
  return {
    samples: 0,
    undecoded: 0,
    compressed: 0,
    byPrivilege: { user: 0, supervisor: 0, machine: 0 },
    byClass: Object.fromEntries(INSN_CLASSES.map((c) => [c, 0])) as Record<InsnClass, number>,
    interpretedSeconds: null,
    instret: null,
  };
}

/** Boots one engine and runs `programs` at its prompt one after another; `around` brackets each. */
async function runPrograms(
  jit: boolean,
  files: { kernel: string; initrd: Uint8Array; firmware: string },
  programs: readonly RealProgram[],
  timeoutMs: number,
  around: {
    begin(p: RealProgram, engine: RiscvEngine): void | Promise<void>;
    end(p: RealProgram, engine: RiscvEngine, text: string): void | Promise<void>;
  },
): Promise<void> {
  let text = "";
  let wake: (() => void) | null = null;
  const engine = new RiscvEngine({
    config: {
      harts: 1,
      memoryBytes: 256 * 2 ** 20,
      firmware: { name: "fw_dynamic.bin", bytes: readFileSync(files.firmware) },
      kernel: { name: "Image", bytes: readFileSync(files.kernel) },
      initrd: { name: "initrd", bytes: files.initrd },
      bootargs: "console=ttyS0 earlycon=sbi",
      jit,
    },
    console: {
      write(bytes: Uint8Array): void {
        text += Buffer.from(bytes).toString("latin1").replace(/\r/g, "");
        wake?.();
      },
    },
    onReset: "exit",
  });
  const until = (test: () => boolean, what: string): Promise<void> =>
    new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs);
      wake = () => {
        if (!test()) return;
        clearTimeout(timer);
        wake = null;
        resolve();
      };
      wake();
    });
  await engine.start();
  try {
    await until(() => PROMPT_TAIL.test(text), "the shell prompt");
    for (const p of programs) {
      const mark = text.length;
      process.stderr.write(`real-programs-profile: ${jit ? "jit" : "classes"}: ${p.name}\n`);
      await around.begin(p, engine);
      engine.sendConsole(new TextEncoder().encode(`${p.command(1)}\n`));
      await until(() => {
        const out = text.slice(mark);
        return PROMPT_TAIL.test(out) && out.split("\n").length > 2;
      }, p.name);
      await around.end(p, engine, text.slice(mark));
    }
  } finally {
    await engine.stop();
  }
}

const pct = (n: number, of: number): string => (of > 0 ? `${((100 * n) / of).toFixed(1)}` : "—");

function formatProfiles(
  classes: Map<string, ClassProfile>,
  jits: Map<string, JitProfile>,
  names: readonly string[],
): string {
  const lines: string[] = [];
  if (classes.size) {
    const used = INSN_CLASSES.filter((c) => names.some((n) => (classes.get(n)?.byClass[c] ?? 0) > 0));
    const head = ["class, % of decoded samples", ...names];
    const rows: string[][] = used.map((c) => [
      c,
      ...names.map((n) => {
        const p = classes.get(n)!;
        return pct(p.byClass[c], p.samples - p.undecoded);
      }),
    ]);
    rows.push([
      "compressed (RVC)",
      ...names.map((n) =>
        pct(classes.get(n)!.compressed, classes.get(n)!.samples - classes.get(n)!.undecoded),
      ),
    ]);
    rows.push([
      "in the kernel (S/M mode)",
      ...names.map((n) => {
        const p = classes.get(n)!;
        return pct(p.byPrivilege.supervisor + p.byPrivilege.machine, p.samples);
      }),
    ]);
    rows.push(["samples (k)", ...names.map((n) => (classes.get(n)!.samples / 1000).toFixed(0))]);
    rows.push([
      "interpreted MIPS",
      ...names.map((n) => {
        const p = classes.get(n)!;
        return p.instret && p.interpretedSeconds ? (p.instret / p.interpretedSeconds / 1e6).toFixed(0) : "—";
      }),
    ]);
    lines.push(...table(head, rows), "");
  }
  if (jits.size) {
    const head = ["jit", ...names];
    const rows: string[][] = [
      [
        "% of instructions in blocks",
        ...names.map((n) => {
          const j = jits.get(n);
          return j ? pct(j.inBlocks, j.retired) : "—";
        }),
      ],
      [
        "instructions per block call",
        ...names.map((n) => {
          const j = jits.get(n);
          return j && j.blockCalls ? (j.inBlocks / j.blockCalls).toFixed(1) : "—";
        }),
      ],
      [
        "% of block calls through a link",
        ...names.map((n) => {
          const j = jits.get(n);
          return j ? pct(j.chained, j.blockCalls) : "—";
        }),
      ],
      ["blocks compiled", ...names.map((n) => String(jits.get(n)?.blocksCompiled ?? "—"))],
      [
        "cache flushes / pages invalidated",
        ...names.map((n) => {
          const j = jits.get(n);
          return j ? `${j.cacheFlushes}/${j.pagesInvalidated}` : "—";
        }),
      ],
      [
        "MIPS (blocks counted)",
        ...names.map((n) => {
          const j = jits.get(n);
          return j && j.seconds ? (j.instret / j.seconds / 1e6).toFixed(0) : "—";
        }),
      ],
    ];
    lines.push(...table(head, rows));
  }
  return `${lines.join("\n")}\n`;
}

function table(head: string[], rows: string[][]): string[] {
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  return [fmt(head), widths.map((w) => "-".repeat(w)).join("  "), ...rows.map(fmt)];
}

async function main(): Promise<void> {
  const { values } = (() => {
    try {
      return parseArgs({
        options: {
          only: { type: "string" },
          pass: { type: "string" },
          "sample-every": { type: "string" },
          format: { type: "string" },
          "cpu-profile": { type: "string" },
          timeout: { type: "string" },
          help: { type: "boolean", short: "h" },
        },
      });
    } catch (e) {
      fail((e as Error).message);
    }
  })();
  if (values.help) {
    process.stdout.write(
      `${readFileSync(fileURLToPath(import.meta.url), "utf8")
        .split("\n")
        .slice(0, 13)
        .join("\n")}\n`,
    );
    return;
  }
  const names = values.only
    ? values.only.split(",")
    : REAL_PROGRAMS.filter((p) => !p.optional).map((p) => p.name);
  const programs = names.map((n) => REAL_PROGRAMS.find((p) => p.name === n) ?? fail(`no program '${n}'`));
  const passes = (values.pass ?? "classes,jit").split(",");
  if (passes.some((p) => p !== "classes" && p !== "jit"))
    fail(`--pass '${values.pass}' must list classes and/or jit`);
  const every = Number(values["sample-every"] ?? 1000);
  if (!Number.isInteger(every) || every < 1)
    fail(`--sample-every '${values["sample-every"]}' must be a whole number above 0`);
  sampling.every = every;
  const timeoutMs = Number(values.timeout ?? 1800) * 1000;
  const image = findImage("default") ?? fail("no default image: bin/tsvm image build");
  const built = execFileSync(join(here, "real-programs/build.sh"), {
    encoding: "utf8",
    stdio: ["ignore", "pipe", "inherit"],
  }).trim();
  const initrd = new Uint8Array(
    Buffer.concat([readFileSync(join(built, "real-programs.cpio")), readFileSync(image.initrd!)]),
  );
  const files = { kernel: image.kernel, initrd, firmware: image.firmware! };

  const classes = new Map<string, ClassProfile>();
  const jits = new Map<string, JitProfile>();
  let ram: Uint16Array | null = null;
  patchHartRun(() => ram!);
  patchBlockCompile();
  if (passes.includes("classes"))
    await runPrograms(false, files, programs, timeoutMs, {
      begin(p, engine) {
        ram = engine.board.ram.u16;
        sampling.profile = emptyClasses();
        classes.set(p.name, sampling.profile);
        sampling.on = true;
      },
      end(p, _engine, out) {
        sampling.on = false;
        const line = parseResultLine(out, p.name);
        const c = classes.get(p.name)!;
        c.interpretedSeconds = line ? line.ns / 1e9 : null;
        c.instret = line?.instret ?? null;
      },
    });
  const profileDir = values["cpu-profile"];
  const inspector = profileDir === undefined ? null : new Session();
  if (inspector !== null && profileDir !== undefined) {
    mkdirSync(profileDir, { recursive: true });
    inspector.connect();
    await inspector.post("Profiler.enable");
  }
  const cpuReports: string[] = [];
  if (passes.includes("jit")) {
    let start = { retired: 0, chained: 0, compiled: 0, flushes: 0, invalidations: 0 };
    const cache = (engine: RiscvEngine) => engine.board.harts[0]!.blockCache!;
    await runPrograms(true, files, programs, timeoutMs, {
      begin(_p, engine) {
        const c = cache(engine);
        start = {
          retired: engine.board.harts[0]!.instret,
          chained: engine.board.harts[0]!.chainedRuns,
          compiled: c.compiled,
          flushes: c.flushes,
          invalidations: c.invalidations,
        };
        blockCounts.inBlocks = 0;
        blockCounts.calls = 0;
        blockCounts.on = true;
        if (inspector !== null) return inspector.post("Profiler.start");
      },
      async end(p, engine, out) {
        blockCounts.on = false;
        if (inspector !== null && profileDir !== undefined) {
          const { profile } = await inspector.post("Profiler.stop");
          writeFileSync(join(profileDir, `${p.name}.cpuprofile`), JSON.stringify(profile));
          cpuReports.push(`${p.name}: self time`, ...selfTimes(profile as CpuProfile, 12), "");
        }
        const c = cache(engine);
        const line = parseResultLine(out, p.name);
        jits.set(p.name, {
          instret: line?.instret ?? 0,
          retired: engine.board.harts[0]!.instret - start.retired,
          inBlocks: blockCounts.inBlocks,
          blockCalls: blockCounts.calls,
          chained: engine.board.harts[0]!.chainedRuns - start.chained,
          blocksCompiled: c.compiled - start.compiled,
          cacheFlushes: c.flushes - start.flushes,
          pagesInvalidated: c.invalidations - start.invalidations,
          seconds: line ? line.ns / 1e9 : null,
        });
      },
    });
  }
  if (values.format === "json")
    process.stdout.write(
      `${JSON.stringify({ classes: Object.fromEntries(classes), jit: Object.fromEntries(jits) }, null, 2)}\n`,
    );
  else process.stdout.write(formatProfiles(classes, jits, names));
  if (cpuReports.length > 0) process.stdout.write(`\n${cpuReports.join("\n")}`);
}

await main();
