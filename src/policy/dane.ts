/**
 * DANE for SMTP (RFC 7672), the DNS side: the TLSA lookup of one MX host and port through the one
 * DNS client, and the DNSSEC status of any other lookup the engine needs (the MX RRset and the
 * address records must be secure too, RFC 7672 §2.2). The certificate matching lives in
 * tls/dane.ts (the client calls it after the handshake) and is re-exported here.
 *
 * Invariants:
 * - only an answer with the AD bit from the configured resolver counts as secure (RFC 7672 §2.2,
 *   RFC 6840 §5.7); we do not validate DNSSEC ourselves;
 * - SERVFAIL from that resolver is `bogus` (validation failed or the zone is broken): the MX
 *   must not be used; a timeout, REFUSED or an unusable reply is `error`; neither is ever read
 *   as "no TLSA";
 * - NXDOMAIN/NODATA with AD is secure with no records (DANE does not apply, §2.2.1); without AD
 *   it is insecure;
 * - `usable` is empty unless the status is secure, and holds only DANE-TA(2)/DANE-EE(3) records
 *   with known selector and matching type and well-formed data (§3.1.3); `records` keeps every
 *   record received (for `policy explain` and TLS-RPT policy strings).
 */
import type { DnsResolver, RecordType } from './dns.js';
import type { TlsaLookup } from './types.js';
import { tlsaMalformed, tlsaToString, tlsaUnusable } from '../tls/dane.js';

export { matchTlsa, tlsaMalformed, tlsaToString, tlsaUnusable, verifyDane } from '../tls/dane.js';
export type { ChainDer, DaneVerdict, TlsaMatch, TlsaRecord } from '../tls/dane.js';

/** The part of the DNS client this module needs. */
export type DaneResolver = Pick<DnsResolver, 'query'>;

export type DnssecStatus = TlsaLookup['status'];

/** RFC 7672 §3: the TLSA owner name of an MX host and port (`_25._tcp.mx.example.net`). */
export function tlsaName(mxHost: string, port: number): string {
  return `_${port}._tcp.${mxHost.replace(/\.$/, '')}`;
}

/**
 * The DNSSEC status of one lookup (RFC 7672 §2.2: the MX RRset and the address records of an
 * MX host must be secure for DANE to apply): secure (AD, answer or denial), insecure (no AD),
 * bogus (SERVFAIL), error (no usable answer).
 */
export async function dnssecStatus(resolver: DaneResolver, name: string, type: RecordType): Promise<{ status: DnssecStatus; detail: string | null }> {
  try {
    const r = await resolver.query(name, type);
    // RFC 7672 §2.1.1: SERVFAIL from a validating resolver: bogus (or broken), never "no data".
    if (r.rcode === 'SERVFAIL') return { status: 'bogus', detail: `${name} ${type}: SERVFAIL from the validating resolver (DNSSEC validation failed or the zone is broken)` };
    if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') return { status: 'error', detail: `${name} ${type}: ${r.rcode}` };
    return { status: r.ad ? 'secure' : 'insecure', detail: null };
  } catch (e) {
    return { status: 'error', detail: `${name} ${type}: ${e instanceof Error ? e.message : String(e)}` };
  }
}

/** True when the lookup is DNSSEC-validated (AD), answer or denial alike. */
export async function isSecure(resolver: DaneResolver, name: string, type: RecordType): Promise<boolean> {
  return (await dnssecStatus(resolver, name, type)).status === 'secure';
}

/** TLSA `_PORT._tcp.MXHOST` (RFC 7672 §2.2, §3) and which records are usable in SMTP (§3.1.3). */
export async function lookupTlsa(resolver: DaneResolver, mxHost: string, port: number): Promise<TlsaLookup> {
  const name = tlsaName(mxHost, port);
  let r;
  try {
    r = await resolver.query(name, 'TLSA');
  } catch (e) {
    return { status: 'error', records: [], usable: [], detail: `${name} TLSA: ${e instanceof Error ? e.message : String(e)}` };
  }
  // RFC 7672 §2.1.1: a validating resolver answers SERVFAIL to a bogus answer.
  if (r.rcode === 'SERVFAIL') return { status: 'bogus', records: [], usable: [], detail: `${name} TLSA: SERVFAIL from the validating resolver (DNSSEC validation failed or the zone is broken)` };
  if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') return { status: 'error', records: [], usable: [], detail: `${name} TLSA: ${r.rcode}` };
  const records = r.answers.flatMap((a) => (a.type === 'TLSA' ? [{ usage: a.data.usage, selector: a.data.selector, matchingType: a.data.matchingType, data: a.data.certificate }] : []));
  // RFC 7672 §2.2: without the AD bit the answer (or denial) is insecure: DANE does not apply.
  if (!r.ad) return { status: 'insecure', records, usable: [], detail: `${name} TLSA: ${records.length === 0 ? r.rcode === 'NXDOMAIN' ? 'NXDOMAIN' : 'no record' : `${records.length} record(s)`} without the AD bit (not DNSSEC-validated)` };
  // §2.2.1: a secure denial of existence: DANE does not apply to this host.
  if (records.length === 0) return { status: 'secure', records, usable: [], detail: `${name} TLSA: secure ${r.rcode === 'NXDOMAIN' ? 'NXDOMAIN' : 'NODATA'}: DANE does not apply` };
  const usable = records.filter((t) => tlsaUnusable(t) === null);
  const problems = records.flatMap((t) => {
    const why = tlsaUnusable(t);
    if (why === null) return [];
    return [`${tlsaToString(t).slice(0, 40)}: ${why}${tlsaMalformed(t) !== null ? ' (tlsa-invalid)' : ''}`];
  });
  return { status: 'secure', records, usable, detail: problems.length === 0 ? null : `${problems.length} of ${records.length} TLSA record(s) unusable: ${problems.join('; ')}` };
}
