// The web console in a real browser (Debian's chromium, headless, through playwright-core) against a real
// daemon whose VMs host the counting stand-in guest (its console echoes in capitals): signing in with the
// one-time code, the live VM list, the lifecycle buttons agreeing with the CLI, the serial console in
// xterm.js with two viewers, phone width and the keyboard; and everything refused without a session.

import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { after, before, test } from "node:test";
import type { Browser, Page } from "playwright-core";
import { type CliInstallation, cliInstallation } from "../../src/cli/fixtures/cli-installation.ts";
import {
  chartPoints,
  httpRequest,
  launchChromium,
  pageDetails,
  pageHistory,
  waitForPage,
  sessionCookie,
  webLoginUrl,
  webSocketOutcome,
} from "./web-console-fixture.ts";

const ROOT = join(dirname(fileURLToPath(import.meta.url)), "../..");
let cli: CliInstallation;
let browser: Browser;

before(async () => {
  cli = await cliInstallation("web-console");
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await cli?.remove();
});

/** The VM's status as the CLI reports it, or undefined when the CLI does not list it. */
async function cliStatus(name: string): Promise<string | undefined> {
  const r = await cli.tsvm("list", "--format", "json");
  assert.equal(r.code, 0, r.stderr);
  return (JSON.parse(r.stdout) as Array<{ name: string; status: string }>).find((v) => v.name === name)
    ?.status;
}

async function signedInPage(): Promise<Page> {
  const page = await browser.newPage();
  await page.goto((await webLoginUrl(cli)).href);
  await page.waitForSelector("table.vms");
  return page;
}

const row = (page: Page, vm: string) => page.locator(`tr[data-vm="${vm}"]`);

test("without a session every page, file and API call is refused; the API token still works", async () => {
  const login = await webLoginUrl(cli);
  const base = login.origin;
  for (const path of [
    "/",
    "/vm/x",
    "/assets/console.js",
    "/assets/console-style.css",
    "/v1/instances",
    "/v1/host",
  ]) {
    const a = await httpRequest(`${base}${path}`);
    assert.equal(a.status, 401, path);
    assert.match(a.body, /sign in first: open the login URL 'tsvm web' printed/, path);
  }
  const post = await httpRequest(`${base}/v1/instances`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "sneaky" }),
  });
  assert.equal(post.status, 401);
  const ws = await webSocketOutcome(`ws://${login.host}/v1/instances/x/serialPort`, { origin: base });
  assert.equal(ws.status, 401);
  // A made-up cookie is no session.
  const forged = await httpRequest(`${base}/v1/instances`, {
    headers: { cookie: `tsvm_session_${login.port}=${"ab".repeat(32)}` },
  });
  assert.equal(forged.status, 401);
  assert.match(forged.body, /session is unknown to the daemon/);
  const wrongToken = await httpRequest(`${base}/v1/instances`, { headers: { authorization: "Bearer nope" } });
  assert.equal(wrongToken.status, 401);
  assert.match(wrongToken.body, /the bearer token is wrong/);
  const { readFile } = await import("node:fs/promises");
  const token = (await readFile(join(cli.home, "api-token"), "utf8")).trim();
  const withToken = await httpRequest(`${base}/v1/instances`, {
    headers: { authorization: `Bearer ${token}` },
  });
  assert.equal(withToken.status, 200);
  assert.equal(await cliStatus("sneaky"), undefined, "nothing was created");
});

