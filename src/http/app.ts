/**
 * The HTTP application of `serve --http`: security headers on every response, a request body
 * limit, the health checks, login/logout, the auth middleware, and the route modules (api/*.ts at
 * /api/v1, metrics.ts, pages.ts) mounted in one place.
 *
 * Invariants:
 * - Every response carries the CSP and the other headers below (also errors and 404s).
 * - /healthz, /readyz, /metrics need no login; unless `http.publicProbes`, they answer loopback
 *   clients only. Everything under /api/v1 answers 401 JSON without a token or a session.
 * - A request body is at most MAX_BODY bytes (413 past it), read or not.
 */
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { apiAuth, clientAddress, consoleAuth, LoginLimiter, sessionCookie, Sessions } from './auth.js';
import type { HttpContext, HttpEnv } from './context.js';
import { isLoopbackHost } from './loopback.js';
import { mtaStsApp, mtaStsHosting } from './mta-sts.js';
import { senderTestApp } from './sender-test.js';
import { metricsRoutes } from './metrics.js';
import { apiRoutes } from './api/index.js';
import { statsApi } from './api/stats.js';
import { messageViewApi } from './api/message-view.js';
import { pagesApp } from './pages.js';

/** Largest request body (the API takes small JSON documents and login forms). */
export const MAX_BODY = 64 * 1024;

/**
 * Strict CSP (issue 14 item 4): scripts only from our origin and never inline; no plugins, no
 * framing (clickjacking), no <base> rewriting, forms only to us. Message HTML is never shown in
 * this origin (api/message-view.ts serves it with its own sandbox CSP).
 */
export const CONTENT_SECURITY_POLICY = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

export interface HttpApp {
  app: Hono<HttpEnv>;
  sessions: Sessions;
}

/** Whether the listeners answer and the store answers a read; null when ready, else the reason. */
export async function notReadyReason(ctx: HttpContext): Promise<string | null> {
  try {
    await ctx.store.countMessages();
  } catch (err) {
    return `store: ${err instanceof Error ? err.message : String(err)}`;
  }
  if (ctx.running.bound.length === 0 && Object.values(ctx.cfg.listeners).some((l) => l !== null)) return 'listeners: none bound';
  if (ctx.stopping) return 'stopping';
  return null;
}

const LOGIN_PAGE = (message: string, next: string): string => `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>postseal — log in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/assets/ui/app.css"></head>
<body><main class="login-box"><h1>postseal</h1>
${message === '' ? '' : `<p role="alert" class="error">${message}</p>`}
<form method="post" action="/login">
<input type="hidden" name="next" value="${next}">
<label>Address <input name="address" type="email" autocomplete="username" required></label>
<label>Password <input name="password" type="password" autocomplete="current-password" required></label>
<button type="submit">Log in</button>
</form></main></body></html>`;

/** Only a local path (`/x`, never `//host` or a URL) is followed after login: no open redirect. */
function safeNext(v: unknown): string {
  return typeof v === 'string' && /^\/(?![/\\])[\x21-\x7e]*$/.test(v) && v.length <= 512 ? v : '/';
}

