// The machine in a browser tab (docs/machine-in-browser.md), in Debian's chromium against a real daemon's
// web console: /machine boots the default image in a Web Worker to a shell prompt and runs a command; a
// SUSPENDED VM's state resumes in the tab with its counting loop going on, the tab saves its state back, and
// `tsvm resume` continues it on the server with the count still going up and the tab's disk writes there.
// Offers the server must refuse (not a tab's state, another image's) change nothing; a save the server
// refuses leaves the tab's machine running, and a saved one can be resumed in the tab too.

import assert from "node:assert/strict";
import { readdir, readFile } from "node:fs/promises";
import { join } from "node:path";
import { before, after, test } from "node:test";
import type { Browser, BrowserContext, Page } from "playwright-core";
import { linuxVmFixture, noImage } from "../integration/linux-vm-fixture.ts";
import { consoleText, launchChromium, tabInfo, typeLine, waitForConsole } from "./machine-tab-page.ts";

/** The host may be loaded many times over: a boot that takes 3 s alone can take ten times that. */
const BOOT_MS = 300_000;

const fx = await linuxVmFixture("tab");
let browser: Browser;
let context: BrowserContext;
let base: string;

before(async () => {
  if (noImage) return;
  const web = await fx.tsvm("web", "--listen", "127.0.0.1:0", "--no-open", "--format", "json");
  assert.equal(web.code, 0, web.stderr);
  const { url, loginUrl } = JSON.parse(web.stdout) as { url: string; loginUrl: string };
  base = url.replace(/\/$/, "");
  browser = await launchChromium();
  context = await browser.newContext();
  // Signing in sets the session cookie every later page and fetch of this context carries.
  await (await context.newPage()).goto(loginUrl);
});

after(async () => {
  await browser?.close();
});

/** The count the guest's loop last wrote, read by typing into the tab's console. */
async function tabCount(page: Page): Promise<number> {
  const mark = `n${Date.now() % 100000}`;
  await typeLine(page, `echo ${mark}=$(cat /tmp/count)`);
  const text = await waitForConsole(page, new RegExp(`^${mark}=\\d+$`, "m"), 120_000);
  return Number(new RegExp(`^${mark}=(\\d+)$`, "m").exec(text)![1]);
}

async function serverCount(vm: string): Promise<number> {
  return Number((await fx.exec(vm, "cat /tmp/count")).trim());
}

