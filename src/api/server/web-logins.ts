// The web console's sign-in: one-time login codes (printed by `tsvm web`, valid once and for a few
// minutes) exchanged for sessions (random ids held by the browser in an HttpOnly cookie) that expire.
// Nothing here is persisted: a restarted daemon signs everyone out.

import { randomBytes, timingSafeEqual } from "node:crypto";

/** How long a login code printed by `tsvm web` may wait to be used. */
export const LOGIN_CODE_MS = 10 * 60_000;
/** The session's lifetime unless the daemon's config says otherwise (webSessionSeconds). */
export const DEFAULT_SESSION_SECONDS = 12 * 3600;
/** Bounds on what a stream of `tsvm web` calls or sign-ins can make this process keep. */
const MAX_CODES = 64;
const MAX_SESSIONS = 1024;

export type SessionCheck = { ok: true } | { ok: false; problem: string };
export type Redeemed = { ok: true; session: string } | { ok: false; problem: string };

const RUN_TSVM_WEB = "run 'tsvm web' on the host for a new login URL";

export class WebLogins {
  /** Unused codes → when they stop working. */
  private readonly codes = new Map<string, number>();
  /** Codes already exchanged (so that a second use is told so), newest last. */
  private readonly used = new Set<string>();
  /** Session id → when it ends (kept a while after, so that its browser is told it expired). */
  private readonly sessions = new Map<string, number>();

  constructor(
    readonly sessionSeconds = DEFAULT_SESSION_SECONDS,
    private readonly now: () => number = Date.now,
  ) {}

  /** A new one-time code and when it stops working. */
  issueCode(): { code: string; expiresAt: number } {
    const code = randomBytes(16).toString("hex");
    const expiresAt = this.now() + LOGIN_CODE_MS;
    this.codes.set(code, expiresAt);
    while (this.codes.size > MAX_CODES) this.codes.delete(this.codes.keys().next().value!);
    return { code, expiresAt };
  }

  /** Exchanges `code` for a new session; a wrong, used or expired code is refused, saying which. */
  redeem(code: string): Redeemed {
    if (!/^[0-9a-f]{32}$/.test(code))
      return { ok: false, problem: `this login code is not one 'tsvm web' printed; ${RUN_TSVM_WEB}` };
    const expiresAt = this.find(this.codes, code);
    if (expiresAt === undefined) {
      if (this.used.has(code))
        return { ok: false, problem: `this login code was used already (each works once); ${RUN_TSVM_WEB}` };
      return { ok: false, problem: `this login code is wrong; ${RUN_TSVM_WEB}` };
    }
    this.codes.delete(code);
    this.used.add(code);
    while (this.used.size > MAX_CODES * 4) this.used.delete(this.used.values().next().value!);
    if (expiresAt <= this.now())
      return { ok: false, problem: `this login code expired (codes work for 10 minutes); ${RUN_TSVM_WEB}` };
    const session = randomBytes(32).toString("hex");
    this.prune();
    this.sessions.set(session, this.now() + this.sessionSeconds * 1000);
    return { ok: true, session };
  }

  /** Whether `session` (a cookie's value, or undefined) is signed in now. */
  check(session: string | undefined): SessionCheck {
    if (session === undefined)
      return {
        ok: false,
        problem: `sign in first: open the login URL 'tsvm web' printed, or ${RUN_TSVM_WEB}`,
      };
    const endsAt = this.find(this.sessions, session);
    if (endsAt === undefined)
      return { ok: false, problem: `this browser's session is unknown to the daemon; ${RUN_TSVM_WEB}` };
    if (endsAt <= this.now())
      return { ok: false, problem: `this browser's session expired; ${RUN_TSVM_WEB}` };
    return { ok: true };
  }

  /** Ends `session` (signing out). */
  end(session: string | undefined): void {
    if (session !== undefined) this.sessions.delete(session);
  }

  /** Looks `key` up comparing in constant time, so that timing tells nothing of the secrets kept. */
  private find(map: ReadonlyMap<string, number>, key: string): number | undefined {
    const given = Buffer.from(key);
    let found: number | undefined;
    for (const [k, v] of map) {
      const known = Buffer.from(k);
      if (known.length === given.length && timingSafeEqual(known, given)) found = v;
    }
    return found;
  }

  /** Drops sessions that ended a day ago, then the oldest while there are too many. */
  private prune(): void {
    const cutoff = this.now() - 86_400_000;
    for (const [id, endsAt] of this.sessions) if (endsAt < cutoff) this.sessions.delete(id);
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
  }
}
