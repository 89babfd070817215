/**
 * DANE certificate matching (RFC 6698, RFC 7671; for SMTP RFC 7672): the one implementation of
 * "does this served chain match these TLSA records", used by the sending client (the decision at
 * level `dane`, right after the handshake) and by the checker (a result per record). It lives in
 * tls/ because the client, which sits below policy/ and check/, must call it; policy/dane.ts
 * re-exports it next to the TLSA lookup.
 *
 * Invariants:
 * - pure: no network, no DNS; certificates are DER buffers, leaf first, as the peer served them;
 * - only DANE-TA(2) and DANE-EE(3) with selector 0/1 and matching type 0/1/2 are usable
 *   (RFC 7672 §3.1.3); a record whose data cannot be what its matching type says (a SHA-256 that
 *   is not 32 bytes) is malformed, hence unusable (TLS-RPT `tlsa-invalid`);
 * - DANE-EE(3) matches the leaf alone, with no name and no date check (RFC 7672 §3.1.1);
 * - DANE-TA(2) matches a served certificate other than the leaf; the leaf must then chain to it
 *   by signature, the certificates below the trust anchor must be in their validity period (the
 *   anchor's own dates are not: RFC 5280 §6.1, an anchor is an input to path validation), and the
 *   leaf must name one of the reference identifiers (RFC 7672 §3.2.2: the MX host name, and the TLSA base domain).
 */
import { createHash, createPublicKey, X509Certificate } from 'node:crypto';

/** One TLSA record (RFC 6698 §2.1). */
export interface TlsaRecord {
  usage: number;
  selector: number;
  matchingType: number;
  data: Buffer;
}

/** Why this record's data cannot be what its selector and matching type say, or null. */
export function tlsaMalformed(r: TlsaRecord): string | null {
  if (r.data.length === 0) return 'empty association data';
  // RFC 6698 §2.1.4: matching type 1 is SHA-256 (32 octets), 2 is SHA-512 (64 octets).
  if (r.matchingType === 1 && r.data.length !== 32) return `SHA-256 association data of ${r.data.length} octets (32 expected)`;
  if (r.matchingType === 2 && r.data.length !== 64) return `SHA-512 association data of ${r.data.length} octets (64 expected)`;
  if (r.matchingType === 0) {
    try {
      // RFC 6698 §2.1.3: selector 0 is a whole certificate, 1 a SubjectPublicKeyInfo.
      if (r.selector === 0) new X509Certificate(r.data);
      else if (r.selector === 1) createPublicKey({ key: r.data, format: 'der', type: 'spki' });
    } catch {
      return r.selector === 0 ? 'exact-match data is not a DER certificate' : 'exact-match data is not a DER SubjectPublicKeyInfo';
    }
  }
  return null;
}

/** Why this record cannot be used in SMTP (RFC 7672 §3.1.3), or null when it is usable. */
export function tlsaUnusable(r: TlsaRecord): string | null {
  // RFC 7672 §3.1.3: PKIX-TA(0) and PKIX-EE(1) are not used in SMTP (no common set of CAs).
  if (r.usage === 0 || r.usage === 1) return `usage ${r.usage} (PKIX-${r.usage === 0 ? 'TA' : 'EE'}) is unusable in SMTP (RFC 7672 §3.1.3)`;
  if (r.usage !== 2 && r.usage !== 3) return `unknown usage ${r.usage}`;
  if (r.selector !== 0 && r.selector !== 1) return `unknown selector ${r.selector}`;
  if (r.matchingType !== 0 && r.matchingType !== 1 && r.matchingType !== 2) return `unknown matching type ${r.matchingType}`;
  return tlsaMalformed(r);
}

/** The record in presentation form ("3 1 1 ab12…"), as TLS-RPT policy-string and logs want it. */
export function tlsaToString(r: TlsaRecord): string {
  return `${r.usage} ${r.selector} ${r.matchingType} ${r.data.toString('hex')}`;
}

/** RFC 6698 §2.1.3 selector, §2.1.4 matching type: what a certificate offers to compare with. */
function associationData(cert: X509Certificate, selector: number, matchingType: number): Buffer | null {
  let content: Buffer;
  if (selector === 0) content = cert.raw;
  else if (selector === 1) content = Buffer.from(cert.publicKey.export({ type: 'spki', format: 'der' }));
  else return null;
  if (matchingType === 0) return content;
  if (matchingType === 1) return createHash('sha256').update(content).digest();
  if (matchingType === 2) return createHash('sha512').update(content).digest();
  return null;
}

function matches(r: TlsaRecord, cert: X509Certificate): boolean {
  const a = associationData(cert, r.selector, r.matchingType);
  return a !== null && a.equals(r.data);
}

/** DER buffers, or base64 DER strings (the checker's report form). */
export type ChainDer = ReadonlyArray<Buffer | string>;

function parseChain(chainDer: ChainDer): X509Certificate[] | string {
  const out: X509Certificate[] = [];
  for (const [i, der] of chainDer.entries()) {
    try {
      out.push(new X509Certificate(typeof der === 'string' ? Buffer.from(der, 'base64') : der));
    } catch {
      return `certificate ${i} of the served chain cannot be parsed`;
    }
  }
  return out;
}

