/**
 * MTA-STS (RFC 8461): the `_mta-sts` TXT record, the policy fetched over HTTPS, a strict policy
 * parser, and `mx:` pattern matching.
 *
 * Why not mailauth's parser: mailauth 4.x accepts a policy with unknown mode spelling fixed up,
 * ignores duplicate fields and lets "*.example.com" match any depth ("a.b.example.com"), where
 * RFC 8461 §4.1 says a wildcard matches exactly one label. A checker must be stricter than the
 * senders it predicts, so this module parses per §3.2 itself.
 *
 * Invariants: the fetch follows no redirects (§3.3), reads at most MAX_POLICY bytes, has a
 * timeout, verifies the certificate for mta-sts.DOMAIN (§3.3) against the system roots plus --ca;
 * the endpoint override (tests) changes only where we connect, never the name we verify.
 */
import https from 'node:https';
import tls from 'node:tls';

/** RFC 8461 §3.3 suggests 64 KiB as the limit senders apply to the policy body. */
export const MAX_POLICY = 64 * 1024;

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

/** RFC 8461 §3.2 policy body: "key: value" lines, CRLF or LF; version first-class, mx repeated. */
export function parseStsPolicy(body: string): Parsed<StsPolicy> {
  const lines = body.split(/\r?\n/);
  const single = new Map<string, string>();
  const mx: string[] = [];
  for (const [i, line] of lines.entries()) {
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
  // §3.2: max_age is 1-10 digits, at most 31557600 (one year).
  if (!/^\d{1,10}$/.test(age) || Number(age) > 31_557_600) return { ok: false, error: `max_age must be 0..31557600 seconds (got ${JSON.stringify(age)})` };
  if (mode !== 'none' && mx.length === 0) return { ok: false, error: 'mode enforce/testing needs at least one mx: line' };
  return { ok: true, value: { version: 'STSv1', mode, maxAge: Number(age), mx } };
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

/** GET https://mta-sts.DOMAIN/.well-known/mta-sts.txt (RFC 8461 §3.3). */
export function fetchStsPolicy(domain: string, opts: FetchOptions): Promise<Parsed<string>> {
  const name = `mta-sts.${domain}`;
  return new Promise((resolve) => {
    let settled = false;
    const done = (r: Parsed<string>): void => {
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
        headers: { host: name, 'user-agent': 'postseal-check' },
        ca: [...tls.rootCertificates, ...opts.ca],
        agent: false,
      },
      (res) => {
        const status = res.statusCode ?? 0;
        // §3.3: "Policy Hosts MUST NOT redirect"; senders treat a redirect as no policy.
        if (status !== 200) return done({ ok: false, error: `HTTP ${status}${status >= 300 && status < 400 ? ' (redirects are not followed, RFC 8461 §3.3)' : ''}` });
        const type = String(res.headers['content-type'] ?? '');
        if (!/^text\/plain\b/i.test(type)) return done({ ok: false, error: `Content-Type ${JSON.stringify(type)} is not text/plain (RFC 8461 §3.2)` });
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > MAX_POLICY) return done({ ok: false, error: `policy larger than ${MAX_POLICY} bytes` });
          chunks.push(c);
        });
        res.on('end', () => done({ ok: true, value: Buffer.concat(chunks).toString('utf8') }));
        res.on('error', (e) => done({ ok: false, error: e.message }));
      },
    );
    const timer = setTimeout(() => done({ ok: false, error: `no policy within ${opts.timeoutMs} ms` }), opts.timeoutMs);
    req.on('error', (e) => done({ ok: false, error: `${name}: ${e.message}` }));
    req.end();
  });
}