test("a login code works once; a wrong or reused code is refused with a clear message", async () => {
  const login = await webLoginUrl(cli);
  const wrong = new URL(login);
  wrong.searchParams.set("code", "0".repeat(32));
  const refused = await httpRequest(wrong);
  assert.equal(refused.status, 401);
  assert.match(refused.body, /this login code is wrong; run 'tsvm web' on the host for a new login URL/);
  assert.equal(refused.headers["set-cookie"], undefined);
  const first = await httpRequest(login);
  assert.equal(first.status, 303);
  assert.equal(first.headers.location, "/");
  const setCookie = String(first.headers["set-cookie"]);
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  const again = await httpRequest(login);
  assert.equal(again.status, 401);
  assert.match(again.body, /this login code was used already \(each works once\)/);
  assert.equal(again.headers["set-cookie"], undefined);
  // The session from the first use works, and the page never holds the API token.
  const cookie = sessionCookie(first);
  const page = await httpRequest(`${login.origin}/`, { headers: { cookie } });
  assert.equal(page.status, 200);
  const { readFile } = await import("node:fs/promises");
  const token = (await readFile(join(cli.home, "api-token"), "utf8")).trim();
  assert.ok(!page.body.includes(token));
  const script = await httpRequest(`${login.origin}/assets/console.js`, { headers: { cookie } });
  assert.equal(script.status, 200);
  assert.ok(!script.body.includes(token));
});

test("a WebSocket or changing request from another origin is refused, from the console's own it is not", async () => {
  assert.equal((await cli.tsvm("create", "ws-vm")).code, 0);
  const login = await webLoginUrl(cli);
  const cookie = sessionCookie(await httpRequest(login));
  const url = `ws://${login.host}/v1/instances/ws-vm/serialPort`;
  const forged = await webSocketOutcome(url, { cookie, origin: "http://evil.example" });
  assert.equal(forged.opened, false);
  assert.equal(forged.status, 403);
  assert.match(forged.body ?? "", /forbidden-origin.*'http:\/\/evil\.example', not this console/);
  const none = await webSocketOutcome(url, { cookie });
  assert.equal(none.status, 403, "a browser session's WebSocket must carry its Origin");
  const own = await webSocketOutcome(url, { cookie, origin: login.origin });
  assert.equal(own.opened, true);
  const csrf = await httpRequest(`${login.origin}/v1/instances/ws-vm/stop`, {
    method: "POST",
    headers: { cookie, origin: "http://evil.example" },
  });
  assert.equal(csrf.status, 403);
  assert.equal(await cliStatus("ws-vm"), "RUNNING", "the forged stop did nothing");
  assert.equal((await cli.tsvm("delete", "ws-vm")).code, 0);
});

test("the list shows a VM made by the CLI; create, suspend, resume and delete from the page agree with the CLI", async () => {
  assert.equal((await cli.tsvm("create", "from-cli")).code, 0);
  const page = await signedInPage();
  await row(page, "from-cli").locator(".status", { hasText: "RUNNING" }).waitFor();
  assert.equal(await row(page, "from-cli").locator("td[data-label=vCPUs]").textContent(), "1");

  // Create with the keyboard alone: type the name, Tab past the machine type, Enter submits.
  await page.locator("#new-name").focus();
  await page.keyboard.type("from-page");
  await page.keyboard.press("Enter");
  await row(page, "from-page").locator(".status", { hasText: "RUNNING" }).waitFor();
  assert.equal(await cliStatus("from-page"), "RUNNING");

  await row(page, "from-page").locator('[data-action="suspend"]').click();
  await row(page, "from-page").locator(".status", { hasText: "SUSPENDED" }).waitFor();
  assert.equal(await cliStatus("from-page"), "SUSPENDED");

  // The live list follows a change made elsewhere (the CLI) without a reload.
  assert.equal((await cli.tsvm("stop", "from-cli")).code, 0);
  await row(page, "from-cli").locator(".status", { hasText: "TERMINATED" }).waitFor();

  const resume = row(page, "from-page").locator('[data-action="resume"]');
  await resume.focus();
  await page.keyboard.press("Enter");
  await row(page, "from-page").locator(".status", { hasText: "RUNNING" }).waitFor();
  assert.equal(await cliStatus("from-page"), "RUNNING");

  // Delete asks first: declining keeps the VM, accepting deletes it.
  page.once("dialog", (d) => void d.dismiss());
  await row(page, "from-page").locator('[data-action="delete"]').click();
  await page.waitForTimeout(300);
  assert.equal(await cliStatus("from-page"), "RUNNING");
  page.once("dialog", (d) => void d.accept());
  await row(page, "from-page").locator('[data-action="delete"]').click();
  await row(page, "from-page").waitFor({ state: "detached" });
  assert.equal(await cliStatus("from-page"), undefined);

  // The API's refusal is shown as the API words it.
  await page.locator("#new-name").fill("Bad_Name");
  await page.locator("form.create button[type=submit]").click();
  await page.locator("#notice.error").waitFor();
  const listed = await cli.tsvm("create", "Bad_Name");
  const apiWords = listed.stderr.replace(/^tsvm create: /, "").trim();
  assert.ok(apiWords.length > 0);
  assert.equal((await page.locator("#notice").textContent())?.trim(), apiWords);
  assert.equal((await cli.tsvm("delete", "from-cli")).code, 0);
  await page.close();
});

