/**
 * MTA-STS (RFC 8461) for the sender and the checker: the `_mta-sts` TXT record, the policy
 * fetched over HTTPS, a strict policy parser, `mx:` pattern matching, and getMtaStsPolicy(), the
 * sender's lookup through the persistent cache (MtaStsCache, kept in the store).
 *
 * Why not mailauth's parser: mailauth 4.x accepts a policy with unknown mode spelling fixed up,
 * ignores duplicate fields and lets "*.example.com" match any depth ("a.b.example.com"), where
 * RFC 8461 §4.1 says a wildcard matches exactly one label. So this module parses per §3.2 itself.
 *
 * Invariants:
 * - The fetch follows no redirects and takes only 200 (§3.3), only text/plain (§3.2), reads at
 *   most MAX_POLICY bytes, decodes strict UTF-8, and has one deadline for the whole exchange
 *   (connect, headers and body): a slow or endless server costs at most timeoutMs.
 * - The certificate is verified for mta-sts.DOMAIN (§3.3) against the system roots plus `ca`;
 *   the endpoint override (tests) changes only where we connect, never the name we verify nor
 *   the Host header.
 * - A failed lookup or fetch never removes or shortens an unexpired cached policy (§3.3, §5.1);
 *   only a fetched policy of mode none, or the operator (forget), removes it.
 * - Every failure is one of the three TLS-RPT policy failure types (RFC 8460 §4.3.2).
 */
import { createHash } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';
import type { DnsResolver } from './dns.js';
import type { MtaStsCache, MtaStsLookup, MtaStsPolicy } from './types.js';

/** RFC 8461 §3.3 suggests 64 KiB as the limit senders apply to the policy body. */
export const MAX_POLICY = 64 * 1024;
/** RFC 8461 §3.2: max_age "MUST be no greater than 31557600". */
export const MAX_AGE_LIMIT = 31_557_600;
export const DEFAULT_FETCH_TIMEOUT_MS = 15_000;

export interface StsTxt {
  raw: string;
  id: string;
}

