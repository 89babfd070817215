/**
 * Domain policies other than MTA-STS: DANE TLSA matching (RFC 7672, RFC 6698), TLS-RPT
 * (RFC 8460, re-exported from policy/tlsrpt-record.ts), SPF (RFC 7208) and DMARC (RFC 7489, through mailauth's record reader).
 *
 * Invariants: pure parsing and matching, except lookups done through the one DnsResolver;
 * DANE is "validated" only when the resolver set the AD bit — the checker never claims DNSSEC
 * it did not see; TLSA usages 0 and 1 are reported as unusable for SMTP (RFC 7672 §3.1.3).
 */
import { createRequire } from 'node:module';
import type { DnsResolver } from '../policy/dns.js';

// One TLSA matcher (RFC 7672 §3.1): tls/dane.ts, shared with the sending client, via policy/dane.ts.
export { matchTlsa, type TlsaMatch } from '../policy/dane.js';

// One TLS-RPT record parser (RFC 8460 §3): it lives in policy/, where the report sender uses it too.
export { parseTlsRpt, type TlsRptResult } from '../policy/tlsrpt-record.js';

export interface SpfResult {
  record: string | null;
  /** Terms as written, in order. */
  terms: string[];
  /** Qualifier of the final "all" ('-', '~', '?', '+'), or null when there is none. */
  all: string | null;
  error: string | null;
}

const SPF_MECHANISMS = /^[+\-~?]?(all|include:\S+|a(:\S+)?(\/\d+)?|mx(:\S+)?(\/\d+)?|ptr(:\S+)?|ip4:[0-9./]+|ip6:[0-9a-fA-F:./]+|exists:\S+)$/i;

/** RFC 7208 §4.5 (one record) and §12 grammar, as far as terms go (macros are not expanded). */
export function parseSpf(records: string[]): SpfResult {
  const spf = records.filter((r) => /^v=spf1(\s|$)/i.test(r));
  if (spf.length === 0) return { record: null, terms: [], all: null, error: null };
  // §4.5: more than one record is a permerror.
  if (spf.length > 1) return { record: spf[0] ?? null, terms: [], all: null, error: `${spf.length} SPF records (permerror, RFC 7208 §4.5)` };
  const record = spf[0] ?? '';
  const terms = record.split(/\s+/).slice(1).filter((t) => t !== '');
  const bad = terms.filter((t) => !SPF_MECHANISMS.test(t) && !/^[a-z][a-z0-9_.-]*=\S*$/i.test(t));
  const allTerm = terms.find((t) => /^[+\-~?]?all$/i.test(t));
  const all = allTerm === undefined ? null : /^[+\-~?]/.test(allTerm) ? allTerm.slice(0, 1) : '+';
  return { record, terms, all, error: bad.length ? `unknown terms: ${bad.join(' ')}` : null };
}

export interface DmarcResult {
  record: string | null;
  policy: string | null;
  subdomainPolicy: string | null;
  rua: string | null;
  pct: number | null;
  /** Found at the organizational domain rather than the domain itself. */
  orgRecord: boolean;
  error: string | null;
}

type DmarcReader = (domain: string, resolver: (name: string, type: string) => Promise<unknown>) => Promise<false | Record<string, unknown>>;
const require = createRequire(import.meta.url);

/** DMARC via mailauth's record reader (it also falls back to the organizational domain). */
export async function lookupDmarc(domain: string, resolver: DnsResolver): Promise<DmarcResult> {
  const read = require('mailauth/lib/dmarc/get-dmarc-record.js') as DmarcReader;
  try {
    const r = await read(domain, resolver.mailauthResolver());
    if (r === false) return { record: null, policy: null, subdomainPolicy: null, rua: null, pct: null, orgRecord: false, error: null };
    const str = (k: string): string | null => (typeof r[k] === 'string' ? (r[k] as string) : null);
    const policy = str('p');
    return {
      record: str('rr'),
      policy,
      subdomainPolicy: str('sp'),
      rua: str('rua'),
      pct: typeof r.pct === 'number' ? r.pct : null,
      orgRecord: r.isOrgRecord === true,
      // RFC 7489 §6.3: p is required and one of none, quarantine, reject.
      error: policy === null || !['none', 'quarantine', 'reject'].includes(policy) ? 'p= missing or not none|quarantine|reject' : null,
    };
  } catch (e) {
    return { record: null, policy: null, subdomainPolicy: null, rua: null, pct: null, orgRecord: false, error: e instanceof Error ? e.message : String(e) };
  }
}
