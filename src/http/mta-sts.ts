/**
 * Our own MTA-STS policy host (RFC 8461 §3.3): `GET /.well-known/mta-sts.txt` with Host
 * `mta-sts.DOMAIN`, for every local domain, when `http.mtaSts.enabled`. No login: senders fetch it
 * anonymously. The text and its id come from auth/dns-records.ts mtaStsPolicy(), the same function
 * `postseal dns-records` prints the `_mta-sts` TXT record from, so the two always agree.
 *
 * Invariants:
 * - Only Host mta-sts.DOMAIN of a configured domain gets the policy; any other Host gets 404
 *   (a policy must never be served for a domain we do not receive mail for).
 * - 200 with Content-Type text/plain, never a redirect (§3.3: "Policy Hosts MUST NOT redirect").
 * - When the HTTP listener is not on loopback, only a request over TLS gets the policy (§3.3: the
 *   policy is fetched over HTTPS, and the certificate must be valid for mta-sts.DOMAIN: the
 *   server's certificate store has to cover that name).
 */
import { Hono } from 'hono';
import type { TLSSocket } from 'node:tls';
import { mtaStsPolicy } from '../auth/dns-records.js';
import type { ServeConfig } from '../config/schema.js';
import { parseHostPort } from '../protocol/host-port.js';
import { isLoopbackHost } from './loopback.js';

export const MTA_STS_PATH = '/.well-known/mta-sts.txt';

export interface MtaStsHosting {
  /** Lower-case domains whose mta-sts.DOMAIN host we answer for. */
  domains: string[];
  text: string;
  id: string;
  /** Refuse the policy over plain HTTP (the listener is not on loopback). */
  httpsOnly: boolean;
}

/** What the server serves for `cfg` (null: off). mx defaults to the hostname (as dns-records' default mail host). */
export function mtaStsHosting(cfg: ServeConfig): MtaStsHosting | null {
  const s = cfg.http.mtaSts;
  if (!s.enabled) return null;
  const { text, id } = mtaStsPolicy({ mode: s.mode, maxAge: s.maxAge, mx: s.mx.length > 0 ? s.mx : [cfg.hostname] });
  const domains = [...new Set(cfg.domains.map((d) => d.toLowerCase().replace(/\.$/, '')))].filter((d) => d !== 'localhost');
  // The same parse and test as startHttp's (server.ts): plain HTTP exactly where the console is plain.
  const hp = parseHostPort(cfg.http.address, { allowPortZero: true });
  return { domains, text, id, httpsOnly: !(hp.ok && isLoopbackHost(hp.host)) };
}

interface NodeEnv {
  incoming?: { socket?: Partial<TLSSocket> };
}

/** The sub-app; mount it ahead of any login middleware (`app.route('/', mtaStsApp(h))`). */
export function mtaStsApp(h: MtaStsHosting): Hono<{ Bindings: NodeEnv }> {
  const app = new Hono<{ Bindings: NodeEnv }>();
  const hosts = new Set(h.domains.map((d) => `mta-sts.${d}`));
  app.get(MTA_STS_PATH, (c) => {
    const host = (c.req.header('host') ?? '').toLowerCase().replace(/:\d+$/, '').replace(/\.$/, '');
    if (!hosts.has(host)) return c.text('no MTA-STS policy for this host\n', 404);
    // RFC 8461 §3.3: the policy is fetched over HTTPS; plain HTTP on a public address gets none.
    if (h.httpsOnly && c.env?.incoming?.socket?.encrypted !== true) return c.text('the MTA-STS policy is served over HTTPS only (RFC 8461 §3.3)\n', 403);
    // §3.2: text/plain; §3.3: 200, no redirect. The id lets clients see the TXT and file agree.
    return c.body(h.text, 200, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-cache', 'x-mta-sts-id': h.id });
  });
  return app;
}