export interface StsPolicy {
  version: 'STSv1';
  mode: 'enforce' | 'testing' | 'none';
  maxAge: number;
  mx: string[];
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** RFC 8461 §3.1: "v=STSv1; id=<1-32 alphanumerics>;", extension fields allowed. */
export function parseStsTxt(records: string[]): Parsed<StsTxt> {
  const sts = records.filter((r) => /^v=STSv1(;|\s|$)/.test(r));
  // §3.1: more than one record starting with v=STSv1 → senders treat the domain as having none.
  if (sts.length === 0) return { ok: false, error: 'no TXT record starting with v=STSv1' };
  if (sts.length > 1) return { ok: false, error: `${sts.length} TXT records start with v=STSv1 (exactly one allowed, RFC 8461 §3.1)` };
  const raw = sts[0] ?? '';
  const fields = new Map<string, string>();
  for (const part of raw.split(';').map((p) => p.trim()).filter((p) => p !== '')) {
    const eq = part.indexOf('=');
    if (eq <= 0) return { ok: false, error: `malformed field ${JSON.stringify(part)}` };
    const key = part.slice(0, eq).trim();
    if (fields.has(key)) return { ok: false, error: `duplicate field ${key}` };
    fields.set(key, part.slice(eq + 1).trim());
  }
  const id = fields.get('id');
  if (id === undefined || !/^[A-Za-z0-9]{1,32}$/.test(id)) return { ok: false, error: 'id= missing or not 1-32 letters and digits' };
  return { ok: true, value: { raw, id } };
}

const MX_PATTERN = /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$/;

/**
 * RFC 8461 §3.2 policy body: "key: value" lines, each ended by CRLF or LF (the ABNF's
 * sts-policy-term allows either, so a mix is valid); a bare CR is not a line end and is refused.
 * version, mode and max_age appear once (a duplicate is invalid), mx may repeat, other keys are
 * extensions and ignored. `capMaxAge` (the sender) caps a max_age above 31557600 at that value;
 * without it (the checker) such a policy is invalid. max_age is 1-10 digits in any case (ABNF).
 */
export function parseStsPolicy(body: string, opts: { capMaxAge?: boolean } = {}): Parsed<StsPolicy> {
  const lines = body.split(/\r?\n/);
  const single = new Map<string, string>();
  const mx: string[] = [];
  for (const [i, line] of lines.entries()) {
    if (line.includes('\r')) return { ok: false, error: `line ${i + 1} holds a bare CR` };
    if (line.trim() === '') continue;
    const colon = line.indexOf(':');
    if (colon <= 0) return { ok: false, error: `line ${i + 1} is not "key: value"` };
    const key = line.slice(0, colon).trim();
    const value = line.slice(colon + 1).trim();
    if (!/^[A-Za-z0-9_]+$/.test(key)) return { ok: false, error: `line ${i + 1}: bad key ${JSON.stringify(key)}` };
    if (key === 'mx') {
      const p = value.toLowerCase();
      if (!MX_PATTERN.test(p)) return { ok: false, error: `line ${i + 1}: mx pattern ${JSON.stringify(value)} is not a host name or *.domain` };
      mx.push(p);
      continue;
    }
    if (key === 'version' || key === 'mode' || key === 'max_age') {
      if (single.has(key)) return { ok: false, error: `duplicate ${key}` };
      single.set(key, value);
    }
    // §3.2: other keys are extensions; senders ignore them.
  }
  if (single.get('version') !== 'STSv1') return { ok: false, error: 'version must be STSv1' };
  const mode = single.get('mode');
  if (mode !== 'enforce' && mode !== 'testing' && mode !== 'none') return { ok: false, error: `mode must be enforce, testing or none (got ${JSON.stringify(mode ?? null)})` };
  const age = single.get('max_age') ?? '';
  // §3.2: max_age is 1*10DIGIT and MUST be at most 31557600 (one year).
  if (!/^\d{1,10}$/.test(age)) return { ok: false, error: `max_age must be 1 to 10 digits (got ${JSON.stringify(age.slice(0, 40))})` };
  let maxAge = Number(age);
  if (maxAge > MAX_AGE_LIMIT) {
    if (opts.capMaxAge !== true) return { ok: false, error: `max_age must be 0..${MAX_AGE_LIMIT} seconds (got ${age})` };
    maxAge = MAX_AGE_LIMIT;
  }
  if (mode !== 'none' && mx.length === 0) return { ok: false, error: 'mode enforce/testing needs at least one mx: line' };
  return { ok: true, value: { version: 'STSv1', mode, maxAge, mx } };
}

/** RFC 8461 §4.1: exact match, or "*.d" matching exactly one extra left-most label. */
export function matchMxPattern(host: string, pattern: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  const p = pattern.toLowerCase();
  if (!p.startsWith('*.')) return h === p;
  const dot = h.indexOf('.');
  return dot > 0 && h.slice(dot + 1) === p.slice(2);
}

export interface FetchOptions {
  ca: string[];
  timeoutMs: number;
  /** Connect here instead of mta-sts.DOMAIN:443 (tests); the certificate is still checked for mta-sts.DOMAIN. */
  endpoint: { host: string; port: number } | null;
}

/** The policy failure types of RFC 8460 §4.3.2, as the fetch reports them. */
export type StsFailureType = NonNullable<MtaStsLookup['failure']>['type'];
export type Fetched = { ok: true; value: string } | { ok: false; type: StsFailureType; error: string };

/** Certificate problems are 'sts-webpki-invalid' (RFC 8460 §4.3.2); anything else on the wire is a fetch error. */
function isCertificateError(e: Error & { code?: unknown }): boolean {
  return typeof e.code === 'string' && /CERT|SIGNATURE|ISSUER|ALTNAME|SELF_SIGNED|CHAIN/.test(e.code);
}

/** GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.3). */
export function fetchStsPolicy(domain: string, opts: FetchOptions): Promise<Fetched> {
  const name = `mta-sts.${domain}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Fetched): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      req.destroy();
      resolve(r);
    };
    const req = https.request(
      {
        host: opts.endpoint?.host ?? name,
        port: opts.endpoint?.port ?? 443,
        servername: name,
        path: '/.well-known/mta-sts.txt',
        method: 'GET',
        headers: { host: name, 'user-agent': 'postseal' },
        ca: [...tls.rootCertificates, ...opts.ca],
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // §3.3: "Policy Hosts MUST NOT redirect"; a redirect (any non-200) is a failed fetch.
        if (status !== 200) return done({ ok: false, type: 'sts-policy-fetch-error', error: `HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed, RFC 8461 §3.3)' : ''}` });
        const type = String(res.headers['content-type'] ?? '');
        // §3.2: the policy is served as text/plain; anything else is not a policy.
        if (!/^text\/plain\s*(;|$)/i.test(type)) return done({ ok: false, type: 'sts-policy-invalid', error: `Content-Type ${JSON.stringify(type)} is not text/plain (RFC 8461 §3.2)` });
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_POLICY) return done({ ok: false, type: 'sts-policy-invalid', error: `policy larger than ${MAX_POLICY} bytes (RFC 8461 §3.3)` });
          chunks.push(c);
        });
        res.on('end', () => {
          let text: string;
          try {
            text = new TextDecoder('utf-8', { fatal: true }).decode(Buffer.concat(chunks));
          } catch {
            return done({ ok: false, type: 'sts-policy-invalid', error: 'policy body is not UTF-8' });
          }
          done({ ok: true, value: text });
        });
        res.on('error', (e) => done({ ok: false, type: 'sts-policy-fetch-error', error: e.message }));
      },
    );
    const timer = setTimeout(() => done({ ok: false, type: 'sts-policy-fetch-error', error: `no complete policy within ${opts.timeoutMs} ms` }), opts.timeoutMs);
    req.on('error', (e: Error & { code?: unknown }) => {
      done({ ok: false, type: isCertificateError(e) ? 'sts-webpki-invalid' : 'sts-policy-fetch-error', error: `${name}: ${e.message}` });
    });
    req.end();
  });
}