test("/machine boots the default image in the tab to a shell prompt and runs a command", {
  skip: noImage,
  timeout: BOOT_MS + 120_000,
}, async () => {
  const page = await context.newPage();
  await page.goto(`${base}/machine`);
  await waitForConsole(page, /~ #$/, BOOT_MS);
  const info = await tabInfo(page);
  assert.equal(info.image?.name, "default");
  assert.ok(info.bootMs && info.bootMs > 0, "the page timed its boot");
  await typeLine(page, "echo $((6 * 7)) $(uname -m)");
  await waitForConsole(page, /^42 riscv64$/m, 120_000);
  assert.equal((await tabInfo(page)).status?.state, "running");
  process.stderr.write(
    `tab boot: ${(info.bootMs! / 1000).toFixed(2)} s to the prompt, files fetched in ${(info.fetchMs! / 1000).toFixed(2)} s\n`,
  );
  await page.close();
});

test("a SUSPENDED VM's state resumes in the tab and the tab's state resumes on the server, its loop counting on", {
  skip: noImage,
  timeout: 3 * BOOT_MS,
}, async () => {
  const vm = "mig";
  const created = await fx.tsvm("create", vm, "--memory", "128M");
  assert.equal(created.code, 0, created.stderr);
  await fx.booted(vm);
  await fx.exec(
    vm,
    "setsid sh -c 'i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.2; done' </dev/null >/dev/null 2>&1 &",
  );
  await new Promise((r) => setTimeout(r, 1500));
  const onServer = await serverCount(vm);
  assert.ok(onServer > 0, "the loop counts on the server");
  assert.equal((await fx.tsvm("suspend", vm)).code, 0);
  const stateDir = join(fx.home, "vms", vm, "state");
  const manifestBefore = await readFile(join(stateDir, "manifest.json"), "utf8");

  // Offers that are refused change nothing.
  const put = (body: Buffer) =>
    context.request.put(`${base}/machine/vms/${vm}/state`, { data: body, headers: { origin: base } });
  const notTab = await put(Buffer.from("not a state at all"));
  assert.equal(notTab.status(), 400);
  assert.match(
    (await notTab.json()).error.message,
    /it does not start with TSVMTAB1: it is not a state from a tab; nothing was changed/,
  );
  const header = Buffer.from(
    JSON.stringify({
      image: "0123456789abcdef",
      base: { kind: "image" },
      manifest: JSON.parse(manifestBefore),
      disk: [],
    }),
  );
  const length = Buffer.alloc(4);
  length.writeUInt32LE(header.length);
  const otherImage = await put(Buffer.concat([Buffer.from("TSVMTAB1"), length, header]));
  assert.equal(otherImage.status(), 400);
  assert.match(
    (await otherImage.json()).error.message,
    /booted from other boot files \(image 0123456789abcdef\).*nothing was changed/,
  );
  assert.equal(await readFile(join(stateDir, "manifest.json"), "utf8"), manifestBefore);
  assert.deepEqual(
    (await readdir(join(fx.home, "vms", vm))).filter((f) => f.startsWith(".tmp-")),
    [],
  );

  // Server → tab: the loop goes on from where it was.
  const page = await context.newPage();
  await page.goto(`${base}/machine?vm=${vm}`);
  await page.waitForFunction(
    () => {
      const m = (globalThis as unknown as { tsvmMachine: { status?: { state: string }; error?: string } })
        .tsvmMachine;
      return m.status?.state === "running" || m.error !== undefined;
    },
    null,
    { timeout: 120_000 },
  );
  const resumedInTab = await tabInfo(page);
  assert.equal(resumedInTab.error, undefined, `the tab did not resume the state: ${resumedInTab.error}`);
  const inTab = await tabCount(page);
  assert.ok(inTab >= onServer, `the tab's count ${inTab} goes on from the server's ${onServer}`);
  await typeLine(page, "echo from-the-tab > /root/tab.txt; sync; sleep 2");
  const later = await tabCount(page);
  assert.ok(later > inTab, `the loop counts in the tab (${inTab}, then ${later})`);

  // A save the server refuses: the tab's machine goes on running, nothing lost.
  await page.locator("#vm-name").fill("no-such-vm");
  await page.locator("#save").click();
  await page.waitForFunction(
    () => (globalThis as unknown as { tsvmMachine: { error?: string } }).tsvmMachine.error,
    null,
    { timeout: 120_000 },
  );
  assert.match((await tabInfo(page)).error ?? "", /no-such-vm.*\(the machine goes on in this tab\)$/);
  await page.waitForFunction(
    () =>
      (globalThis as unknown as { tsvmMachine: { status?: { state: string } } }).tsvmMachine.status?.state ===
      "running",
    null,
    { timeout: 60_000 },
  );

  // Tab → server.
  await page.locator("#vm-name").fill(vm);
  await page.locator("#save").click();
  await page.waitForFunction(
    () =>
      (globalThis as unknown as { tsvmMachine: { saved?: string; error?: string } }).tsvmMachine.saved ??
      (globalThis as unknown as { tsvmMachine: { error?: string } }).tsvmMachine.error,
    null,
    { timeout: 120_000 },
  );
  const saved = await tabInfo(page);
  assert.equal(
    saved.error,
    undefined,
    `the save failed: ${saved.error}; console:\n${(await consoleText(page)).slice(-400)}`,
  );
  assert.equal((await tabInfo(page)).status?.state, "paused");
  // The tab's copy may run on too ("Resume here"); the VM on the server keeps the state it was sent.
  await page.locator("#resume").click();
  const tabAfterSave = await tabCount(page);
  assert.ok(tabAfterSave >= later, `the tab's copy counts on (${later}, then ${tabAfterSave})`);
  await page.close();
  assert.equal((await fx.tsvm("resume", vm)).code, 0);
  const resumed = await serverCount(vm);
  assert.ok(resumed >= later, `the server's count ${resumed} goes on from the tab's ${later}`);
  assert.equal((await fx.exec(vm, "cat /root/tab.txt")).trim(), "from-the-tab");
  await new Promise((r) => setTimeout(r, 1500));
  assert.ok((await serverCount(vm)) > resumed, "the loop counts on the server again");
});