test("the serial console: two viewers, typing, resizing, and a huge paste refused", async () => {
  assert.equal((await cli.tsvm("create", "echo-vm")).code, 0);
  const first = await signedInPage();
  const second = await signedInPage();
  for (const page of [first, second]) {
    await page.goto(`${new URL(page.url()).origin}/vm/echo-vm`);
    await page.locator("#console-state", { hasText: /^connected$/ }).waitFor();
  }
  const rows = (page: Page) => page.locator(".xterm-rows");
  await first.bringToFront();
  await first.locator("#terminal").click();
  await first.keyboard.type("hello web");
  // The stand-in guest echoes in capitals: both viewers see it (a page draws only while it is in front).
  for (const page of [first, second]) {
    await page.bringToFront();
    // xterm.js draws only while the terminal is in view.
    await rows(page).scrollIntoViewIfNeeded();
    await rows(page).filter({ hasText: "HELLO WEB" }).waitFor();
  }
  await first.bringToFront();

  // The keyboard alone gets out of the terminal: Shift+Tab moves the focus back through the page.
  await first.keyboard.press("Shift+Tab");
  assert.equal(await first.evaluate("document.activeElement.className"), "", "focus left the terminal");
  assert.equal(await first.evaluate("document.activeElement.id"), "console-connect");

  // Resizing the window re-fits the terminal: a narrower window has fewer columns.
  const width = async (page: Page) => (await rows(page).locator("div").first().boundingBox())!.width;
  await first.setViewportSize({ width: 1200, height: 800 });
  await first.waitForTimeout(300);
  const wide = await width(first);
  await first.setViewportSize({ width: 375, height: 700 });
  await first.waitForTimeout(300);
  assert.ok((await width(first)) < wide / 2, "the terminal follows the window's width");
  // At phone width the page has no sideways scrolling.
  const scroll = await first.evaluate("document.documentElement.scrollWidth");
  assert.ok(Number(scroll) <= 375, `page is ${scroll} px wide at 375`);

  // A paste larger than the console takes is refused whole: the page says so and the guest gets nothing.
  const before = (await cli.tsvm("logs", "echo-vm")).stdout;
  await first.evaluate(`(() => {
    const data = new DataTransfer();
    data.setData("text/plain", "x".repeat(2 * 1024 * 1024));
    document.querySelector(".xterm-helper-textarea").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  })()`);
  await first.locator("#notice.error", { hasText: "paste refused" }).waitFor();
  assert.match(
    (await first.locator("#notice").textContent()) ?? "",
    /paste refused: it is \d+ bytes, and the console takes at most 65536 at once \(nothing was sent\)/,
  );
  // A paste of ordinary size goes through.
  await first.evaluate(`(() => {
    const data = new DataTransfer();
    data.setData("text/plain", "pasted ok");
    document.querySelector(".xterm-helper-textarea").dispatchEvent(
      new ClipboardEvent("paste", { clipboardData: data, bubbles: true, cancelable: true }));
  })()`);
  await second.bringToFront();
  await rows(second).scrollIntoViewIfNeeded();
  await rows(second).filter({ hasText: "PASTED OK" }).waitFor();
  const afterLogs = (await cli.tsvm("logs", "echo-vm")).stdout;
  assert.ok(!afterLogs.includes("XXXXXXXX"), "nothing of the huge paste reached the guest");
  assert.ok(afterLogs.length > before.length);
  assert.equal((await cli.tsvm("delete", "echo-vm")).code, 0);
  await first.close();
  await second.close();
});

