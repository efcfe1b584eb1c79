// The shapes of the web console's API: the request that makes the daemon serve it on an address, and the
// answer carrying the one-time login URL.

import { type Static, Type } from "@sinclair/typebox";

/** Where the console listens unless told otherwise. */
export const DEFAULT_WEB_LISTEN = "127.0.0.1:8090";

export const OpenWebConsoleRequest = Type.Object(
  {
    listen: Type.Optional(
      Type.String({
        minLength: 3,
        maxLength: 300,
        description: `HOST:PORT the console is served on (default ${DEFAULT_WEB_LISTEN}; port 0: any free port). An address it is served on already is kept; another replaces it.`,
      }),
    ),
  },
  { $id: "OpenWebConsoleRequest", additionalProperties: false },
);
export type OpenWebConsoleRequest = Static<typeof OpenWebConsoleRequest>;

export const WebConsole = Type.Object(
  {
    kind: Type.Literal("tsvm#webConsole"),
    url: Type.String({ description: "The console's address (http://HOST:PORT/)." }),
    loginUrl: Type.String({
      description:
        "The console's address with a new one-time login code: opening it signs a browser in (an HttpOnly session cookie); the code works once.",
    }),
    codeExpiresAt: Type.String({ format: "date-time", maxLength: 40 }),
    sessionSeconds: Type.Integer({
      minimum: 1,
      description: "How long a signed-in browser's session lasts.",
    }),
  },
  { $id: "WebConsole", additionalProperties: false },
);
export type WebConsole = Static<typeof WebConsole>;
