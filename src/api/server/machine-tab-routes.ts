// The routes of the machine in a browser tab (docs/machine-in-browser.md), registered in web-routes.ts and
// so served behind the web console's sign-in: the page (/machine) and its worker script, the default image
// it boots, and a SUSPENDED VM's machine, boot files, disk and state for the tab, and the tab's state taken
// back into that VM.

import { createReadStream } from "node:fs";
import { readFile } from "node:fs/promises";
import type { IncomingMessage, ServerResponse } from "node:http";
import { join } from "node:path";
import { Readable } from "node:stream";
import { pipeline } from "node:stream/promises";
import type { TabFile, TabFileSource } from "../../hypervisor/tab-machines.ts";
import { takeTabState } from "../../hypervisor/tab-state-upload.ts";
import { ApiFailure } from "./validation.ts";
import type { WebRoute, WebRouteContext } from "./web-routes.ts";

/** The machine worker's bundle (scripts/build-web.ts). */
const WORKER_ASSET = "machine-worker.js";

function sendJson(res: ServerResponse, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sendBytes(res: ServerResponse, size: number, bytes: AsyncIterable<Uint8Array>): Promise<void> {
  res.writeHead(200, { "content-type": "application/octet-stream", "content-length": size });
  // A client that goes away ends the read (and so the hold on the VM); the pipeline closes the source.
  return pipeline(Readable.from(bytes), res).catch(() => {
    res.destroy();
  });
}

function sendFile(res: ServerResponse, file: TabFileSource): Promise<void> {
  return sendBytes(
    res,
    file.size,
    createReadStream(file.path, { start: 0, end: Math.max(0, file.size - 1) }),
  );
}

function vmName(url: URL): string {
  const raw = url.pathname.split("/")[3] ?? "";
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new ApiFailure(400, "invalid-name", "the VM name in the path is not valid percent-encoding");
  }
}

const last = (url: URL): string => url.pathname.slice(url.pathname.lastIndexOf("/") + 1);

const BOOT_FILE = "(firmware|kernel|initrd)";

export const MACHINE_TAB_ROUTES: readonly WebRoute[] = [
  {
    method: "GET",
    path: "/machine",
    handle: (_req, res, _url, ctx) => ctx.sendAsset(res, "machine.html"),
  },
  {
    // The worker compiles hot guest code with new Function (block-compiler.ts): its script, and only it,
    // may evaluate code.
    method: "GET",
    path: `/assets/${WORKER_ASSET}`,
    async handle(_req: IncomingMessage, res: ServerResponse, _url: URL, ctx: WebRouteContext) {
      const body = await readFile(join(ctx.assetsDir, WORKER_ASSET)).catch(() => {
        throw new ApiFailure(404, "not-found", `there is no file ${WORKER_ASSET}`);
      });
      res.setHeader("content-security-policy", "default-src 'self'; script-src 'self' 'unsafe-eval'");
      res.writeHead(200, { "content-type": "text/javascript; charset=utf-8", "content-length": body.length });
      res.end(body);
    },
  },
  {
    method: "GET",
    path: "/machine/image",
    handle: async (_req, res, _url, ctx) => sendJson(res, await ctx.hv.tab.image()),
  },
  {
    method: "GET",
    path: /^\/machine\/image\/(firmware|kernel|initrd|disk)$/,
    handle: async (_req, res, url, ctx) => sendFile(res, await ctx.hv.tab.imageFile(last(url) as TabFile)),
  },
  {
    method: "GET",
    path: /^\/machine\/vms\/[^/]{1,200}$/,
    handle: async (_req, res, url, ctx) => sendJson(res, await ctx.hv.tab.vm(vmName(url))),
  },
  {
    method: "GET",
    path: new RegExp(`^/machine/vms/[^/]{1,200}/${BOOT_FILE}$`),
    handle: (_req, res, url, ctx) =>
      ctx.hv.tab.vmBootFile(vmName(url), last(url) as Exclude<TabFile, "disk">, (file) =>
        sendFile(res, file),
      ),
  },
  {
    method: "GET",
    path: /^\/machine\/vms\/[^/]{1,200}\/disk$/,
    handle: (_req, res, url, ctx) =>
      ctx.hv.tab.vmDisk(vmName(url), (size, bytes) => sendBytes(res, size, bytes)),
  },
  {
    method: "GET",
    path: /^\/machine\/vms\/[^/]{1,200}\/state\/[^/]{1,100}$/,
    handle: (_req, res, url, ctx) =>
      ctx.hv.tab.vmStateFile(vmName(url), last(url), (file) => sendFile(res, file)),
  },
  {
    method: "PUT",
    path: /^\/machine\/vms\/[^/]{1,200}\/state$/,
    handle: async (req, res, url, ctx) => sendJson(res, await takeTabState(ctx.hv.tab, vmName(url), req)),
  },
];
