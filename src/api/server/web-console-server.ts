// The web console's HTTP server (`tsvm web`): on a TCP address of its own it serves the console's built
// files, the parts registered in web-routes.ts, and the API itself, to browsers signed in with a one-time
// login code (web-logins.ts) and to clients with the API's bearer token. The page never sees the token:
// its calls carry the session cookie (HttpOnly, SameSite=Strict), and a WebSocket or changing request
// from a page of another origin is refused. Where it serves and who is signed in is kept in a record
// (web-console-record.ts), so that a restarted daemon serves it again and its browsers stay signed in.

import { readFile } from "node:fs/promises";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { isIP } from "node:net";
import { extname, join } from "node:path";
import type { Duplex } from "node:stream";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { HypervisorError } from "../../hypervisor/hypervisor-error.ts";
import { API_BASE, DEFAULT_WEB_LISTEN, type OpenWebConsoleRequest, type WebConsole } from "../types.ts";
import { type ApiServer, refuseUpgrade, sendError, toFailure } from "./api-server.ts";
import { ApiFailure } from "./validation.ts";
import { readWebConsoleRecord, writeWebConsoleRecord } from "./web-console-record.ts";
import { type SessionCheck, WebLogins } from "./web-logins.ts";
import { WEB_ROUTES, type WebRouteContext } from "./web-routes.ts";

export interface WebConsoleServerOptions {
  readonly hv: Hypervisor;
  readonly api: ApiServer;
  /** The directory of the built web files (scripts/build-web.ts), built on first use; throws if it cannot be. */
  readonly assets: () => Promise<string>;
  readonly sessionSeconds?: number;
  /** Where to keep the address and the logins' hashes (web-console-record.ts); absent: nothing is kept. */
  readonly recordPath?: string;
  readonly log?: (line: string) => void;
}

const CONTENT_TYPES: Readonly<Record<string, string>> = {
  ".html": "text/html; charset=utf-8",
  ".js": "text/javascript; charset=utf-8",
  ".css": "text/css; charset=utf-8",
  ".map": "application/json",
  ".txt": "text/plain; charset=utf-8",
  ".wasm": "application/wasm",
};

/** Paths the console's single page answers (the page routes itself from the path). */
const CONSOLE_PAGE = /^\/(?:|vm\/[^/]{1,100})$/;
/** Built files: one level under /assets/, plain names only (no way out of the directory). */
const ASSET = /^\/assets\/([A-Za-z0-9_-][A-Za-z0-9_.-]{0,100})$/;

/** Splits HOST:PORT ([v6]:PORT) into an IP literal or localhost and a port; one clear line when unusable. */
export function parseListenAddress(listen: string): { host: string; port: number } {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(listen);
  const host = m?.[1] ?? m?.[2];
  const port = Number(m?.[3]);
  if (!m || !host || port > 65535)
    throw new ApiFailure(400, "invalid-argument", `the address '${listen.slice(0, 80)}' is not HOST:PORT`);
  if (host !== "localhost" && isIP(host) === 0)
    throw new ApiFailure(
      400,
      "invalid-argument",
      `the host '${host.slice(0, 80)}' must be an IP address or localhost (no name lookups)`,
    );
  return { host, port };
}

export class WebConsoleServer {
  private logins: WebLogins;
  /** The record's writes, one after another (the last one written holds the newest logins). */
  private saving: Promise<void> = Promise.resolve();
  /** The logins' revision last handed to a write, and the address it was written with. */
  private savedRevision = -1;
  private savedAt: WebConsoleServer["bound"] = null;
  private server: Server | null = null;
  /** Where the running server listens, as asked and as bound. */
  private bound: { listen: string; host: string; port: number } | null = null;
  private assetsDir = "";
  /**
   * Upgraded connections (serial consoles, sessions): closeAllConnections no longer sees them, yet close()
   * waits for them, so that one open console page would hold a stopping daemon forever.
   */
  private readonly upgraded = new Set<Duplex>();

  constructor(private readonly options: WebConsoleServerOptions) {
    this.logins = new WebLogins(options.sessionSeconds);
  }

  /** Serves the console on `listen` (kept if served there already) and issues a new login code. */
  async open(request: OpenWebConsoleRequest): Promise<WebConsole> {
    const listen = request.listen ?? DEFAULT_WEB_LISTEN;
    const { host, port } = parseListenAddress(listen);
    try {
      this.assetsDir = await this.options.assets();
    } catch (e) {
      throw new HypervisorError("web-unavailable", (e as Error).message);
    }
    const b = this.bound;
    if (!b || b.host !== host || (port !== 0 && port !== b.port)) {
      const server = await this.listen(host, port);
      await this.close();
      this.server = server;
      const address = server.address();
      this.bound = { listen, host, port: typeof address === "object" && address ? address.port : port };
      this.options.log?.(`web console serving http://${urlHost(host)}:${this.bound.port}/`);
    }
    const { code, expiresAt } = this.logins.issueCode();
    await this.save();
    const url = `http://${urlHost(host)}:${this.bound!.port}/`;
    return {
      kind: "tsvm#webConsole",
      url,
      loginUrl: `${url}login?code=${code}`,
      codeExpiresAt: new Date(expiresAt).toISOString(),
      sessionSeconds: this.logins.sessionSeconds,
    };
  }

