// The web console server's extra parts: each part (a page and the files or calls it needs) is a list of
// routes in a file of its own, registered below in one line. The console's own pages, its built files and
// the API are served by web-console-server.ts, which checks the session before any route here is reached.

import type { IncomingMessage, ServerResponse } from "node:http";
import type { Hypervisor } from "../../hypervisor/hypervisor.ts";
import { MACHINE_TAB_ROUTES } from "./machine-tab-routes.ts";

export interface WebRouteContext {
  readonly hv: Hypervisor;
  /** The built web files (dist/web/<stamp>/, scripts/build-web.ts): where a part's bundle and pages are. */
  readonly assetsDir: string;
  /** Answers with the built file at `relativePath` (a page or bundle), with its content type; 404 if none. */
  sendAsset(res: ServerResponse, relativePath: string): Promise<void>;
}

export interface WebRoute {
  readonly method: "GET" | "HEAD" | "POST" | "PUT" | "DELETE";
  /** The path, exactly, or a pattern the whole path must match. */
  readonly path: string | RegExp;
  /** Answers the request (errors thrown are answered as the API's error bodies). */
  handle(req: IncomingMessage, res: ServerResponse, url: URL, ctx: WebRouteContext): Promise<void>;
}

/** Every part's routes, in the order they are matched (one line per part). */
export const WEB_ROUTES: readonly WebRoute[] = [...MACHINE_TAB_ROUTES];