test("snapshots and port forwards made on a VM's page agree with the CLI", async () => {
  assert.equal((await cli.tsvm("create", "kept-vm")).code, 0);
  assert.equal((await cli.tsvm("stop", "kept-vm")).code, 0);
  const page = await signedInPage();
  await page.goto(`${new URL(page.url()).origin}/vm/kept-vm`);
  await page.locator("#vm-status", { hasText: "TERMINATED" }).waitFor();
  await page.locator("#snapshot-name").fill("before");
  await page.locator("#snapshot-name").press("Enter");
  await page.locator("#notice", { hasText: "snapshot before taken" }).waitFor();
  const snapshots = await cli.tsvm("snapshot", "list", "kept-vm", "--format", "json");
  assert.deepEqual(
    (JSON.parse(snapshots.stdout) as Array<{ name: string }>).map((s) => s.name),
    ["before"],
  );
  await page.locator("#forward-host-port").fill("18080");
  await page.locator("#forward-guest-port").fill("80");
  await page.locator("#forward-guest-port").press("Enter");
  await page.locator("#notice", { hasText: "forward 18080 → 80 added" }).waitFor();
  const described = await cli.tsvm("describe", "kept-vm", "--format", "json");
  assert.deepEqual((JSON.parse(described.stdout) as { forwards: unknown }).forwards, [
    { protocol: "tcp", hostAddress: "127.0.0.1", hostPort: 18080, guestPort: 80 },
  ]);
  assert.equal((await cli.tsvm("delete", "kept-vm")).code, 0);
  await page.close();
});

