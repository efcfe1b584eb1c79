// The time-to-usable budget (issue 11): the default image boots to its guest agent's first byte within the
// number of guest instructions in boot-budget.json, counted on a deterministic boot (boot-budget.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { countBootToAgent, readBootBudget } from "./boot-budget.ts";
import { img, skip } from "./tsvm-run-fixture.ts";

test("power-on to the guest agent's HELLO stays within the instruction budget", { skip }, (t) => {
  const { instructions } = readBootBudget();
  const r = countBootToAgent(img!, 4 * instructions);
  t.diagnostic(
    `${r.instructions} guest instructions to the agent (budget ${instructions}), ` +
      `${(r.guestMs / 1000).toFixed(2)} s of guest time, ${(r.hostMs / 1000).toFixed(1)} s here`,
  );
  assert.ok(r.instructions > 10_000_000, `only ${r.instructions} instructions: not a boot`);
  assert.ok(
    r.instructions <= instructions,
    `booting to the agent took ${r.instructions} guest instructions, over the budget of ${instructions}: ` +
      "a change lengthened the boot (if that is intended, measure with tests/integration/boot-budget.ts " +
      "and raise the budget in tests/integration/boot-budget.json in the same commit)",
  );
});
