/**
 * `/api/v1/checks`: the checker over HTTP. `POST /checks` starts a host or domain check in the
 * background (202 + id), `GET /checks/ID` reads it (the same JSON as `postseal check --json` once
 * done), `GET /checks/ID/events` streams its progress as Server-Sent Events, ending with `done`.
 *
 * Invariants:
 * - the reports come from the checker functions `postseal check` calls (ctx.checker), unchanged;
 * - SSRF: unless `http.checkPrivateTargets`, every address of the target (every A and AAAA; for a
 *   domain every address of every MX host, and of mta-sts.DOMAIN) must be global unicast, else
 *   422; the host check connects to the address that was checked (no second resolution), and a
 *   domain check refuses non-global addresses at connect time too (refuseAddress), so a DNS answer
 *   that changes between our check and the checker's lookup cannot reach a private address;
 * - per client (token, else IP address): 10 checks a minute, 2 running at once (429 + Retry-After);
 * - the request body is at most 4 KiB; results are kept bounded (checks.ts).
 */
import { lookup } from 'node:dns/promises';
import net from 'node:net';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { streamSSE } from 'hono/streaming';
import { parseHostPort } from '../../protocol/host-port.js';
import { resolverFor } from '../../policy/context.js';
import type { DnsResolver } from '../../policy/dns.js';
import { CheckJobs, CheckLimiter, type CheckErrorReport, type CheckJob, type CheckReport } from '../checks.js';
import { clientAddress } from '../auth.js';
import type { HttpContext, HttpEnv, Principal } from '../context.js';
import { privateAddressReason } from './ssrf.js';
import { apiError } from './errors.js';

const DOMAIN_RE = /^(?=.{1,253}$)([a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)(\.[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9])?)*$/;
/** Per-read and handshake timeout of a web check (the CLI's default). */
const CHECK_TIMEOUT_MS = 15_000;
/** Deadline for the DNS lookups made before a check is accepted. */
const PREFLIGHT_DNS_MS = 5_000;

interface CheckRequest {
  kind: 'host' | 'domain';
  host: string;
  port: number | null;
  implicitTls: boolean | null;
}

/** The body of POST /checks, validated; a string is the 400 message. */
export function parseCheckRequest(body: unknown): CheckRequest | string {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return 'the body must be a JSON object: {"target":"HOST[:PORT]"} or {"domain":"DOMAIN"}';
  const b = body as Record<string, unknown>;
  for (const k of Object.keys(b)) if (!['target', 'domain', 'port', 'starttls'].includes(k)) return `unknown field ${JSON.stringify(k)}`;
  let port: number | null = null;
  if (b.port !== undefined) {
    if (typeof b.port !== 'number' || !Number.isInteger(b.port) || b.port < 1 || b.port > 65535) return '"port" must be an integer 1-65535';
    port = b.port;
  }
  let implicitTls: boolean | null = null;
  if (b.starttls !== undefined) {
    if (typeof b.starttls !== 'boolean') return '"starttls" must be true (STARTTLS) or false (implicit TLS)';
    implicitTls = !b.starttls;
  }
  if ((b.target === undefined) === (b.domain === undefined)) return 'give exactly one of "target" (HOST[:PORT]) and "domain"';
  if (b.target !== undefined) {
    if (typeof b.target !== 'string' || b.target.length === 0 || b.target.length > 300) return '"target" must be a string HOST[:PORT]';
    const r = parseHostPort(b.target.trim(), { defaultPort: 0 });
    if (!r.ok) return `"target" ${JSON.stringify(b.target)} is not HOST[:PORT]: ${r.problem}`;
    if (r.port !== 0 && port !== null && r.port !== port) return '"target" has a port and "port" differs';
    return { kind: 'host', host: r.host, port: r.port !== 0 ? r.port : port, implicitTls };
  }
  if (typeof b.domain !== 'string') return '"domain" must be a string';
  const domain = b.domain.trim().toLowerCase().replace(/\.$/, '');
  if (!DOMAIN_RE.test(domain)) return `"domain" ${JSON.stringify(b.domain)} is not a domain name`;
  if (implicitTls !== null) return '"starttls" applies to "target" checks only';
  return { kind: 'domain', host: domain, port, implicitTls: null };
}