test("an expired session is refused, saying so", async () => {
  const short = await cliInstallation("web-console-expiry");
  try {
    const { readFile } = await import("node:fs/promises");
    const config = JSON.parse(await readFile(join(short.home, "config.json"), "utf8")) as Record<
      string,
      unknown
    >;
    await writeFile(join(short.home, "config.json"), JSON.stringify({ ...config, webSessionSeconds: 2 }));
    const login = await webLoginUrl(short);
    const cookie = sessionCookie(await httpRequest(login));
    assert.equal((await httpRequest(`${login.origin}/v1/instances`, { headers: { cookie } })).status, 200);
    await new Promise((r) => setTimeout(r, 2500));
    for (const path of ["/", "/v1/instances"]) {
      const a = await httpRequest(`${login.origin}${path}`, { headers: { cookie } });
      assert.equal(a.status, 401, path);
      assert.match(a.body, /this browser's session expired; run 'tsvm web' on the host for a new login URL/);
    }
  } finally {
    await short.remove();
  }
});

test("a VM's page shows its details and transition history as the CLI does, live, and its CPU chart gets points", async () => {
  assert.equal((await cli.tsvm("create", "page-vm", "--cpus", "2", "--memory", "256M")).code, 0);
  const describe = async () =>
    JSON.parse((await cli.tsvm("describe", "page-vm", "--format", "json")).stdout) as {
      id: string;
      machineType: string;
      cpus: number;
      image: string;
      engine: string;
      identity: { hostname: string };
      history: Array<{ from?: string; to: string; reason: string }>;
    };
  const page = await signedInPage();
  await page.goto(`${new URL(page.url()).origin}/vm/page-vm`);
  await page.locator("#vm-status", { hasText: "RUNNING" }).waitFor();
  const vm = await describe();
  const details = await pageDetails(page);
  assert.equal(details.Id, vm.id);
  assert.equal(details["Machine type"], vm.machineType);
  assert.equal(details.vCPUs, "2");
  assert.equal(details.Memory, "256 MiB");
  assert.equal(details.Image, vm.image);
  assert.equal(details.Engine, vm.engine);
  assert.equal(details.Hostname, vm.identity.hostname);
  const asRows = (h: typeof vm.history) => [...h].reverse().map((t) => [t.from ?? "-", t.to, t.reason]);
  assert.deepEqual(await pageHistory(page), asRows(vm.history));

  // A transition made elsewhere (the CLI) shows on the page without a reload.
  assert.equal((await cli.tsvm("suspend", "page-vm")).code, 0);
  await page.locator("#vm-status", { hasText: "SUSPENDED" }).waitFor();
  await waitForPage(
    page,
    `document.querySelector('table[aria-label="Transition history"] tbody tr td:nth-child(3)')?.textContent === "SUSPENDED"`,
  );
  assert.deepEqual(await pageHistory(page), asRows((await describe()).history));
  assert.equal((await cli.tsvm("resume", "page-vm")).code, 0);
  await page.locator("#vm-status", { hasText: "RUNNING" }).waitFor();

  // The chart samples every 2 s while the VM runs: CPU % from the second sample on (the stand-in guest
  // counts no instructions, so its MIPS line stays flat; web-console-linux.test.ts sees real MIPS).
  await waitForPage(
    page,
    `document.querySelectorAll("polyline.cpu-line").length === 1 &&
    document.querySelector("polyline.cpu-line").getAttribute("points").trim().split(" ").length >= 3`,
  );
  assert.ok((await chartPoints(page, "cpu")) >= 3);
  assert.match((await page.locator(".chart-label").textContent()) ?? "", /^CPU \d+\.\d %, /);
  assert.match((await page.locator("svg.chart").getAttribute("aria-label")) ?? "", /^CPU \d+\.\d %/);
  assert.equal((await cli.tsvm("delete", "page-vm")).code, 0);
  await page.close();
});

test("a signed-in browser stays signed in across a daemon restart; only hashes are kept, 0600; signing out holds", async () => {
  const page = await signedInPage();
  const origin = new URL(page.url()).origin;
  const cookie = (await page.context().cookies()).find((c) => c.name.startsWith("tsvm_session_"));
  assert.ok(cookie, "the page holds a session cookie");
  assert.equal((await cli.tsvm("daemon", "stop")).code, 0);
  const recordPath = join(cli.home, "web-console.json");
  assert.equal((await stat(recordPath)).mode & 0o777, 0o600);
  const record = await readFile(recordPath, "utf8");
  assert.ok(!record.includes(cookie.value), "the session id is not in the record");
  assert.ok(record.includes(createHash("sha256").update(cookie.value).digest("hex")), "its hash is");
  assert.equal((await httpRequest(`${origin}/`).catch(() => null))?.status, undefined, "no daemon serves");

  // Any command starts the daemon again; the console is back on its address with the browser signed in.
  assert.equal((await cli.tsvm("create", "after-restart")).code, 0);
  await page.reload();
  await row(page, "after-restart").locator(".status", { hasText: "RUNNING" }).waitFor();
  const header = `${cookie.name}=${cookie.value}`;
  assert.equal((await httpRequest(`${origin}/v1/instances`, { headers: { cookie: header } })).status, 200);

  // Signing out ends the session for good: a restart does not bring it back.
  const out = await httpRequest(`${origin}/logout`, { method: "POST", headers: { cookie: header, origin } });
  assert.equal(out.status, 303);
  assert.equal((await cli.tsvm("daemon", "stop")).code, 0);
  assert.equal((await cli.tsvm("delete", "after-restart")).code, 0);
  const refused = await httpRequest(`${origin}/v1/instances`, { headers: { cookie: header } });
  assert.equal(refused.status, 401);
  assert.match(refused.body, /session is unknown to the daemon/);
  await page.close();
});

test("the list's memory, CPU % and uptime; stop, start and reset from the page as the CLI sees them; nothing from elsewhere", async () => {
  assert.equal((await cli.tsvm("create", "btn-vm", "--cpus", "2", "--memory", "512M")).code, 0);
  const page = await browser.newPage();
  const foreign: string[] = [];
  page.on("request", (r) => {
    if (!r.url().startsWith("http://127.0.0.1:")) foreign.push(r.url());
  });
  await page.goto((await webLoginUrl(cli)).href);
  const vm = row(page, "btn-vm");
  await vm.locator(".status", { hasText: "RUNNING" }).waitFor();
  assert.equal(await vm.locator("td[data-label=Memory]").textContent(), "512 MiB");
  // CPU % from the second stats sample (2 s apart); uptime counts from the VM's start.
  await vm.locator("td[data-label='CPU %']", { hasText: /^\d+\.\d$/ }).waitFor({ timeout: 60_000 });
  await vm.locator("td[data-label=Uptime]", { hasText: /\d/ }).waitFor();

  await vm.locator('[data-action="stop"]').click();
  await vm.locator(".status", { hasText: "TERMINATED" }).waitFor({ timeout: 60_000 });
  assert.equal(await cliStatus("btn-vm"), "TERMINATED");
  assert.equal(await vm.locator("td[data-label='CPU %']").textContent(), "-");
  await vm.locator('[data-action="start"]').click();
  await vm.locator(".status", { hasText: "RUNNING" }).waitFor({ timeout: 60_000 });
  assert.equal(await cliStatus("btn-vm"), "RUNNING");

  const resets = async () => {
    const r = await cli.tsvm("events", "btn-vm", "--format", "json");
    return r.stdout
      .trim()
      .split("\n")
      .filter((l) => l && (JSON.parse(l) as { type: string }).type === "reset").length;
  };
  const before = await resets();
  await vm.locator('[data-action="reset"]').click();
  await page.locator("#notice", { hasText: "btn-vm reset" }).waitFor();
  assert.equal(await resets(), before + 1, "the CLI's events show the page's reset");
  assert.deepEqual(foreign, [], "the page fetched nothing from another origin");
  assert.equal((await cli.tsvm("delete", "btn-vm")).code, 0);
  await page.close();
});

test("tsvm web opens the host's browser on the login URL when there is a display, and none on a headless host", async () => {
  const bin = await mkdtemp(join(tmpdir(), "tsvm-web-opener-"));
  try {
    const opened = join(bin, "opened");
    await writeFile(join(bin, "xdg-open"), `#!/bin/sh\nprintf '%s' "$1" > '${opened}'\n`, { mode: 0o755 });
    const run = (display: Record<string, string>) => {
      const env: Record<string, string | undefined> = {
        ...process.env,
        TSVM_HOME: cli.home,
        PATH: `${bin}:${process.env.PATH}`,
      };
      delete env.DISPLAY;
      delete env.WAYLAND_DISPLAY;
      return new Promise<{ code: number; stdout: string }>((resolve) => {
        execFile(
          join(ROOT, "bin/tsvm"),
          ["web", "--listen", "127.0.0.1:0"],
          { env: { ...env, ...display }, timeout: 120_000 },
          (e, stdout) => resolve({ code: e ? 1 : 0, stdout }),
        );
      });
    };
    const headless = await run({});
    assert.equal(headless.code, 0);
    await new Promise((r) => setTimeout(r, 1000));
    assert.equal(await stat(opened).catch(() => null), null, "no browser is opened without a display");
    const shown = await run({ DISPLAY: ":99" });
    assert.equal(shown.code, 0);
    const url = shown.stdout.trim();
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/login\?code=[0-9a-f]{32}$/);
    const deadline = Date.now() + 30_000;
    while ((await readFile(opened, "utf8").catch(() => "")) !== url) {
      assert.ok(Date.now() < deadline, "xdg-open was given the printed URL");
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    await rm(bin, { recursive: true, force: true });
  }
});

test("the serial console copies a selection with Ctrl+C and pastes with Ctrl+V; Ctrl+C alone reaches the guest", async () => {
  assert.equal((await cli.tsvm("create", "clip-vm")).code, 0);
  const context = await browser.newContext();
  const login = await webLoginUrl(cli);
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: login.origin });
  const page = await context.newPage();
  await page.goto(login.href);
  await page.waitForSelector("table.vms");
  await page.goto(`${login.origin}/vm/clip-vm`);
  await page.locator("#console-state", { hasText: /^connected$/ }).waitFor();
  const logs = async () => (await cli.tsvm("logs", "clip-vm")).stdout;
  await page.locator("#terminal").click();
  await page.keyboard.type("copy me");
  const line = page.locator(".xterm-rows > div", { hasText: "COPY ME" });
  await line.waitFor();

  // Nothing selected: Ctrl+C is the guest's interrupt (the stand-in guest echoes it back).
  const before = (await logs()).length;
  await page.keyboard.press("Control+c");
  for (const deadline = Date.now() + 30_000; !(await logs()).slice(before).includes("\u0003"); ) {
    assert.ok(Date.now() < deadline, "Ctrl+C reached the guest");
    await new Promise((r) => setTimeout(r, 200));
  }
  // A selection (dragged with the mouse over the line): Ctrl+C copies it, and the guest gets nothing.
  const box = (await line.boundingBox())!;
  await page.mouse.move(box.x + 1, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width - 2, box.y + box.height / 2, { steps: 5 });
  await page.mouse.up();
  const sent = (await logs()).length;
  await page.keyboard.press("Control+c");
  assert.equal(((await page.evaluate("navigator.clipboard.readText()")) as string).trim(), "COPY ME");
  // Ctrl+V pastes the clipboard into the guest.
  await page.evaluate(`navigator.clipboard.writeText(" and paste")`);
  await page.keyboard.press("Control+v");
  await page.locator(".xterm-rows > div", { hasText: "AND PASTE" }).waitFor();
  const after = (await logs()).slice(sent);
  assert.ok(
    after.includes(" AND PASTE") && !after.includes("\u0003") && !after.includes("\u0016"),
    JSON.stringify(after),
  );
  assert.equal((await cli.tsvm("delete", "clip-vm")).code, 0);
  await context.close();
});

