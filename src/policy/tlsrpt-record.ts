/**
 * The TLS-RPT DNS record (RFC 8460 §3): `v=TLSRPTv1; rua=URI[,URI]` at `_smtp._tls.DOMAIN`.
 * One parser, used by the checker (check/domain.ts through check/policies.ts) and by the report
 * sender (tlsrpt-send.ts).
 *
 * Invariants: pure; exactly one record starting with `v=TLSRPTv1` counts; rua entries are
 * `mailto:` or `https:` URIs (§3), anything else is an error, never silently dropped.
 */

export interface TlsRptResult {
  record: string | null;
  rua: string[];
  error: string | null;
}

/** RFC 8460 §3: exactly one "v=TLSRPTv1; rua=URI[,URI]" at _smtp._tls.DOMAIN; mailto: or https:. */
export function parseTlsRpt(records: string[]): TlsRptResult {
  const rpt = records.filter((r) => /^v=TLSRPTv1\s*(;|$)/.test(r));
  if (rpt.length === 0) return { record: null, rua: [], error: null };
  if (rpt.length > 1) return { record: rpt[0] ?? null, rua: [], error: `${rpt.length} TLS-RPT records (exactly one allowed)` };
  const record = rpt[0] ?? '';
  const rua = record.split(';').map((f) => f.trim()).find((f) => f.startsWith('rua='));
  if (rua === undefined) return { record, rua: [], error: 'rua= missing' };
  const uris = rua.slice(4).split(',').map((u) => u.trim());
  const bad = uris.filter((u) => !/^(mailto:[^\s@]+@[^\s@]+|https:\/\/\S+)$/i.test(u));
  return { record, rua: uris, error: bad.length ? `rua entries must be mailto: or https: URIs: ${bad.join(', ')}` : null };
}
