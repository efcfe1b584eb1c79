// Drives the /machine page in Debian's chromium (headless, through playwright-core): open it, wait for the
// machine's shell prompt, type into its console, read the console's text (xterm's screen-reader tree).

import { type Browser, chromium, type Page } from "playwright-core";

export const CHROMIUM = "/usr/bin/chromium";

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: CHROMIUM, headless: true });
}

/** What the page exposes as window.tsvmMachine (src/web/machine/machine-page.ts). */
export interface TabMachineInfo {
  readonly image?: { readonly name: string; readonly hash: string };
  readonly fetchMs?: number;
  readonly bootMs?: number;
  readonly status?: {
    readonly state: string;
    readonly instructionsPerSecond: number;
    readonly instret: number;
  };
  readonly error?: string;
}

export function tabInfo(page: Page): Promise<TabMachineInfo> {
  return page.evaluate(() => (globalThis as unknown as { tsvmMachine: TabMachineInfo }).tsvmMachine);
}

/** The console's text as the page shows it to screen readers (one line per row, trailing blanks dropped). */
export async function consoleText(page: Page): Promise<string> {
  // A string, evaluated in the page: this file is compiled for Node, without the DOM's types.
  const text: string = await page.evaluate(`Array.from(
    document.querySelectorAll(".xterm-accessibility-tree > div"),
    (row) => (row.textContent ?? "").replace(/\\s+$/, ""),
  ).join("\\n")`);
  return text.replace(/\n+$/, "");
}

/** Waits until the console's text matches `pattern` (or the page reports an error), else throws. */
export async function waitForConsole(page: Page, pattern: RegExp, timeoutMs: number): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const text = await consoleText(page);
    if (pattern.test(text)) return text;
    const info = await tabInfo(page);
    if (info.error) throw new Error(`the page reports: ${info.error}`);
    if (Date.now() > deadline)
      throw new Error(
        `the console never matched ${pattern} in ${timeoutMs} ms; it ends:\n${text.slice(-600)}`,
      );
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** Types a line into the console (the terminal has focus once the machine starts). */
export async function typeLine(page: Page, line: string): Promise<void> {
  await page.locator("#terminal").click();
  await page.keyboard.type(`${line}\n`);
}