test("create from the page with a machine type, or with vCPUs and memory, as the CLI then describes it", async () => {
  const page = await signedInPage();
  const type = page.locator("#new-type");
  const chosen = await type.locator("option").nth(1).getAttribute("value");
  assert.ok(chosen, "the form offers the API's machine types");
  await page.locator("#new-name").fill("typed-vm");
  await type.selectOption(chosen);
  await page.locator("form.create button[type=submit]").click();
  await row(page, "typed-vm").locator(".status", { hasText: "RUNNING" }).waitFor();
  await page.locator("#new-name").fill("sized-vm");
  await type.selectOption("");
  await page.locator("#new-cpus").fill("2");
  await page.locator("#new-memory").fill("384");
  await page.locator("form.create button[type=submit]").click();
  await row(page, "sized-vm").locator(".status", { hasText: "RUNNING" }).waitFor();
  const describe = async (name: string) =>
    JSON.parse((await cli.tsvm("describe", name, "--format", "json")).stdout) as {
      machineType: string;
      cpus: number;
      memoryMiB: number;
    };
  assert.equal((await describe("typed-vm")).machineType, chosen);
  const sized = await describe("sized-vm");
  assert.deepEqual([sized.cpus, sized.memoryMiB], [2, 384]);
  for (const name of ["typed-vm", "sized-vm"]) assert.equal((await cli.tsvm("delete", name)).code, 0);
  await page.close();
});