export interface TlsaMatch {
  usage: number;
  selector: number;
  matchingType: number;
  /** Hex of the association data. */
  data: string;
  /** 'unusable': usage 0/1, an unknown selector/matching type or malformed data (RFC 7672 §3.1.3). */
  result: 'match' | 'no-match' | 'unusable';
}

/**
 * A result per record against a served chain (DER, leaf first): the checker's report. Only the
 * digest comparison of RFC 7672 §3.1.1/§3.1.2 (DANE-EE: the leaf; DANE-TA: any other served
 * certificate); the chain and name checks of a real DANE-TA decision are verifyDane()'s.
 */
export function matchTlsa(records: readonly TlsaRecord[], chainDer: ChainDer): TlsaMatch[] {
  const chain = parseChain(chainDer);
  return records.map((r) => {
    const base = { usage: r.usage, selector: r.selector, matchingType: r.matchingType, data: r.data.toString('hex') };
    if (tlsaUnusable(r) !== null) return { ...base, result: 'unusable' as const };
    if (typeof chain === 'string') return { ...base, result: 'no-match' as const };
    const candidates = r.usage === 3 ? chain.slice(0, 1) : chain.slice(1);
    return { ...base, result: candidates.some((c) => matches(r, c)) ? ('match' as const) : ('no-match' as const) };
  });
}

/** The DANE decision for one TLS session. */
export interface DaneVerdict {
  /** What authenticated the peer: a DANE-EE(3) or a DANE-TA(2) record; null when nothing did. */
  matched: 'ee' | 'ta' | null;
  /** The record that matched. */
  record: TlsaRecord | null;
  /** Why nothing matched (every usable record's reason, joined), when matched is null. */
  error: string | null;
}

/**
 * RFC 7672 §3.1, §3.2: does the served chain (DER, leaf first) match one of the usable records?
 * `names` are the reference identifiers for DANE-TA(2) (the MX host name, and the TLSA base
 * domain when a CNAME was followed); DANE-EE(3) ignores them. `now` (ms) for the date checks.
 */
export function verifyDane(records: readonly TlsaRecord[], chainDer: ChainDer, names: readonly string[], now = Date.now()): DaneVerdict {
  const fail = (error: string): DaneVerdict => ({ matched: null, record: null, error });
  const usable = records.filter((r) => tlsaUnusable(r) === null);
  if (usable.length === 0) return fail('no usable TLSA record (RFC 7672 §3.1.3)');
  const chain = parseChain(chainDer);
  if (typeof chain === 'string') return fail(chain);
  const leaf = chain[0];
  if (leaf === undefined) return fail('the server presented no certificate');
  // RFC 7672 §3.1.1: DANE-EE(3) is the key (or certificate) itself: no name, no expiry check.
  for (const r of usable) if (r.usage === 3 && matches(r, leaf)) return { matched: 'ee', record: r, error: null };
  const why: string[] = [];
  if (usable.some((r) => r.usage === 3)) why.push('no DANE-EE(3) record matches the leaf certificate');
  const ta = usable.filter((r) => r.usage === 2);
  if (ta.length > 0) {
    let anchored = false;
    for (let i = 1; i < chain.length; i++) {
      const anchor = chain[i];
      if (anchor === undefined) continue;
      const r = ta.find((t) => matches(t, anchor));
      if (r === undefined) continue;
      anchored = true;
      // RFC 7672 §3.1.2: the served chain from the leaf up to the trust anchor must validate.
      const pathError = checkPath(chain.slice(0, i + 1), now);
      if (pathError !== null) {
        why.push(`DANE-TA(2) matches served certificate ${i}, but ${pathError}`);
        continue;
      }
      // RFC 7672 §3.2.2: with DANE-TA the leaf must name a reference identifier (§3.2.3 wildcards:
      // the left-most label only, one label).
      const named = names.find((n) => leaf.checkHost(n, { subject: 'default', wildcards: true, partialWildcards: false, multiLabelWildcards: false }) !== undefined);
      if (named === undefined) {
        why.push(`DANE-TA(2) chain is valid, but the certificate names none of ${names.join(', ') || '(no reference identifier)'}`);
        continue;
      }
      return { matched: 'ta', record: r, error: null };
    }
    if (!anchored) why.push('no DANE-TA(2) record matches a served certificate other than the leaf');
  }
  return fail(why.join('; '));
}

/** Each certificate signed by the next, issuers are CAs, dates valid below the anchor (last). */
function checkPath(path: readonly X509Certificate[], now: number): string | null {
  for (let j = 0; j + 1 < path.length; j++) {
    const cert = path[j];
    const issuer = path[j + 1];
    if (cert === undefined || issuer === undefined) return 'the chain is incomplete';
    if (!issuer.ca) return `served certificate ${j + 1} is not a CA`;
    if (!cert.checkIssued(issuer) || !cert.verify(issuer.publicKey)) return `served certificate ${j} is not signed by served certificate ${j + 1}`;
    // RFC 5280 §6.1.3 (a)(2) for each certificate below the anchor; the anchor's dates are not checked.
    const from = Date.parse(cert.validFrom);
    const to = Date.parse(cert.validTo);
    if (now < from) return `served certificate ${j} is not valid before ${cert.validFrom}`;
    if (now > to) return `served certificate ${j} expired ${cert.validTo}`;
  }
  return null;
}