  /**
   * After a daemon restart: serves the console again where the record says it was, with its sign-ins.
   * Never throws: a console that cannot be served again is logged, and `tsvm web` serves it anew.
   */
  async reopen(): Promise<void> {
    const path = this.options.recordPath;
    if (!path) return;
    const log = this.options.log ?? (() => {});
    let record: Awaited<ReturnType<typeof readWebConsoleRecord>>;
    try {
      record = await readWebConsoleRecord(path);
    } catch (e) {
      log(`the web console is not served again: ${(e as Error).message}; run 'tsvm web' to serve it anew`);
      return;
    }
    if (!record) return;
    this.logins = new WebLogins(this.options.sessionSeconds, Date.now, record.logins);
    this.savedRevision = -1;
    try {
      this.assetsDir = await this.options.assets();
      this.server = await this.listen(record.host, record.port);
    } catch (e) {
      log(
        `the web console is not served again on ${urlHost(record.host)}:${record.port}: ${(e as Error).message}; run 'tsvm web' to serve it anew`,
      );
      return;
    }
    this.bound = { listen: record.listen, host: record.host, port: record.port };
    log(`web console serving http://${urlHost(record.host)}:${record.port}/ again, its sign-ins kept`);
  }

  /** Writes the record (after the writes before it); a failure is logged, the console goes on without. */
  private save(): Promise<void> {
    const path = this.options.recordPath;
    const b = this.bound;
    if (!path || !b || (this.logins.revision === this.savedRevision && this.savedAt === b))
      return this.saving;
    this.savedRevision = this.logins.revision;
    this.savedAt = b;
    this.saving = this.saving
      .then(() => writeWebConsoleRecord(path, { ...b, logins: this.logins.state() }))
      .catch((e) => this.options.log?.(`the web console's record was not written: ${(e as Error).message}`));
    return this.saving;
  }

