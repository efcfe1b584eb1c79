// The web console's record in the data directory (web-console.json): where it was served and the hashes
// of its login codes and sessions with their expiry, so that a restarted daemon serves it again on the same
// address and its browsers stay signed in. Written atomically, readable by the daemon's user only (0600);
// it holds hashes, never a code or a session id. A record out of shape is ignored, saying so.

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { writeFileAtomic } from "../../hypervisor/store.ts";
import { MAX_CODES, MAX_SESSIONS, MAX_USED_CODES, type WebLoginsState } from "./web-logins.ts";

export const WEB_CONSOLE_RECORD_MAGIC = "tsvm-web-console";
export const WEB_CONSOLE_RECORD_VERSION = 1;

export interface WebConsoleRecord {
  /** The address as asked (`tsvm web --listen`), and the host and port it was bound to. */
  readonly listen: string;
  readonly host: string;
  readonly port: number;
  readonly logins: WebLoginsState;
}

export const webConsoleRecordPath = (home: string): string => join(home, "web-console.json");

export async function writeWebConsoleRecord(path: string, record: WebConsoleRecord): Promise<void> {
  const file = { magic: WEB_CONSOLE_RECORD_MAGIC, version: WEB_CONSOLE_RECORD_VERSION, ...record };
  await writeFileAtomic(path, `${JSON.stringify(file)}\n`, 0o600);
}

/** The record at `path`: null when there is none; throws one line saying what is wrong with a bad one. */
export async function readWebConsoleRecord(path: string): Promise<WebConsoleRecord | null> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw e;
  }
  let f: unknown;
  try {
    f = JSON.parse(text);
  } catch {
    throw new Error(`${path} is not JSON`);
  }
  const bad = (what: string) => new Error(`${path} is not a web console record: ${what}`);
  if (!isObject(f) || f.magic !== WEB_CONSOLE_RECORD_MAGIC) throw bad("no magic");
  if (f.version !== WEB_CONSOLE_RECORD_VERSION) throw bad(`version ${String(f.version)} is unknown`);
  if (
    typeof f.listen !== "string" ||
    typeof f.host !== "string" ||
    f.listen.length > 300 ||
    f.host.length > 300
  )
    throw bad("no address");
  if (!Number.isInteger(f.port) || (f.port as number) < 1 || (f.port as number) > 65535) throw bad("no port");
  const l = f.logins;
  if (!isObject(l)) throw bad("no logins");
  const codes = timedHashes(l.codes, "expiresAt", MAX_CODES);
  const sessions = timedHashes(l.sessions, "endsAt", MAX_SESSIONS);
  const used = l.usedCodes;
  if (
    codes === null ||
    sessions === null ||
    !Array.isArray(used) ||
    used.length > MAX_USED_CODES ||
    !used.every(isHash)
  )
    throw bad("its codes or sessions are out of shape");
  return {
    listen: f.listen,
    host: f.host,
    port: f.port as number,
    logins: {
      codes: codes.map((c) => ({ hash: c.hash, expiresAt: c.at })),
      usedCodes: used as string[],
      sessions: sessions.map((s) => ({ hash: s.hash, endsAt: s.at })),
    },
  };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

const isHash = (v: unknown): v is string => typeof v === "string" && /^[0-9a-f]{64}$/.test(v);

/** `[{hash, <timeKey>}]` with at most `max` entries, or null when it is not. */
function timedHashes(v: unknown, timeKey: string, max: number): Array<{ hash: string; at: number }> | null {
  if (!Array.isArray(v) || v.length > max) return null;
  const out: Array<{ hash: string; at: number }> = [];
  for (const e of v) {
    if (!isObject(e) || !isHash(e.hash) || !Number.isSafeInteger(e[timeKey])) return null;
    out.push({ hash: e.hash, at: e[timeKey] as number });
  }
  return out;
}
