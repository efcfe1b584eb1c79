// The machine in a browser tab beside Node on the same image: boot time to the first shell prompt and
// guest MIPS in a shell loop, in Debian's chromium (headless, the /machine page of a daemon's web console)
// and in `bin/tsvm run`, runs alternating (Node, tab, Node, …) so a slow stretch of a loaded host does not
// fall on one side only. Usage: node --import ./node_modules/tsx/dist/loader.mjs bench/machine-tab.ts [RUNS]

import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Page } from "playwright-core";

const root = join(import.meta.dirname, "..");
const tsvm = join(root, "bin/tsvm");
/** A shell loop of a few hundred million guest instructions; prints the marker when done. */
const LOOP = "i=0; while [ $i -lt 40000 ]; do i=$((i+1)); done; echo loop-done";

interface Run {
  readonly bootS: number;
  readonly mips: number;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** `bin/tsvm run` (1 hart, 256 MiB, the default image): seconds from spawn to the prompt; MIPS from its
 *  trace lines (TSVM_TRACE, every 100 ms) while the loop runs. */
async function nodeRun(): Promise<Run> {
  const start = performance.now();
  const child = spawn(tsvm, ["run"], {
    env: { ...process.env, TSVM_TRACE: "1" },
    stdio: ["pipe", "pipe", "pipe"],
  });
  let out = "";
  let bootS = 0;
  let looping = false;
  const samples: number[] = [];
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (text: string) => {
    if (!looping) return;
    for (const m of text.matchAll(/ ([\d.]+) MIPS/g)) samples.push(Number(m[1]));
  });
  await new Promise<void>((resolve) => {
    child.stdout.setEncoding("utf8");
    child.stdout.on("data", (text: string) => {
      out += text;
      if (!bootS && /[#$] $/.test(out)) {
        bootS = (performance.now() - start) / 1000;
        looping = true;
        child.stdin.write(`${LOOP}\n`);
      } else if (looping && /^loop-done/m.test(out)) {
        looping = false;
        child.stdin.write("poweroff -f\n");
        resolve();
      }
    });
  });
  await new Promise((r) => child.on("exit", r));
  // The rate is averaged over a second: the samples of the loop's first second still hold the boot's.
  return { bootS, mips: median(samples.slice(10)) };
}

/** The /machine page: seconds from handing the files to the worker to the prompt (the page's own timing,
 *  the files' fetch left out); MIPS from its status (every 500 ms) while the loop runs. */
async function tabRun(page: Page, base: string): Promise<Run> {
  await page.goto(`${base}/machine`);
  await page.waitForFunction(
    () => (globalThis as { tsvmMachine?: { bootMs?: number } }).tsvmMachine?.bootMs,
    null,
    {
      timeout: 600_000,
      polling: 100,
    },
  );
  const bootMs = await page.evaluate(
    () => (globalThis as unknown as { tsvmMachine: { bootMs: number } }).tsvmMachine.bootMs,
  );
  await page.locator("#terminal").click();
  await page.keyboard.type(`${LOOP}\n`);
  const samples: number[] = [];
  for (;;) {
    await new Promise((r) => setTimeout(r, 500));
    const text: string = await page.evaluate(
      `Array.from(document.querySelectorAll(".xterm-accessibility-tree > div"), (r) => r.textContent).join("\\n")`,
    );
    if (/^loop-done/m.test(text)) break;
    samples.push(
      await page.evaluate(
        () =>
          (globalThis as unknown as { tsvmMachine: { status: { instructionsPerSecond: number } } })
            .tsvmMachine.status.instructionsPerSecond / 1e6,
      ),
    );
  }
  return { bootS: bootMs / 1000, mips: median(samples.slice(2)) };
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? 3);
  const home = await mkdtemp(join(tmpdir(), "tsvm-bench-tab-"));
  const env = { ...process.env, TSVM_HOME: home };
  const cli = (...args: string[]) =>
    new Promise<string>((resolve, reject) =>
      execFile(tsvm, args, { env }, (e, stdout, stderr) => (e ? reject(new Error(stderr)) : resolve(stdout))),
    );
  const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
  try {
    const web = JSON.parse(await cli("web", "--listen", "127.0.0.1:0", "--no-open", "--format", "json")) as {
      url: string;
      loginUrl: string;
    };
    const page = await browser.newPage();
    await page.goto(web.loginUrl);
    const base = web.url.replace(/\/$/, "");
    const node: Run[] = [];
    const tab: Run[] = [];
    const load = [loadavg()[0]!];
    for (let i = 0; i < runs; i++) {
      node.push(await nodeRun());
      tab.push(await tabRun(page, base));
      load.push(loadavg()[0]!);
      process.stderr.write(
        `run ${i + 1}: node ${JSON.stringify(node.at(-1))} tab ${JSON.stringify(tab.at(-1))}\n`,
      );
    }
    const row = (name: string, xs: Run[]) =>
      `${name.padEnd(28)} ${median(xs.map((r) => r.bootS))
        .toFixed(2)
        .padStart(8)} s ${median(xs.map((r) => r.mips))
        .toFixed(1)
        .padStart(8)}`;
    process.stdout.write(
      `${runs} runs each, alternating; medians; load average ${load.map((l) => l.toFixed(1)).join(" → ")}\n` +
        `${"".padEnd(28)} ${"boot".padStart(10)} ${"MIPS".padStart(8)}\n` +
        `${row("Node (bin/tsvm run)", node)}\n${row("Chromium (/machine, worker)", tab)}\n` +
        `boots: node ${node.map((r) => r.bootS.toFixed(1)).join(", ")} s; tab ${tab.map((r) => r.bootS.toFixed(1)).join(", ")} s\n`,
    );
  } finally {
    await browser.close();
    await cli("daemon", "stop").catch(() => {});
    await rm(home, { recursive: true, force: true });
  }
}

await main();
