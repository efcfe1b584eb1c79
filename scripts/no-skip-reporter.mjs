// A node:test reporter, used beside `spec` by scripts/test.sh: it lists every test that was skipped or
// marked todo and then fails the run, because a suite that skips is not a suite that passed. Plain
// JavaScript: node loads reporters before any --import loader (tsx) is in place.

/**
 * @param {AsyncIterable<import("node:test/reporters").TestEvent>} source
 * @returns {AsyncGenerator<string>}
 */
export default async function* noSkipReporter(source) {
  /** @type {Array<{ file: string | undefined; name: string; why: string }>} */
  const notRun = [];
  for await (const event of source) {
    if (event.type !== "test:pass" && event.type !== "test:fail") continue;
    const { skip, todo, name, file } = event.data;
    if (skip !== undefined && skip !== false)
      notRun.push({ file, name, why: `SKIP${typeof skip === "string" ? `: ${skip}` : ""}` });
    else if (todo !== undefined && todo !== false)
      notRun.push({ file, name, why: `TODO${typeof todo === "string" ? `: ${todo}` : ""}` });
  }
  if (notRun.length === 0) return;
  // The runner sets a failing exit code only for failed tests and never clears one: this one stays.
  process.exitCode = 1;
  yield `\n✖ ${notRun.length} test${notRun.length === 1 ? " was" : "s were"} skipped or todo; every test must run here (TSVM_NO_SKIP=1 or CI=true):\n`;
  for (const t of notRun) yield `  ${t.file ?? "?"}: ${t.name} (${t.why})\n`;
}