function withDeadline<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    p,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Addresses of `name` (every A and AAAA); an IP literal is itself. As `postseal check`: through
 * relay.dns when set (`resolver`), else the system's lookup (which also reads /etc/hosts).
 */
async function addressesOf(resolver: DnsResolver | null, name: string): Promise<string[]> {
  if (net.isIP(name) !== 0) return [name];
  const answer = resolver !== null ? resolver.addresses(name) : lookup(name, { all: true, verbatim: true }).then((l) => l.map((a) => a.address));
  return withDeadline(answer, PREFLIGHT_DNS_MS, `${name} A/AAAA`);
}

/** The refused addresses among `list`, each with its reason. */
function refused(list: readonly string[], allowPrivate: boolean): string[] {
  if (allowPrivate) return [];
  return list.flatMap((a) => {
    const why = privateAddressReason(a);
    return why === null ? [] : [`${a} (${why})`];
  });
}

function clientKey(c: Context<HttpEnv>): string {
  const p: Principal | undefined = c.get('principal');
  if (p?.kind === 'token') return `token:${p.tokenId}`;
  return `ip:${clientAddress(c) || 'unknown'}`;
}

function errorReport(kind: CheckJob['kind'], e: unknown): CheckErrorReport {
  const code = typeof (e as { code?: unknown } | null)?.code === 'string' ? String((e as { code: string }).code) : 'CHECK_FAILED';
  return { schemaVersion: 1, kind, status: 'error', error: { code, message: e instanceof Error ? e.message : String(e) } };
}

/** The JSON of GET /checks/ID. */
function jobView(job: CheckJob): unknown {
  if (job.status === 'done' && job.report !== null) return job.report;
  return { id: job.id, status: 'running', kind: job.kind, target: job.target, progress: job.progress };
}

