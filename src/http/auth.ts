/**
 * Who may use the console and the API (issue 14 item 4): console sessions (admin login with the
 * store's scrypt passwords), their CSRF tokens, and API bearer tokens.
 *
 * Invariants:
 * - A session id and a CSRF token are 32 random bytes (base64url); sessions live in memory only
 *   (a restart logs everyone out), end after `http.sessionIdleMs` without a request, and are at
 *   most MAX_SESSIONS (the oldest is dropped first): memory stays bounded.
 * - Only users with `users.admin` may log in; a wrong password and a non-admin get the same answer.
 * - A request authenticated by the session cookie that changes state (not GET/HEAD/OPTIONS) must
 *   carry the session's CSRF token (`X-CSRF-Token` header or `_csrf` form field); a bearer token
 *   request needs none (a browser never adds an Authorization header on its own).
 * - Failed logins are slowed per client address (the SMTP AUTH limiter's idea): a delay that
 *   doubles with each failure within the window, capped; the table of clients is bounded.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { Context, MiddlewareHandler } from 'hono';
import { getCookie } from 'hono/cookie';
import type { HttpContext, HttpEnv, Principal } from './context.js';

export const SESSION_COOKIE = 'postseal_session';
export const CSRF_HEADER = 'X-CSRF-Token';
export const CSRF_FIELD = '_csrf';
const MAX_SESSIONS = 10_000;

export interface Session {
  id: string;
  address: string;
  csrf: string;
  lastSeen: number;
}

function secret(): string {
  return randomBytes(32).toString('base64url');
}

function sameSecret(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/** Console sessions in memory, with idle expiry. */
export class Sessions {
  private readonly byId = new Map<string, Session>();

  constructor(private readonly idleMs: number, private readonly now: () => number = Date.now) {}

  create(address: string): Session {
    // Map keeps insertion order: the first key is the session created (or touched) longest ago.
    while (this.byId.size >= MAX_SESSIONS) {
      const oldest = this.byId.keys().next();
      if (oldest.done === true) break;
      this.byId.delete(oldest.value);
    }
    const s: Session = { id: secret(), address, csrf: secret(), lastSeen: this.now() };
    this.byId.set(s.id, s);
    return s;
  }

  /** The live session with this id (touched), or null; an idle one is dropped. */
  get(id: string | undefined): Session | null {
    if (id === undefined || id.length > 64) return null;
    const s = this.byId.get(id);
    if (s === undefined) return null;
    const t = this.now();
    if (t - s.lastSeen > this.idleMs) {
      this.byId.delete(id);
      return null;
    }
    s.lastSeen = t;
    this.byId.delete(id);
    this.byId.set(id, s);
    return s;
  }

  destroy(id: string): void {
    this.byId.delete(id);
  }

  get size(): number {
    return this.byId.size;
  }
}

/** Per-client failure delays for POST /login. */
export class LoginLimiter {
  private readonly failures = new Map<string, { count: number; first: number }>();
  private readonly inFlight = new Map<string, number>();
  private total = 0;
  /** Logins checked (scrypt) or waiting out their delay at once, per client and in all. */
  static readonly MAX_IN_FLIGHT_PER_CLIENT = 2;
  static readonly MAX_IN_FLIGHT = 32;

  /**
   * Takes a slot for one login attempt, or returns false (answer 429): scrypt is deliberately
   * expensive, so parallel guesses from one client (or a crowd) must not take the CPU.
   */
  enter(client: string): boolean {
    const n = this.inFlight.get(client) ?? 0;
    if (n >= LoginLimiter.MAX_IN_FLIGHT_PER_CLIENT || this.total >= LoginLimiter.MAX_IN_FLIGHT) return false;
    this.inFlight.set(client, n + 1);
    this.total++;
    return true;
  }

  leave(client: string): void {
    const n = (this.inFlight.get(client) ?? 1) - 1;
    if (n <= 0) this.inFlight.delete(client);
    else this.inFlight.set(client, n);
    this.total = Math.max(0, this.total - 1);
  }

  constructor(private readonly o: { windowMs: number; baseDelayMs: number; maxDelayMs: number; maxClients: number } = { windowMs: 300_000, baseDelayMs: 500, maxDelayMs: 10_000, maxClients: 10_000 }) {}

  /** Records a failure and returns how long to wait before answering it. */
  fail(client: string, now = Date.now()): number {
    let f = this.failures.get(client);
    if (f === undefined || now - f.first > this.o.windowMs) {
      f = { count: 0, first: now };
      this.failures.delete(client);
      while (this.failures.size >= this.o.maxClients) {
        const oldest = this.failures.keys().next();
        if (oldest.done === true) break;
        this.failures.delete(oldest.value);
      }
      this.failures.set(client, f);
    }
    f.count++;
    return Math.min(this.o.maxDelayMs, this.o.baseDelayMs * 2 ** Math.min(f.count - 1, 20));
  }