export interface MtaStsContext {
  dns: DnsResolver;
  cache: MtaStsCache;
  /** Connect here instead of mta-sts.DOMAIN:443 (tests only); Host and certificate name stay mta-sts.DOMAIN. */
  endpoint?: { host: string; port: number } | null;
  /** Extra trusted CA certificates (PEM), besides the system roots. */
  ca?: string[];
  /** Deadline of the whole HTTPS fetch (default 15 s). */
  timeoutMs?: number;
  /** The clock (ms since epoch); default Date.now. */
  now?: () => number;
  /** Refetch even when the cached policy is current (`policy refresh`). */
  force?: boolean;
}

/**
 * When a cached policy is refreshed ahead of its expiry (RFC 8461 §5.1 "SHOULD proactively
 * refresh"): somewhere in the last quarter of its lifetime, at a point drawn from the policy
 * itself (domain, id, fetch time), so every process and every call agree and domains spread out.
 */
export function refreshAt(p: MtaStsPolicy): number {
  const h = createHash('sha256').update(`${p.domain} ${p.id} ${p.fetchedAt}`).digest().readUInt32BE(0) / 0x1_0000_0000;
  const life = p.expiresAt - p.fetchedAt;
  return p.fetchedAt + Math.floor(life * (0.75 + 0.2 * h));
}

function normDomain(domain: string): string {
  return domain.trim().toLowerCase().replace(/\.$/, '');
}

/**
 * The sender's MTA-STS lookup for one policy domain (RFC 8461 §3, §5.1):
 * TXT `_mta-sts.DOMAIN`; when its id differs from the cached one, or the cached policy is expired,
 * due for refresh or absent, fetch and parse the policy and store it (mode none removes it).
 * A failure keeps the unexpired cached policy and is reported for TLS-RPT.
 */
export async function getMtaStsPolicy(domainInput: string, ctx: MtaStsContext): Promise<MtaStsLookup> {
  const domain = normDomain(domainInput);
  const now = (ctx.now ?? Date.now)();
  const stored = await ctx.cache.getMtaSts(domain);
  // §5.1: a cached policy applies until it expires, whatever happens to DNS or HTTPS meanwhile.
  const cached = stored !== null && stored.expiresAt > now ? stored : null;
  const keep = (failure: MtaStsLookup['failure']): MtaStsLookup =>
    cached !== null ? { policy: cached, from: 'cache', failure } : { policy: null, from: 'none', failure };

  let records: string[];
  try {
    records = await ctx.dns.txt(`_mta-sts.${domain}`);
  } catch (e) {
    return keep({ type: 'sts-policy-fetch-error', detail: `_mta-sts.${domain} TXT: ${e instanceof Error ? e.message : String(e)}` });
  }
  const txt = parseStsTxt(records);
  if (!txt.ok) {
    // §3.1: no valid record means no (new) policy to discover; §5.1: a cached one still applies.
    if (records.every((r) => !/^v=STSv1(;|\s|$)/.test(r))) return keep(null);
    return keep({ type: 'sts-policy-invalid', detail: `_mta-sts.${domain} TXT: ${txt.error}` });
  }
  const id = txt.value.id;
  if (cached !== null && cached.id === id && ctx.force !== true && now < refreshAt(cached)) {
    return { policy: cached, from: 'cache', failure: null };
  }

  const body = await fetchStsPolicy(domain, { ca: ctx.ca ?? [], timeoutMs: ctx.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS, endpoint: ctx.endpoint ?? null });
  if (!body.ok) return keep({ type: body.type, detail: `https://mta-sts.${domain}/.well-known/mta-sts.txt: ${body.error}` });
  const parsed = parseStsPolicy(body.value, { capMaxAge: true });
  if (!parsed.ok) return keep({ type: 'sts-policy-invalid', detail: `https://mta-sts.${domain}/.well-known/mta-sts.txt: ${parsed.error}` });
  const fetchedAt = (ctx.now ?? Date.now)();
  const policy: MtaStsPolicy = {
    domain,
    id,
    mode: parsed.value.mode,
    mx: parsed.value.mx,
    maxAge: parsed.value.maxAge,
    fetchedAt,
    expiresAt: fetchedAt + parsed.value.maxAge * 1000,
    text: body.value,
  };
  // The store keeps enforce/testing policies and drops the domain's entry for mode none (§5).
  await ctx.cache.putMtaSts(policy);
  return { policy, from: 'fetched', failure: null };
}

/** Removes a domain's cached policy (`postseal policy forget`); false when there was none. */
export function forgetMtaStsPolicy(domain: string, cache: MtaStsCache): Promise<boolean> {
  return cache.forgetMtaSts(normDomain(domain));
}
