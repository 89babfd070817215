/**
 * The dashboard's numbers (issue 14 item 2), under /api/v1:
 * - `GET /stats/now`: sessions open now, listeners, queue depth by status, uptime.
 * - `GET /stats/tls?hours=N` (1..168, default 24): inbound messages and outbound delivery attempts
 *   per hour by TLS version ("plaintext" when none), and "who still sends me plaintext?": peers
 *   (HELO name + IP) whose mail arrived without TLS and domains we delivered to without TLS in
 *   the last 7 days.
 *
 * Invariants: read-only; bounded work per request — at most SCAN_MESSAGES newest messages and the
 * attempts of at most SCAN_QUEUE queue rows are read (`truncated: true` says the window was
 * larger than what was scanned). The bucketing is a pure function (tlsStats) over those rows.
 */
import { Hono } from 'hono';
import type { HttpContext, HttpEnv } from '../context.js';
import type { MessageSummary } from '../../types.js';
import { domainOf, type QueueAttempt } from '../../store/index.js';
import { apiError } from './errors.js';

export const SCAN_MESSAGES = 10_000;
export const SCAN_QUEUE = 2_000;
const HOUR_MS = 3_600_000;
const PLAINTEXT_DAYS = 7;
const PLAINTEXT_LIST = 50;
/** Attempt errors that mean no SMTP session took place (client error codes, src/errors.ts). */
const NO_SESSION = /^(CONNECT_FAILED|DNS_[A-Z_]+)\b/;

export interface AttemptWithDomain extends QueueAttempt {
  domain: string;
}

export interface PlainPeer { heloName: string; clientAddress: string; count: number; last: string }
export interface PlainDomain { domain: string; count: number; last: string; whyNot: string | null }

export interface TlsStats {
  hours: number;
  bucketSeconds: number;
  /** Start of each hourly bucket, Unix seconds (uPlot's x axis), oldest first. */
  buckets: number[];
  /** Per TLS version ('TLSv1.3', ... or 'plaintext'): one count per bucket. */
  inbound: Record<string, number[]>;
  outbound: Record<string, number[]>;
  plaintext: { days: number; inbound: PlainPeer[]; outbound: PlainDomain[] };
  truncated: boolean;
}

function series(map: Record<string, number[]>, key: string, n: number): number[] {
  let s = map[key];
  if (!s) {
    s = new Array<number>(n).fill(0);
    map[key] = s;
  }
  return s;
}

/** Buckets messages and attempts per hour ending at `now` (the last bucket holds the current hour). */
export function tlsStats(messages: readonly MessageSummary[], attempts: readonly AttemptWithDomain[], now: Date, hours: number, truncated = false): TlsStats {
  const end = Math.floor(now.getTime() / HOUR_MS) * HOUR_MS + HOUR_MS;
  const start = end - hours * HOUR_MS;
  const plainSince = now.getTime() - PLAINTEXT_DAYS * 24 * HOUR_MS;
  const buckets = Array.from({ length: hours }, (_, i) => (start + i * HOUR_MS) / 1000);
  const inbound: Record<string, number[]> = {};
  const outbound: Record<string, number[]> = {};
  const peers = new Map<string, PlainPeer>();
  const domains = new Map<string, PlainDomain>();
  for (const m of messages) {
    const t = Date.parse(m.receivedAt);
    if (Number.isNaN(t)) continue;
    const version = m.tls?.protocol ?? 'plaintext';
    if (t >= start && t < end) series(inbound, version, hours)[Math.floor((t - start) / HOUR_MS)]! += 1;
    if (!m.tls && t >= plainSince) {
      const key = `${m.heloName}\u0000${m.clientAddress}`;
      const p = peers.get(key) ?? { heloName: m.heloName, clientAddress: m.clientAddress, count: 0, last: m.receivedAt };
      p.count += 1;
      if (m.receivedAt > p.last) p.last = m.receivedAt;
      peers.set(key, p);
    }
  }
  for (const a of attempts) {
    const t = Date.parse(a.at);
    if (Number.isNaN(t)) continue;
    // An attempt that never reached a session is none: no TLS outcome (MX lookup failed), or no
    // TCP connection / no address (CONNECT_FAILED, DNS_*): counting it as "plaintext" would blame
    // a domain that never spoke to us.
    if (!a.tls || (!a.tls.protocol && a.outcome !== 'delivered' && NO_SESSION.test(a.error ?? ''))) continue;
    const version = a.tls.protocol ?? 'plaintext';
    if (t >= start && t < end) series(outbound, version, hours)[Math.floor((t - start) / HOUR_MS)]! += 1;
    if (!a.tls.protocol && t >= plainSince) {
      const d = domains.get(a.domain) ?? { domain: a.domain, count: 0, last: a.at, whyNot: a.tls.whyNot };
      d.count += 1;
      if (a.at >= d.last) {
        d.last = a.at;
        d.whyNot = a.tls.whyNot;
      }
      domains.set(a.domain, d);
    }
  }
  const byCount = <T extends { count: number; last: string }>(x: T, y: T): number => y.count - x.count || (y.last > x.last ? 1 : -1);
  return {
    hours,
    bucketSeconds: HOUR_MS / 1000,
    buckets,
    inbound,
    outbound,
    plaintext: {
      days: PLAINTEXT_DAYS,
      inbound: [...peers.values()].sort(byCount).slice(0, PLAINTEXT_LIST),
      outbound: [...domains.values()].sort(byCount).slice(0, PLAINTEXT_LIST),
    },
    truncated,
  };
}

export function statsApi(ctx: HttpContext): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();

  app.get('/stats/tls', async (c) => {
    const raw = c.req.query('hours') ?? '24';
    const hours = /^\d{1,3}$/.test(raw) ? Number(raw) : NaN;
    if (!Number.isInteger(hours) || hours < 1 || hours > 168) {
      return c.json(apiError('HTTP_BAD_REQUEST', 'hours must be an integer from 1 to 168'), 400);
    }
    const messages = await ctx.store.listMessages({ limit: SCAN_MESSAGES });
    const rows = await ctx.store.listQueue({ limit: SCAN_QUEUE });
    const attempts: AttemptWithDomain[] = [];
    const seen = new Set<string>();
    for (const row of rows) {
      if (row.target !== null || seen.has(row.id)) continue; // local handoffs are not SMTP sessions
      seen.add(row.id);
      for (const a of (await ctx.store.listAttempts(row.id))) attempts.push({ ...a, domain: domainOf(a.recipient) });
    }
    const truncated = messages.length >= SCAN_MESSAGES || rows.length >= SCAN_QUEUE;
    return c.json(tlsStats(messages, attempts, new Date(), hours, truncated));
  });

  app.get('/stats/now', async (c) => {
    // The counts /metrics reads too: one indexed count, not up to 100 000 rows listed per status.
    const { queued, deferred } = await ctx.store.queueStats();
    const queue = { queued, deferred };
    return c.json({
      sessions: ctx.running.server.sessionCount,
      listeners: ctx.running.bound.map((b) => ({ name: b.name, host: b.host, port: b.port, tls: b.tls })),
      queue,
      messages: (await ctx.store.countMessages()),
      startedAt: ctx.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - ctx.startedAt.getTime()) / 1000),
    });
  });

  return app;
}
