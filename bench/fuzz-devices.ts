// The device fuzz bench, run by hand: every device fuzzer of src/machine/devices/fuzz/ for a million inputs
// (or --inputs N) each, printing inputs per second, host exceptions and broken invariants per device.
//
//   node --import ./node_modules/tsx/dist/loader.mjs bench/fuzz-devices.ts [--inputs N] [--seed S] [--only NAME]
//
// Exits 1 when any device threw or broke an invariant, printing the first failure with its seed and input.
import { performance } from "node:perf_hooks";
import { parseArgs } from "node:util";
import { runFuzzer } from "../src/machine/devices/fuzz/device-fuzz-target.ts";
import { DEVICE_FUZZERS } from "../src/machine/devices/fuzz/device-fuzzers.ts";

/** Inputs per seed: a failure then names a seed whose run is short enough to replay under a debugger. */
const INPUTS_PER_SEED = 100_000;

function fail(message: string): never {
  process.stderr.write(`fuzz-devices: ${message}\n`);
  process.exit(2);
}

function wholeNumber(text: string | undefined, fallback: number, option: string): number {
  if (text === undefined) return fallback;
  if (!/^\d+$/.test(text) || Number(text) < 1) fail(`${option} '${text}' must be a whole number above 0`);
  return Number(text);
}

async function main(): Promise<void> {
  let values: { inputs?: string; seed?: string; only?: string };
  try {
    ({ values } = parseArgs({
      options: { inputs: { type: "string" }, seed: { type: "string" }, only: { type: "string" } },
    }));
  } catch (e) {
    fail((e as Error).message);
  }
  const inputs = wholeNumber(values.inputs, 1_000_000, "--inputs");
  const firstSeed = wholeNumber(values.seed, 1, "--seed");
  const fuzzers = DEVICE_FUZZERS.filter((f) => values.only === undefined || f.name.includes(values.only));
  if (fuzzers.length === 0)
    fail(`no device matches --only '${values.only}' (${DEVICE_FUZZERS.map((f) => f.name).join(", ")})`);

  const rows: string[][] = [["device", "inputs", "seconds", "inputs/s", "exceptions", "violations"]];
  const failures: string[] = [];
  for (const fuzzer of fuzzers) {
    let done = 0;
    let exceptions = 0;
    let violations = 0;
    const start = performance.now();
    for (let seed = firstSeed; done < inputs; seed++) {
      const n = Math.min(INPUTS_PER_SEED, inputs - done);
      const run = await runFuzzer(fuzzer, seed, n);
      done += n;
      exceptions += run.exceptions;
      violations += run.violations;
      if (run.firstFailure !== null && failures.length < 20) failures.push(run.firstFailure);
    }
    const seconds = (performance.now() - start) / 1000;
    rows.push([
      fuzzer.name,
      String(done),
      seconds.toFixed(1),
      String(Math.round(done / seconds)),
      String(exceptions),
      String(violations),
    ]);
    process.stderr.write(`${fuzzer.name}: ${done} inputs in ${seconds.toFixed(1)} s\n`);
  }
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  for (const r of rows)
    process.stdout.write(
      `${r.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join("  ")}\n`,
    );
  for (const f of failures) process.stdout.write(`\n${f}\n`);
  process.exitCode = failures.length > 0 ? 1 : 0;
}

await main();
