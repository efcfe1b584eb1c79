// The web console tests' set-up: `tsvm web` run as a user runs it (on a free port, never opening a
// browser), Debian's chromium driven headless by playwright-core (no browser is downloaded), and plain
// HTTP and WebSocket requests for what a browser would not send.

import assert from "node:assert/strict";
import { request } from "node:http";
import { type Browser, chromium, type Page } from "playwright-core";
import { WebSocket } from "ws";

export interface CliRunner {
  tsvm(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
}

/** `tsvm web` on 127.0.0.1 (any free port unless one is given): the one-time login URL it printed. */
export async function webLoginUrl(installation: CliRunner, listen = "127.0.0.1:0"): Promise<URL> {
  const r = await installation.tsvm("web", "--listen", listen, "--no-open");
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.equal(lines.length, 1, `tsvm web prints one line: ${r.stdout}`);
  assert.match(lines[0]!, /^http:\/\/127\.0\.0\.1:\d+\/login\?code=[0-9a-f]{32}$/);
  return new URL(lines[0]!);
}

export function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: "/usr/bin/chromium", headless: true });
}

export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request as a script (or a hostile page) would send it. */
export function httpRequest(
  url: URL | string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? "GET", headers: options.headers }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (c: string) => {
        body += c;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on("error", reject);
    req.end(options.body);
  });
}

/** A WebSocket upgrade's outcome: "open", or the refusal's status and body. */
export function webSocketOutcome(
  url: string,
  headers: Record<string, string>,
): Promise<{ opened: boolean; status?: number; body?: string }> {
  return new Promise((resolve) => {
    const ws = new WebSocket(url, { headers });
    ws.on("open", () => {
      ws.close();
      resolve({ opened: true });
    });
    ws.on("unexpected-response", (_req, res) => {
      let body = "";
      res.on("data", (c: Buffer) => {
        body += c.toString("utf8");
      });
      res.on("end", () => resolve({ opened: false, status: res.statusCode, body }));
    });
    ws.on("error", () => resolve({ opened: false }));
  });
}

/** The session cookie's "name=value" from a login answer's Set-Cookie. */
export function sessionCookie(answer: Answer): string {
  const set = answer.headers["set-cookie"];
  const line = Array.isArray(set) ? set[0] : set;
  assert.ok(line, "the login answer sets a cookie");
  return line.split(";")[0]!;
}

/** The VM page's details as the page shows them: each <dt>'s text → its <dd>'s. */
export async function pageDetails(page: Page): Promise<Record<string, string>> {
  return page.evaluate(`Object.fromEntries(Array.from(document.querySelectorAll("dl.details dt"),
    (dt) => [dt.textContent, dt.nextElementSibling.textContent]))`);
}

/** The VM page's transition history, newest first: [from, to, why] per row. */
export async function pageHistory(page: Page): Promise<string[][]> {
  return page.evaluate(`Array.from(document.querySelectorAll('table[aria-label="Transition history"] tbody tr'),
    (tr) => Array.from(tr.querySelectorAll("td"), (td) => td.textContent).slice(1))`);
}

/** How many points the chart's line of `kind` (cpu or mips) has. */
export async function chartPoints(page: Page, kind: "cpu" | "mips"): Promise<number> {
  const points = (await page.locator(`polyline.${kind}-line`).getAttribute("points")) ?? "";
  return points.trim() === "" ? 0 : points.trim().split(/\s+/).length;
}

/**
 * Waits until `expression`, evaluated in the page, is truthy. Polled from here: the console's policy lets
 * no page script evaluate strings, which waitForFunction would.
 */
export async function waitForPage(page: Page, expression: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await page.evaluate(expression))) {
    if (Date.now() > deadline) throw new Error(`the page never made true: ${expression}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}
