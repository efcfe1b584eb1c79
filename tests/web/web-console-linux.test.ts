// The web console with a real Linux guest, in a real browser: the URL `tsvm web` printed signs chromium
// in, the VM created by the CLI is listed as RUNNING, and its serial console in xterm.js runs a command
// typed into the page, and its page's chart shows the guest's MIPS. One boot.

import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { BOOT_TIMEOUT_MS, linuxVmFixture, noImage } from "../integration/linux-vm-fixture.ts";
import { chartPoints, launchChromium, pageDetails, waitForPage, webLoginUrl } from "./web-console-fixture.ts";

let browser: Browser | undefined;
before(async () => {
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
});

test("a Linux VM made by the CLI is listed RUNNING, its console in the page runs uname -m, its chart shows MIPS", {
  skip: noImage,
  timeout: BOOT_TIMEOUT_MS + 300_000,
}, async () => {
  const fx = await linuxVmFixture("web-linux");
  const created = await fx.tsvm("create", "web-linux");
  assert.equal(created.code, 0, created.stderr);
  const page = await browser!.newPage();
  await page.goto((await webLoginUrl(fx)).href);
  const row = page.locator('tr[data-vm="web-linux"]');
  await row.locator(".status", { hasText: "RUNNING" }).waitFor();
  await fx.prompts("web-linux", 1);

  await row.locator("a").click();
  await page.waitForURL(/\/vm\/web-linux$/);
  await page.locator("#console-state", { hasText: /^connected$/ }).waitFor();
  const rows = page.locator(".xterm-rows");
  await rows.scrollIntoViewIfNeeded();
  await page.locator("#terminal").click();
  // The echo of the command contains "uname -m"; the answer is a line of its own.
  await page.keyboard.type("uname -m\n");
  await rows
    .locator("div", { hasText: /^riscv64\s*$/ })
    .first()
    .waitFor({ timeout: 120_000 });
  assert.match((await rows.textContent()) ?? "", /uname -m.*riscv64/s);

  // A busy guest: the chart's samples (every 2 s) show its instructions per second beside the VMM's CPU %.
  await page.keyboard.type("while :; do :; done &\n");
  const details = await pageDetails(page);
  assert.equal(details.Engine, "riscv");
  assert.equal(details.Image, "default");
  await waitForPage(
    page,
    `/^CPU \\d+\\.\\d %, (?!0\\.0 )\\d+\\.\\d MIPS$/.test(document.querySelector(".chart-label").textContent)`,
    120_000,
  );
  assert.ok((await chartPoints(page, "mips")) >= 2);
  const label = (await page.locator(".chart-label").textContent()) ?? "";
  process.stderr.write(`the VM page's chart: ${label}\n`);
  await page.close();
});
