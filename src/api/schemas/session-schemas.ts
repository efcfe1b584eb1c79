// The messages of an agent session over WebSocket (GET /v1/instances/{name}/sessions): binary messages
// carry bytes behind a 1-byte channel (SESSION_CHANNEL), text messages carry these JSON controls.

import { type Static, Type } from "@sinclair/typebox";

/** The first byte of every binary message of a session: which stream its other bytes belong to. */
export const SESSION_CHANNEL = { stdin: 0, stdout: 1, stderr: 2 } as const;
/** Longest command a session runs (UTF-8 bytes): it travels in the request's URL. */
export const MAX_SESSION_COMMAND_BYTES = 8192;
/** Largest terminal side a session may ask for (the kernel's winsize fields are 16-bit). */
export const MAX_TERMINAL_CELLS = 65535;
/** Largest message a session's client may send (stdin comes in pieces of any size up to this). */
export const MAX_SESSION_MESSAGE_BYTES = 256 * 1024;

const Cells = (what: string) => Type.Integer({ minimum: 1, maximum: MAX_TERMINAL_CELLS, description: what });

export const SessionControl = Type.Union(
  [
    Type.Object(
      { type: Type.Literal("resize"), cols: Cells("Columns."), rows: Cells("Rows.") },
      { additionalProperties: false, description: "The terminal's new size (tty sessions)." },
    ),
    Type.Object(
      {
        type: Type.Literal("signal"),
        signal: Type.Integer({ minimum: 1, maximum: 64, description: "A Linux signal number (2 = SIGINT)." }),
      },
      {
        additionalProperties: false,
        description: "A signal to the session's foreground process group (tty) or its process group (pipes).",
      },
    ),
    Type.Object(
      { type: Type.Literal("eof") },
      {
        additionalProperties: false,
        description: "No more stdin: pipes see end of file; a terminal gets its EOF character (Ctrl-D).",
      },
    ),
  ],
  { $id: "SessionControl", description: "A text message a session's client sends." },
);
export type SessionControl = Static<typeof SessionControl>;

export const SessionEvent = Type.Union(
  [
    Type.Object(
      {
        type: Type.Literal("exit"),
        exitCode: Type.Integer({
          minimum: 0,
          maximum: 255,
          description: "0-255; 128+N when signal N ended it.",
        }),
      },
      {
        additionalProperties: false,
        description: "The session ended; the connection closes (1000) after it.",
      },
    ),
    Type.Object(
      {
        type: Type.Literal("error"),
        code: Type.String({ description: "An error code of the API (the table in docs/hypervisor.md)." }),
        message: Type.String(),
      },
      {
        additionalProperties: false,
        description: "The session failed after it opened; the connection closes.",
      },
    ),
  ],
  { $id: "SessionEvent", description: "A text message the daemon sends a session's client." },
);
export type SessionEvent = Static<typeof SessionEvent>;
