/**
 * Domain policies other than MTA-STS: DANE TLSA matching (RFC 7672, RFC 6698), TLS-RPT
 * (RFC 8460, re-exported from policy/tlsrpt-record.ts), SPF (RFC 7208) and DMARC (RFC 7489, through mailauth's record reader).
 *
 * Invariants: pure parsing and matching, except lookups done through the one DnsResolver;
 * DANE is "validated" only when the resolver set the AD bit — the checker never claims DNSSEC
 * it did not see; TLSA usages 0 and 1 are reported as unusable for SMTP (RFC 7672 §3.1.3).
 */
import { createHash, X509Certificate } from 'node:crypto';
import { createRequire } from 'node:module';
import type { DnsResolver } from '../policy/dns.js';
import type { TlsaRecord as Tlsa } from '../policy/types.js';

export interface TlsaMatch {
  usage: number;
  selector: number;
  matchingType: number;
  /** Hex of the association data. */
  data: string;
  /** 'unusable': usage 0/1 or an unknown selector/matching type (RFC 7672 §3.1.3). */
  result: 'match' | 'no-match' | 'unusable';
}

/** RFC 6698 §2.1.3: selector 0 = full certificate, 1 = SubjectPublicKeyInfo. §2.1.4: 0 exact, 1 SHA-256, 2 SHA-512. */
function associationData(der: Buffer, selector: number, matchingType: number): Buffer | null {
  let content: Buffer;
  if (selector === 0) content = der;
  else if (selector === 1) content = Buffer.from(new X509Certificate(der).publicKey.export({ type: 'spki', format: 'der' }));
  else return null;
  if (matchingType === 0) return content;
  if (matchingType === 1) return createHash('sha256').update(content).digest();
  if (matchingType === 2) return createHash('sha512').update(content).digest();
  return null;
}

/**
 * Matches TLSA records against a served chain (base64 DER, leaf first). RFC 7672 §3.1.1:
 * DANE-EE(3) matches the leaf only; §3.1.2: DANE-TA(2) matches a certificate of the chain
 * other than the leaf (the trust anchor must be in the chain the server sends).
 */
export function matchTlsa(records: Tlsa[], chainDer: string[]): TlsaMatch[] {
  const chain = chainDer.map((b) => Buffer.from(b, 'base64'));
  return records.map((r) => {
    const base = { usage: r.usage, selector: r.selector, matchingType: r.matchingType, data: r.data.toString('hex') };
    if (r.usage !== 2 && r.usage !== 3) return { ...base, result: 'unusable' as const };
    const candidates = r.usage === 3 ? chain.slice(0, 1) : chain.slice(1);
    let usable = true;
    for (const der of candidates) {
      const a = associationData(der, r.selector, r.matchingType);
      if (a === null) usable = false;
      else if (a.equals(r.data)) return { ...base, result: 'match' as const };
    }
    return { ...base, result: usable ? ('no-match' as const) : ('unusable' as const) };
  });
}

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