  succeed(client: string): void {
    this.failures.delete(client);
  }
}

/** The address of the peer of a request (node-server bindings); '' when unknown. */
export function clientAddress(c: Context): string {
  const env = c.env as { incoming?: { socket?: { remoteAddress?: string } } } | undefined;
  return env?.incoming?.socket?.remoteAddress ?? '';
}

const SAFE_METHODS = new Set(['GET', 'HEAD', 'OPTIONS']);

/** The CSRF token a state-changing request carries (header, or the form field of a form post). */
async function csrfOf(c: Context): Promise<string | null> {
  const h = c.req.header(CSRF_HEADER);
  if (h !== undefined) return h;
  const type = c.req.header('content-type') ?? '';
  if (type.startsWith('application/x-www-form-urlencoded') || type.startsWith('multipart/form-data')) {
    const body = await c.req.parseBody();
    const v = body[CSRF_FIELD];
    return typeof v === 'string' ? v : null;
  }
  return null;
}

export type AuthOutcome = { ok: true; principal: Principal } | { ok: false; status: 401 | 403; error: string };

/** Bearer token first, then the session cookie (with CSRF on state-changing methods). */
export async function authenticate(ctx: HttpContext, sessions: Sessions, c: Context): Promise<AuthOutcome> {
  const authz = c.req.header('authorization');
  if (authz !== undefined) {
    const m = /^Bearer\s+(\S+)$/i.exec(authz);
    const info = m?.[1] !== undefined ? (await ctx.store.verifyApiToken(m[1])) : null;
    if (info === null) return { ok: false, status: 401, error: 'invalid or revoked API token' };
    void touch(ctx, info.id);
    return { ok: true, principal: { kind: 'token', tokenId: info.id, name: info.name } };
  }
  const s = sessions.get(getCookie(c, SESSION_COOKIE));
  if (s === null) return { ok: false, status: 401, error: 'authentication required: an API token (Authorization: Bearer) or a console session' };
  // A session can outlive the admin flag: `user admin ADDRESS off` takes effect at the next request.
  if (!(await ctx.store.isAdmin(s.address))) {
    sessions.destroy(s.id);
    return { ok: false, status: 401, error: 'this account is no longer a console admin' };
  }
  if (!SAFE_METHODS.has(c.req.method)) {
    // The cookie is sent by the browser on its own (SameSite=Strict limits that to our own pages),
    // so a state change must also prove it comes from a page that read the token (OWASP CSRF,
    // synchronizer token pattern).
    const given = await csrfOf(c);
    if (given === null || !sameSecret(given, s.csrf)) return { ok: false, status: 403, error: 'missing or wrong CSRF token (X-CSRF-Token)' };
  }
  return { ok: true, principal: { kind: 'session', address: s.address, sessionId: s.id, csrf: s.csrf } };
}

/** last_used_at at most once a minute per token (a write per API request would load the writer). */
const lastTouch = new Map<string, number>();
async function touch(ctx: HttpContext, id: string): Promise<void> {
  const now = Date.now();
  if ((lastTouch.get(id) ?? 0) > now - 60_000) return;
  if (lastTouch.size > 10_000) lastTouch.clear();
  lastTouch.set(id, now);
  try {
    await ctx.store.touchApiToken(id, new Date(now));
  } catch (err) {
    ctx.logger.warn({ event: 'http', error: err instanceof Error ? err.message : String(err) }, 'token last-used time not saved');
  }
}

/** /api/v1/*: 401/403 JSON `{error}` unless authenticated; sets `principal`. */
export function apiAuth(ctx: HttpContext, sessions: Sessions): MiddlewareHandler<HttpEnv> {
  return async (c, next) => {
    const r = await authenticate(ctx, sessions, c);
    if (!r.ok) return c.json({ error: r.error }, r.status);
    c.set('principal', r.principal);
    await next();
  };
}

/** Console pages: a redirect to /login without a session (403 on a CSRF failure). */
export function consoleAuth(ctx: HttpContext, sessions: Sessions): MiddlewareHandler<HttpEnv> {
  return async (c, next) => {
    const r = await authenticate(ctx, sessions, c);
    if (!r.ok) {
      if (r.status === 403) return c.text(r.error, 403);
      const back = new URL(c.req.url).pathname;
      return c.redirect(back === '/' ? '/login' : `/login?next=${encodeURIComponent(back)}`, 303);
    }
    c.set('principal', r.principal);
    await next();
  };
}

/** Set-Cookie value of a session (Secure on http://127.0.0.1 too: browsers treat loopback as secure). */
export function sessionCookie(id: string, maxAgeS: number | null): string {
  return `${SESSION_COOKIE}=${id}; Path=/; HttpOnly; Secure; SameSite=Strict${maxAgeS === null ? '' : `; Max-Age=${maxAgeS}`}`;
}
