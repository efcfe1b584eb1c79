// The web console's sign-in: one-time login codes (printed by `tsvm web`, valid once and for a few
// minutes) exchanged for sessions (random ids held by the browser in an HttpOnly cookie) that expire.
// Only SHA-256 hashes of codes and session ids are kept, so that what is saved (web-console-record.ts,
// for a restarted daemon to keep its browsers signed in) signs nobody in if it is read.

import { createHash, randomBytes } from "node:crypto";

/** How long a login code printed by `tsvm web` may wait to be used. */
export const LOGIN_CODE_MS = 10 * 60_000;
/** The session's lifetime unless the daemon's config says otherwise (webSessionSeconds). */
export const DEFAULT_SESSION_SECONDS = 12 * 3600;
/** Bounds on what a stream of `tsvm web` calls or sign-ins can make this process keep. */
export const MAX_CODES = 64;
export const MAX_USED_CODES = MAX_CODES * 4;
export const MAX_SESSIONS = 1024;
/** An ended session is remembered this long, so that its browser is told it expired. */
const ENDED_KEPT_MS = 86_400_000;

export type SessionCheck = { ok: true } | { ok: false; problem: string };
export type Redeemed = { ok: true; session: string } | { ok: false; problem: string };

/** What a restarted daemon needs to go on: hashes (hex SHA-256) and when each stops working (ms). */
export interface WebLoginsState {
  readonly codes: ReadonlyArray<{ readonly hash: string; readonly expiresAt: number }>;
  readonly usedCodes: readonly string[];
  readonly sessions: ReadonlyArray<{ readonly hash: string; readonly endsAt: number }>;
}

const RUN_TSVM_WEB = "run 'tsvm web' on the host for a new login URL";

/**
 * A secret's hash: what is kept and looked up. Looking a hash up in a map tells, by its timing, nothing
 * that helps to guess a secret (its hash's first characters are no clue to it).
 */
const hashOf = (secret: string): string => createHash("sha256").update(secret).digest("hex");

export class WebLogins {
  /** Hashes of unused codes → when they stop working. */
  private readonly codes = new Map<string, number>();
  /** Hashes of codes already exchanged (so that a second use is told so), newest last. */
  private readonly used = new Set<string>();
  /** Hashes of session ids → when they end (kept a while after, so that the browser is told it expired). */
  private readonly sessions = new Map<string, number>();
  /** Counts the changes, so that a refusal that changed nothing needs no saving. */
  private changes = 0;

  constructor(
    readonly sessionSeconds = DEFAULT_SESSION_SECONDS,
    private readonly now: () => number = Date.now,
    saved?: WebLoginsState,
  ) {
    if (!saved) return;
    const now0 = now();
    for (const c of saved.codes) if (c.expiresAt > now0) this.codes.set(c.hash, c.expiresAt);
    for (const h of saved.usedCodes) this.used.add(h);
    for (const s of saved.sessions) if (s.endsAt >= now0 - ENDED_KEPT_MS) this.sessions.set(s.hash, s.endsAt);
    this.bound();
  }

  /** Grows with every change to what state() gives. */
  get revision(): number {
    return this.changes;
  }

  /** What to save for a restarted daemon: hashes only, never a code or a session id. */
  state(): WebLoginsState {
    return {
      codes: [...this.codes].map(([hash, expiresAt]) => ({ hash, expiresAt })),
      usedCodes: [...this.used],
      sessions: [...this.sessions].map(([hash, endsAt]) => ({ hash, endsAt })),
    };
  }

  /** A new one-time code and when it stops working. */
  issueCode(): { code: string; expiresAt: number } {
    const code = randomBytes(16).toString("hex");
    const expiresAt = this.now() + LOGIN_CODE_MS;
    this.codes.set(hashOf(code), expiresAt);
    this.changes++;
    this.bound();
    return { code, expiresAt };
  }

  /** Exchanges `code` for a new session; a wrong, used or expired code is refused, saying which. */
  redeem(code: string): Redeemed {
    if (!/^[0-9a-f]{32}$/.test(code))
      return { ok: false, problem: `this login code is not one 'tsvm web' printed; ${RUN_TSVM_WEB}` };
    const hash = hashOf(code);
    const expiresAt = this.codes.get(hash);
    if (expiresAt === undefined) {
      if (this.used.has(hash))
        return { ok: false, problem: `this login code was used already (each works once); ${RUN_TSVM_WEB}` };
      return { ok: false, problem: `this login code is wrong; ${RUN_TSVM_WEB}` };
    }
    this.codes.delete(hash);
    this.used.add(hash);
    this.changes++;
    if (expiresAt <= this.now()) {
      this.bound();
      return { ok: false, problem: `this login code expired (codes work for 10 minutes); ${RUN_TSVM_WEB}` };
    }
    const session = randomBytes(32).toString("hex");
    this.prune();
    this.sessions.set(hashOf(session), this.now() + this.sessionSeconds * 1000);
    this.bound();
    return { ok: true, session };
  }

  /** Whether `session` (a cookie's value, or undefined) is signed in now. */
  check(session: string | undefined): SessionCheck {
    if (session === undefined)
      return {
        ok: false,
        problem: `sign in first: open the login URL 'tsvm web' printed, or ${RUN_TSVM_WEB}`,
      };
    const endsAt = this.sessions.get(hashOf(session));
    if (endsAt === undefined)
      return { ok: false, problem: `this browser's session is unknown to the daemon; ${RUN_TSVM_WEB}` };
    if (endsAt <= this.now())
      return { ok: false, problem: `this browser's session expired; ${RUN_TSVM_WEB}` };
    return { ok: true };
  }

  /** Ends `session` (signing out); whether there was such a session. */
  end(session: string | undefined): boolean {
    const ended = session !== undefined && this.sessions.delete(hashOf(session));
    if (ended) this.changes++;
    return ended;
  }

  /** Drops sessions that ended a day ago. */
  private prune(): void {
    const cutoff = this.now() - ENDED_KEPT_MS;
    for (const [hash, endsAt] of this.sessions) if (endsAt < cutoff) this.sessions.delete(hash);
  }

  /** Drops the oldest codes, used codes and sessions while there are more than this process keeps. */
  private bound(): void {
    while (this.codes.size > MAX_CODES) this.codes.delete(this.codes.keys().next().value!);
    while (this.used.size > MAX_USED_CODES) this.used.delete(this.used.values().next().value!);
    while (this.sessions.size > MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
  }
}
