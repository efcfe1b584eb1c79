// The machine in a browser tab (docs/machine-in-browser.md), in Debian's chromium: /machine fetches the
// default image from the server, boots it in a Web Worker to a shell prompt and runs a command typed into
// its xterm.js console.

import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { MachineTabRoutes } from "../../src/api/server/machine-tab-routes.ts";
import { ImageCacheCatalog } from "../../src/hypervisor/image-catalog.ts";
import { TabMachines } from "../../src/hypervisor/tab-machines.ts";
import { launchChromium, tabInfo, typeLine, waitForConsole } from "./machine-tab-page.ts";

/** The host may be loaded many times over: a boot that takes 3 s alone can take ten times that. */
const BOOT_MS = 240_000;

let server: Server;
let base: string;
let browser: Browser;

before(async () => {
  const routes = new MachineTabRoutes(new TabMachines(new ImageCacheCatalog(), "default"));
  server = createServer((req, res) => {
    void routes.handle(req, res, new URL(req.url ?? "/", "http://tab").pathname).then((handled) => {
      if (!handled) res.writeHead(404).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  base = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}`;
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  server?.close();
});

test("/machine boots the default image in the tab to a shell prompt and runs a command", {
  timeout: BOOT_MS + 60_000,
}, async () => {
  const page = await browser.newPage();
  await page.goto(`${base}/machine`);
  await waitForConsole(page, /~ #$/, BOOT_MS);
  const info = await tabInfo(page);
  assert.equal(info.image?.name, "default");
  assert.ok(info.bootMs && info.bootMs > 0, "the page timed its boot");
  await typeLine(page, "echo $((6 * 7)) $(uname -m)");
  await waitForConsole(page, /^42 riscv64$/m, 60_000);
  assert.match((await tabInfo(page)).status?.state ?? "", /running/);
  await page.close();
});

test("/machine names what is wrong with a request it cannot answer", async () => {
  const res = await fetch(`${base}/machine/image/passwd`);
  assert.equal(res.status, 404);
  const body = (await res.json()) as { error: { message: string } };
  assert.equal(body.error.message, "nothing at /machine/image/passwd");
  const post = await fetch(`${base}/machine/image`, { method: "POST" });
  assert.equal(post.status, 405);
});
