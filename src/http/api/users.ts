/**
 * `/api/v1/users` (the store's users, as `postseal user list`, with their console role) and
 * `/api/v1/policy/DOMAIN` (`postseal policy explain DOMAIN --json`: what the relay would do for
 * mail to DOMAIN and why, with serve's relay settings and serve's store as the MTA-STS cache).
 *
 * Invariants: read-only; explain runs the same library call as the CLI (policy/explain.ts), without
 * --connect (no SMTP connection is made from an HTTP request), DNS and the MTA-STS fetch bounded
 * by the policy layer's own deadlines.
 */
import { readFileSync } from 'node:fs';
import { Hono } from 'hono';
import { relayPolicyContext } from '../../config.js';
import { explainDomain } from '../../policy/explain.js';
import type { HttpContext, HttpEnv } from '../context.js';
import { apiError } from './errors.js';

const DOMAIN_RE = /^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/;

/** relay.ca's PEM text, or null (none set, or unreadable: serve's relay refuses to start on that). */
function readCa(file: string | null): string | null {
  if (file === null) return null;
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return null;
  }
}

export function usersApi(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  // Read once, as the relay runner reads it at start (serve.ts): not a blocking file read per request.
  const ca = readCa(ctx.cfg.relay.ca);

  app.get('/users', async (c) => {
    const users = await ctx.store.listUsers();
    const out: Array<{ address: string; admin: boolean }> = [];
    for (const address of users) out.push({ address, admin: await ctx.store.isAdmin(address) });
    return c.json(out);
  });

  app.get('/policy/:domain', async (c) => {
    const arg = c.req.param('domain');
    const domain = arg.trim().toLowerCase().replace(/\.$/, '');
    if (domain.length > 253 || !DOMAIN_RE.test(domain)) return c.json(apiError('HTTP_BAD_REQUEST', `${JSON.stringify(arg)} is not a domain name`), 400);
    return c.json(await explainDomain(domain, relayPolicyContext(ctx.cfg.relay, ca, ctx.store), { connect: false }) as unknown as Record<string, unknown>);
  });

  return app;
}