function escapeAttr(s: string): string {
  return s.replace(/[&<>"']/g, (ch) => `&#${ch.charCodeAt(0)};`);
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export function createHttpApp(ctx: HttpContext): HttpApp {
  const sessions = new Sessions(ctx.cfg.http.sessionIdleMs);
  const limiter = new LoginLimiter();
  const app = new Hono<HttpEnv>();

  app.use('*', async (c, next) => {
    await next();
    c.header('Content-Security-Policy', c.res.headers.get('Content-Security-Policy') ?? CONTENT_SECURITY_POLICY);
    c.header('X-Content-Type-Options', 'nosniff');
    c.header('Referrer-Policy', 'no-referrer');
    // DENY unless the route allowed its own framing (api/message-view.ts: SAMEORIGIN, for the console's sandboxed iframe).
    c.header('X-Frame-Options', c.res.headers.get('X-Frame-Options') ?? 'DENY');
    c.header('Cross-Origin-Opener-Policy', 'same-origin');
    if (ctx.http?.secure === true) c.header('Strict-Transport-Security', 'max-age=31536000');
  });
  app.use('*', bodyLimit({ maxSize: MAX_BODY, onError: (c) => c.json({ error: `request body over ${MAX_BODY} bytes` }, 413) }));

  // Probes: no login; loopback clients only unless http.publicProbes.
  const probe = async (c: Parameters<Parameters<typeof app.use>[1]>[0], next: () => Promise<void>): Promise<Response | void> => {
    if (!ctx.cfg.http.publicProbes && !isLoopbackHost(clientAddress(c))) return c.text('forbidden: probes answer loopback clients only (http.publicProbes)', 403);
    await next();
  };
  app.use('/healthz', probe);
  app.use('/readyz', probe);
  app.use('/metrics', probe);
  app.get('/healthz', (c) => c.json({ status: 'ok', uptimeS: Math.round((Date.now() - ctx.startedAt.getTime()) / 1000) }));
  app.get('/readyz', async (c) => {
    const reason = await notReadyReason(ctx);
    return reason === null ? c.json({ status: 'ready' }) : c.json({ status: 'not ready', reason }, 503);
  });

  // No login: our MTA-STS policy for senders (mta-sts.ts, http.mtaSts) and the sender test's
  // result pages, public by their unguessable id (sender-test.ts, http.senderTest).
  const sts = mtaStsHosting(ctx.cfg);
  if (sts !== null) app.route('/', mtaStsApp(sts));
  if (ctx.cfg.http.senderTest.enabled) app.route('/', senderTestApp(ctx.cfg.dataDir));

  // Login and logout.
  app.get('/login', (c) => c.html(LOGIN_PAGE('', escapeAttr(safeNext(c.req.query('next'))))));
  app.post('/login', async (c) => {
    const form = await c.req.parseBody();
    const address = typeof form['address'] === 'string' ? form['address'].trim() : '';
    const password = typeof form['password'] === 'string' ? form['password'] : '';
    const next = safeNext(form['next']);
    const client = clientAddress(c);
    if (!limiter.enter(client)) return c.html(LOGIN_PAGE('Too many login attempts at once; try again in a moment.', escapeAttr(next)), 429, { 'Retry-After': '5' });
    try {
      // verifyUser spends the same scrypt work for unknown users; a non-admin gets the same answer.
      const ok = address !== '' && password !== '' && (await ctx.store.verifyUser(address, password)) && (await ctx.store.isAdmin(address));
      if (!ok) {
        // The delay is waited inside the slot: a client cannot start more guesses meanwhile.
        await sleep(limiter.fail(client));
        ctx.logger.info({ event: 'http-login', result: 'refused', client }, 'console login refused');
        return c.html(LOGIN_PAGE('Wrong address or password, or not a console admin.', escapeAttr(next)), 401);
      }
    } finally {
      limiter.leave(client);
    }
    limiter.succeed(client);
    const s = sessions.create(address.toLowerCase());
    ctx.logger.info({ event: 'http-login', result: 'ok', client, address: s.address }, 'console login');
    c.header('Set-Cookie', sessionCookie(s.id, null));
    return c.redirect(next, 303);
  });
  app.post('/logout', consoleAuth(ctx, sessions), (c) => {
    const p = c.get('principal');
    if (p.kind === 'session') sessions.destroy(p.sessionId);
    c.header('Set-Cookie', sessionCookie('', 0));
    return c.redirect('/login', 303);
  });

  // The API: a token or a session (CSRF on state changes) for everything under /api/v1.
  app.use('/api/v1/*', async (c, next) => {
    // The OpenAPI document describes the API; it holds no data, so it needs no login.
    if (c.req.path === '/api/v1/openapi.json' && c.req.method === 'GET') return next();
    return apiAuth(ctx, sessions)(c, next);
  });
  // Who am I, and the CSRF token a console page sends back on state changes.
  app.get('/api/v1/session', (c) => {
    const p = c.get('principal');
    return c.json(p.kind === 'session' ? { kind: 'session', address: p.address, csrf: p.csrf } : { kind: 'token', name: p.name });
  });
  // Log out through the API (a state change: the session's CSRF token is required, auth.ts).
  app.delete('/api/v1/session', (c) => {
    const p = c.get('principal');
    if (p.kind !== 'session') return c.json({ error: 'an API token has no session; revoke it with postseal token revoke' }, 400);
    sessions.destroy(p.sessionId);
    c.header('Set-Cookie', sessionCookie('', 0));
    return c.json({ status: 'logged out' });
  });

  // Route modules (J2: api/*.ts at /api/v1; J3: metrics.ts at /metrics; J4: pages.ts). Mounted
  // here only, after the middleware above.
  app.route('/metrics', metricsRoutes(ctx));

  app.route('/api/v1', apiRoutes(ctx));
  app.route('/api/v1', statsApi(ctx));
  app.route('/api/v1', messageViewApi(ctx));
  // Console pages (pages.ts, J4) sit behind consoleAuth; a session cookie that is not ours is dropped.
  app.route('/', pagesApp(ctx, consoleAuth(ctx, sessions)));

  app.notFound((c) => (c.req.path.startsWith('/api/') ? c.json({ error: 'not found' }, 404) : c.text('not found', 404)));
  app.onError((err, c) => {
    ctx.logger.error({ event: 'http', path: c.req.path, error: err.message }, 'HTTP handler failed');
    return c.req.path.startsWith('/api/') ? c.json({ error: 'internal error' }, 500) : c.text('internal error', 500);
  });
  return { app, sessions };
}