export function checksApi(ctx: HttpContext, o: { jobs?: CheckJobs; limiter?: CheckLimiter } = {}): Hono<HttpEnv> {
  const app = new Hono<HttpEnv>();
  const jobs = o.jobs ?? new CheckJobs();
  const limiter = o.limiter ?? new CheckLimiter();
  const allowPrivate = ctx.cfg.http.checkPrivateTargets;

  app.post('/checks', bodyLimit({ maxSize: 4096, onError: (c) => c.json(apiError('HTTP_BODY_TOO_LARGE', 'the request body is limited to 4096 bytes'), 413) }), async (c) => {
    let body: unknown;
    try {
      body = await c.req.json();
    } catch {
      return c.json(apiError('HTTP_BAD_REQUEST', 'the body is not JSON'), 400);
    }
    const req = parseCheckRequest(body);
    if (typeof req === 'string') return c.json(apiError('HTTP_BAD_REQUEST', req), 400);

    const resolver = resolverFor(ctx.cfg.relay.dns);
    // SSRF pre-flight: every address the check could reach, resolved once here.
    let hostAddress: string | null = null;
    try {
      if (req.kind === 'host') {
        const list = await addressesOf(ctx.cfg.relay.dns.length > 0 ? resolver : null, req.host);
        if (list.length === 0) return c.json(apiError('CHECK_DNS', `${req.host} has no A or AAAA record`), 422);
        const bad = refused(list, allowPrivate);
        if (bad.length > 0) return c.json(apiError('CHECK_TARGET_REFUSED', `${req.host} resolves to addresses the web checker does not probe: ${bad.join(', ')}. An operator can allow them with serve --http-check-private (http.checkPrivateTargets).`), 422);
        hostAddress = list[0] ?? null;
      } else if (!allowPrivate) {
        const mx = await withDeadline(resolver.mx(req.host), PREFLIGHT_DNS_MS, `${req.host} MX`);
        const names = mx.records.length > 0 ? mx.records.map((m) => m.exchange).filter((n) => n !== '') : [req.host];
        const all = (await Promise.all([...names, `mta-sts.${req.host}`].map((n) => addressesOf(resolver, n).catch(() => [] as string[])))).flat();
        const bad = refused(all, allowPrivate);
        if (bad.length > 0) return c.json(apiError('CHECK_TARGET_REFUSED', `${req.host}: its MX hosts (or mta-sts.${req.host}) resolve to addresses the web checker does not probe: ${bad.join(', ')}. An operator can allow them with serve --http-check-private (http.checkPrivateTargets).`), 422);
      }
    } catch (e) {
      return c.json(apiError('CHECK_DNS', e instanceof Error ? e.message : String(e)), 422);
    }

    const slot = limiter.tryStart(clientKey(c));
    if (!slot.ok) {
      c.header('Retry-After', String(slot.retryAfterS));
      return c.json(apiError('HTTP_RATE_LIMITED', `${slot.reason}; retry after ${slot.retryAfterS} s`), 429);
    }
    const target = req.kind === 'host' ? `${net.isIP(req.host) === 6 ? `[${req.host}]` : req.host}${req.port !== null ? `:${req.port}` : ''}` : req.host;
    const job = jobs.start(req.kind, target, async (progress) => {
      try {
        if (req.kind === 'host') {
          const address = hostAddress ?? req.host;
          progress({ step: 'resolve', detail: `${req.host} → ${address}` });
          return await ctx.checker.checkHost(req.host, {
            port: req.port ?? 25,
            address,
            timeoutMs: CHECK_TIMEOUT_MS,
            ...(req.implicitTls !== null ? { implicitTls: req.implicitTls } : {}),
            onProgress: (ev) => progress({ step: ev.step, detail: ev.detail }),
          });
        }
        return await ctx.checker.checkDomain(req.host, {
          resolver,
          timeoutMs: CHECK_TIMEOUT_MS,
          port: req.port ?? 25,
          onProgress: (line) => progress({ step: 'host', detail: line }),
          onHostProgress: (address, ev) => progress({ step: ev.step, detail: ev.detail, address }),
          // Enforced again on the addresses the checker itself resolved and connects to.
          ...(allowPrivate ? {} : { refuseAddress: (a: string) => privateAddressReason(a) }),
        });
      } finally {
        slot.release();
      }
    }, (e): CheckReport => errorReport(req.kind, e));
    ctx.logger.info({ check: job.id, kind: req.kind, target }, 'web check started');
    return c.json({ id: job.id, status: 'running', url: `/api/v1/checks/${job.id}` }, 202);
  });

  app.get('/checks/:id', (c) => {
    const job = jobs.get(c.req.param('id'));
    if (job === null) return c.json(apiError('HTTP_NOT_FOUND', 'no such check (unknown, or expired after an hour)'), 404);
    return c.json(jobView(job) as Record<string, unknown>);
  });

  app.get('/checks/:id/events', (c) => {
    const job = jobs.get(c.req.param('id'));
    if (job === null) return c.json(apiError('HTTP_NOT_FOUND', 'no such check (unknown, or expired after an hour)'), 404);
    return streamSSE(c, async (stream) => {
      // Replay what happened so far, then follow live events until `done`.
      const seen = job.progress.length;
      for (const p of job.progress.slice(0, seen)) await stream.writeSSE({ event: 'progress', data: JSON.stringify(p) });
      if (job.status === 'done' && job.report !== null) {
        await stream.writeSSE({ event: 'done', data: JSON.stringify(job.report) });
        return;
      }
      await new Promise<void>((resolve) => {
        const queue: Array<Promise<void>> = [];
        const unsubscribe = jobs.subscribe(job.id, (e) => {
          queue.push(stream.writeSSE({ event: e.type, data: JSON.stringify(e.data) }));
          if (e.type === 'done') {
            unsubscribe();
            void Promise.allSettled(queue).then(() => resolve());
          }
        });
        stream.onAbort(() => {
          unsubscribe();
          resolve();
        });
        // Events between the replay and the subscription: the job may have moved on meanwhile.
        for (const p of job.progress.slice(seen)) queue.push(stream.writeSSE({ event: 'progress', data: JSON.stringify(p) }));
        if (job.status === 'done' && job.report !== null) {
          unsubscribe();
          queue.push(stream.writeSSE({ event: 'done', data: JSON.stringify(job.report) }));
          void Promise.allSettled(queue).then(() => resolve());
        }
      });
    });
  });

  return app;
}
