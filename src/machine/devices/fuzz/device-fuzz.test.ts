// Guest-hostile fuzzing of every device the board exposes, with seeded inputs: no host exception, no broken
// invariant (RAM outside the named buffers, a state that would not load), for a few thousand inputs per device.
// bench/fuzz-devices.ts runs the same fuzzers for millions of inputs.
import assert from "node:assert/strict";
import { test } from "node:test";
import { runFuzzer } from "./device-fuzz-target.ts";
import { DEVICE_FUZZERS } from "./device-fuzzers.ts";

const SEEDS = [1, 2, 3, 4, 5];
const INPUTS_PER_SEED = 1000;

for (const fuzzer of DEVICE_FUZZERS) {
  test(`${fuzzer.name}: ${SEEDS.length} × ${INPUTS_PER_SEED} hostile inputs, no exception, no broken invariant`, async () => {
    const coverage: Record<string, number> = {};
    for (const seed of SEEDS) {
      const run = await runFuzzer(fuzzer, seed, INPUTS_PER_SEED);
      assert.equal(run.firstFailure, null);
      assert.equal(run.exceptions + run.violations, 0);
      for (const [k, n] of Object.entries(run.coverage)) coverage[k] = (coverage[k] ?? 0) + n;
    }
    // The inputs reach the device's deeper paths: every counter moved.
    for (const [k, n] of Object.entries(coverage)) assert.ok(n > 0, `${fuzzer.name}: never reached ${k}`);
  });
}
