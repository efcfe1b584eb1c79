// The routes of the machine in a browser tab (docs/machine-in-browser.md), all under /machine: the page and
// its bundles, the image it boots (GET /machine/image, GET /machine/image/{firmware|kernel|initrd|disk}).
// Authentication is the server's: these run behind the same check as every other route.

import { createReadStream } from "node:fs";
import type { IncomingMessage, ServerResponse } from "node:http";
import { pipeline } from "node:stream/promises";
import {
  TAB_FILES,
  type TabFile,
  type TabFileSource,
  type TabMachines,
} from "../../hypervisor/tab-machines.ts";
import { sendError, toFailure } from "./api-server.ts";
import { machineTabAsset } from "./machine-tab-assets.ts";
import { ApiFailure } from "./validation.ts";

export const MACHINE_TAB_PREFIX = "/machine";

function sendJson(res: ServerResponse, value: unknown): void {
  const text = JSON.stringify(value);
  res.writeHead(200, {
    "content-type": "application/json",
    "content-length": Buffer.byteLength(text),
    "cache-control": "no-store",
  });
  res.end(text);
}

async function sendFile(res: ServerResponse, file: TabFileSource): Promise<void> {
  res.writeHead(200, {
    "content-type": "application/octet-stream",
    "content-length": file.size,
    "cache-control": "no-store",
  });
  // A client that goes away ends the read; the pipeline closes the file either way.
  await pipeline(createReadStream(file.path, { start: 0, end: Math.max(0, file.size - 1) }), res).catch(() =>
    res.destroy(),
  );
}

export class MachineTabRoutes {
  constructor(private readonly tab: TabMachines) {}

  /** Answers a request whose path is /machine or below it; returns false for any other path. */
  async handle(req: IncomingMessage, res: ServerResponse, pathname: string): Promise<boolean> {
    if (pathname !== MACHINE_TAB_PREFIX && !pathname.startsWith(`${MACHINE_TAB_PREFIX}/`)) return false;
    try {
      await this.route(req, res, pathname.slice(MACHINE_TAB_PREFIX.length));
    } catch (e) {
      sendError(res, toFailure(e));
    }
    return true;
  }

  private async route(req: IncomingMessage, res: ServerResponse, path: string): Promise<void> {
    const method = req.method ?? "GET";
    const parts = path.split("/").slice(1);
    if (method !== "GET")
      throw new ApiFailure(405, "method-not-allowed", `${method} is not allowed on /machine${path}`);
    if (path === "" || path === "/") return this.sendAsset(res, "");
    if (parts[0] === "image" && parts.length === 1) return sendJson(res, await this.tab.image());
    if (parts[0] === "image" && parts.length === 2 && (TAB_FILES as readonly string[]).includes(parts[1]!))
      return sendFile(res, await this.tab.imageFile(parts[1] as TabFile));
    if (parts.length === 1 && /^[a-z-]+\.(js|css)$/.test(parts[0]!)) return this.sendAsset(res, parts[0]!);
    throw new ApiFailure(404, "not-found", `nothing at /machine${path.slice(0, 200)}`);
  }

  private async sendAsset(res: ServerResponse, name: string): Promise<void> {
    const asset = await machineTabAsset(name);
    if (!asset) throw new ApiFailure(404, "not-found", `nothing at /machine/${name}`);
    res.writeHead(200, {
      "content-type": asset.type,
      "content-length": asset.body.length,
      "cache-control": "no-cache",
      // The worker compiles hot guest code with new Function (block-compiler.ts): it needs 'unsafe-eval'.
      "content-security-policy":
        "default-src 'self'; script-src 'self' 'unsafe-eval'; worker-src 'self'; style-src 'self' 'unsafe-inline'",
    });
    res.end(asset.body);
  }
}