  async close(): Promise<void> {
    const server = this.server;
    this.server = null;
    this.bound = null;
    if (!server) return;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
      for (const socket of this.upgraded) socket.destroy();
    });
  }

  private async listen(host: string, port: number): Promise<Server> {
    const server = createServer((req, res) => {
      this.handle(req, res).catch((e) => sendError(res, toFailure(e)));
    });
    server.on("upgrade", (req: IncomingMessage, socket: Duplex, head: Buffer) => {
      this.upgraded.add(socket);
      socket.once("close", () => this.upgraded.delete(socket));
      try {
        this.upgrade(req, socket, head);
      } catch (e) {
        refuseUpgrade(socket, toFailure(e));
      }
    });
    server.requestTimeout = 0; // the event stream is long on purpose
    server.headersTimeout = 30_000;
    await new Promise<void>((resolve, reject) => {
      server.once("error", (e: NodeJS.ErrnoException) =>
        reject(
          e.code === "EADDRINUSE"
            ? new HypervisorError("address-in-use", `${host}:${port} is in use by another program`)
            : new HypervisorError(
                "invalid-argument",
                `cannot serve the web console on ${host}:${port}: ${e.message}`,
              ),
        ),
      );
      server.listen(port, host, resolve);
    });
    return server;
  }

  /** The session cookie's name: cookies are per host, not per port, so two daemons' must differ. */
  private get cookieName(): string {
    return `tsvm_session_${this.bound?.port ?? 0}`;
  }

  private sessionOf(req: IncomingMessage): string | undefined {
    const prefix = `${this.cookieName}=`;
    for (const part of (req.headers.cookie ?? "").split(";")) {
      const p = part.trim();
      if (p.startsWith(prefix)) return p.slice(prefix.length);
    }
    return undefined;
  }

  /** Signed in by the session cookie, or by the API's token (scripts); else why not. */
  private authenticate(req: IncomingMessage): { by: "session" | "token" } | { problem: string } {
    const check: SessionCheck = this.logins.check(this.sessionOf(req));
    if (check.ok) return { by: "session" };
    if (req.headers.authorization !== undefined && this.options.api.hasToken(req)) return { by: "token" };
    return { problem: req.headers.authorization !== undefined ? "the bearer token is wrong" : check.problem };
  }

  /**
   * A browser sends Origin on WebSockets and changing requests; it must be this console's own. A page of
   * another site could not read the answer, but it could act (cross-site WebSocket hijacking, CSRF).
   */
  private checkOrigin(req: IncomingMessage, required: boolean): void {
    const origin = req.headers.origin;
    if (origin === undefined && !required) return;
    const own = `http://${req.headers.host ?? ""}`;
    if (origin !== own)
      throw new ApiFailure(
        403,
        "forbidden-origin",
        `refused: the request comes from a page of ${origin === undefined ? "no origin" : `'${origin.slice(0, 100)}'`}, not this console (${own.slice(0, 100)})`,
      );
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    securityHeaders(res);
    const url = new URL(req.url ?? "/", "http://tsvm");
    if (url.pathname === "/login") return this.login(req, res, url);
    if (url.pathname === "/logout" && req.method === "POST") {
      this.checkOrigin(req, true);
      this.logins.end(this.sessionOf(req));
      await this.save();
      res.writeHead(303, { location: "/", "set-cookie": this.cookie("", 0) });
      res.end();
      return;
    }
    const auth = this.authenticate(req);
    const api = url.pathname === API_BASE || url.pathname.startsWith(`${API_BASE}/`);
    if ("problem" in auth) {
      if (api) throw new ApiFailure(401, "unauthorized", auth.problem);
      return sendPage(res, 401, "Not signed in", auth.problem);
    }
    if (auth.by === "session" && req.method !== "GET" && req.method !== "HEAD") this.checkOrigin(req, true);
    if (api) return this.options.api.serveAuthenticated(req, res);
    const ctx: WebRouteContext = {
      hv: this.options.hv,
      assetsDir: this.assetsDir,
      sendAsset: (r, path) => this.sendAsset(r, path),
    };
    for (const route of WEB_ROUTES) {
      const hit =
        typeof route.path === "string" ? route.path === url.pathname : route.path.test(url.pathname);
      if (hit && route.method === req.method) return route.handle(req, res, url, ctx);
    }
    if (req.method !== "GET" && req.method !== "HEAD")
      throw new ApiFailure(
        405,
        "method-not-allowed",
        `${req.method} is not allowed on ${url.pathname.slice(0, 200)}`,
      );
    if (CONSOLE_PAGE.test(url.pathname)) return this.sendAsset(res, "index.html");
    const asset = ASSET.exec(url.pathname);
    if (asset) return this.sendAsset(res, asset[1]!);
    return sendPage(res, 404, "Not found", `there is no page at ${url.pathname.slice(0, 200)}`);
  }

  /** GET /login?code=…: exchanges a login code for a session cookie, then goes to the console. */
  private async login(req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
    if (req.method !== "GET") throw new ApiFailure(405, "method-not-allowed", "open the login URL with GET");
    const redeemed = this.logins.redeem(url.searchParams.get("code") ?? "");
    // Saved before the answer: a session the browser holds is one a restarted daemon knows.
    await this.save();
    if (!redeemed.ok) {
      sendPage(res, 401, "Login refused", redeemed.problem);
      return;
    }
    res.writeHead(303, {
      location: "/",
      "set-cookie": this.cookie(redeemed.session, this.logins.sessionSeconds),
    });
    res.end();
  }

  private cookie(value: string, maxAgeSeconds: number): string {
    return `${this.cookieName}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAgeSeconds}`;
  }

  private upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    const auth = this.authenticate(req);
    if ("problem" in auth) throw new ApiFailure(401, "unauthorized", auth.problem);
    // A browser always sends Origin on a WebSocket; a script with the token may send none.
    this.checkOrigin(req, auth.by === "session");
    this.options.api.upgradeAuthenticated(req, socket, head);
  }

  private async sendAsset(res: ServerResponse, relativePath: string): Promise<void> {
    if (relativePath.split("/").some((p) => p === ".." || p === ""))
      return sendPage(res, 404, "Not found", "no such file");
    let body: Buffer;
    try {
      body = await readFile(join(this.assetsDir, relativePath));
    } catch {
      return sendPage(res, 404, "Not found", `there is no file ${relativePath.slice(0, 200)}`);
    }
    res.writeHead(200, {
      "content-type": CONTENT_TYPES[extname(relativePath)] ?? "application/octet-stream",
      "content-length": body.length,
      "cache-control": "no-cache",
    });
    res.end(body);
  }
}

function urlHost(host: string): string {
  return isIP(host) === 6 ? `[${host}]` : host;
}

/** Headers on every answer: only this server's scripts run, nothing is framed, no URL leaks as a referrer. */
function securityHeaders(res: ServerResponse): void {
  res.setHeader(
    "content-security-policy",
    // xterm.js's DOM renderer writes <style> elements for its colours and cell sizes.
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
      "connect-src 'self'; worker-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
  );
  res.setHeader("x-content-type-options", "nosniff");
  res.setHeader("referrer-policy", "no-referrer");
  res.setHeader("x-frame-options", "DENY");
  res.setHeader("cache-control", "no-store");
}

/** Text made safe inside an element (never inside an attribute, which would need ' escaped too). */
const escapeHtml = (text: string): string => text.replace(/[&<>"]/g, (c) => `&#${c.charCodeAt(0)};`);

/** A small HTML answer saying what is wrong, in one line. */
function sendPage(res: ServerResponse, status: number, title: string, message: string): void {
  const body =
    `<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">` +
    `<title>tsvm: ${escapeHtml(title)}</title></head><body><h1>${escapeHtml(title)}</h1>` +
    `<p id="problem">${escapeHtml(message)}</p></body></html>`;
  res.writeHead(status, {
    "content-type": "text/html; charset=utf-8",
    "content-length": Buffer.byteLength(body),
  });
  res.end(body);
}
