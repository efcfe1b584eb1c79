import assert from "node:assert/strict";
import { test } from "node:test";
import { applyKconfigFragment, droppedKconfigOptions, parseKconfig } from "./kconfig-fragment.ts";

test("parseKconfig reads set and unset options and skips comments", () => {
  const options = parseKconfig(
    '# a comment\nCONFIG_A=y\n\n# CONFIG_B is not set\nCONFIG_C="riscv64-linux-gnu-"\nCONFIG_D=8\n',
  );
  assert.deepEqual(options, [
    { name: "CONFIG_A", value: "y" },
    { name: "CONFIG_B", value: "n" },
    { name: "CONFIG_C", value: '"riscv64-linux-gnu-"' },
    { name: "CONFIG_D", value: "8" },
  ]);
});

test("applyKconfigFragment replaces options in place and appends new ones", () => {
  const config = "# header\nCONFIG_STATIC=n\n# CONFIG_TC is not set\nCONFIG_TC_X=y\nCONFIG_KEEP=y\n";
  const fragment = "CONFIG_STATIC=y\nCONFIG_TC=y\n# CONFIG_TC_X is not set\nCONFIG_NEW=m\n";
  assert.equal(
    applyKconfigFragment(config, fragment),
    "# header\nCONFIG_STATIC=y\nCONFIG_TC=y\n# CONFIG_TC_X is not set\nCONFIG_KEEP=y\nCONFIG_NEW=m\n",
  );
});

test("droppedKconfigOptions names options whose final value differs, absent meaning n", () => {
  const fragment = "CONFIG_A=y\nCONFIG_B=y\n# CONFIG_C is not set\n# CONFIG_D is not set\nCONFIG_N=8\n";
  const config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_C=y\nCONFIG_N=4\n";
  assert.deepEqual(droppedKconfigOptions(fragment, config), [
    "CONFIG_B=y (got: n)",
    "CONFIG_C=n (got: y)",
    "CONFIG_N=8 (got: 4)",
  ]);
  assert.deepEqual(droppedKconfigOptions(fragment, "CONFIG_A=y\nCONFIG_B=y\nCONFIG_N=8\n"), []);
});
