/**
 * Text report for a domain: the two grades, every finding (with where it was seen), the MX set,
 * the policies, then each host's report in the host format.
 *
 * Invariants: pure (report in, string out); the encryption grade and the downgrade resistance
 * are shown separately, never merged into one letter.
 */
import type { DomainReport } from './domain.js';
import { renderFindings, renderHostReport } from './render-text.js';

export function renderDomainReport(r: DomainReport): string {
  const L: string[] = [];
  L.push(`postseal check --domain ${r.domain}`);
  if (r.status === 'error') {
    L.push(`  could not check: ${r.error?.code ?? 'ERROR'}: ${r.error?.message ?? ''}`);
    return L.join('\n') + '\n';
  }
  L.push(`Encryption grade ${r.grade ?? '-'}   Downgrade resistance: ${r.downgrade}`);
  L.push('', 'Findings', ...renderFindings(r.findings, true));
  L.push('', 'MX');
  if (r.mx.nullMx) L.push('  null MX: this domain accepts no mail (RFC 7505)');
  if (r.mx.implicit) L.push(`  no MX records: ${r.domain} itself is the mail host`);
  for (const h of r.mx.hosts) {
    const grades = r.hosts.filter((x) => x.target.host === h.name).map((x) => `${x.target.address} ${x.grade ?? 'error'}`);
    L.push(`  ${String(h.preference).padStart(3)} ${h.name}  ${grades.join(', ') || '(no address)'}`);
  }
  const m = r.mtaSts;
  L.push('', 'Policies');
  L.push(`  MTA-STS   ${m.policy ? `mode ${m.policy.mode}, max_age ${m.policy.maxAge}, mx ${m.policy.mx.join(' ')} (id ${m.id ?? '?'})` : m.error ?? 'none'}`);
  for (const mm of m.mxMatches) L.push(`            ${mm.mx}: ${mm.pattern ? `matches ${mm.pattern}` : 'NOT covered'}`);
  L.push(`  TLS-RPT   ${r.tlsRpt.record ?? 'none'}${r.tlsRpt.error ? ` (${r.tlsRpt.error})` : ''}`);
  if (r.dane.length === 0) L.push('  DANE      no TLSA records');
  for (const d of r.dane) {
    L.push(`  DANE      ${d.name} ${d.validated ? 'DNSSEC validated' : 'not validated (no AD bit)'}`);
    for (const t of d.records) L.push(`            ${t.usage} ${t.selector} ${t.matchingType} ${t.data.slice(0, 16)}… [${t.address}] ${t.result}`);
  }
  L.push(`  SPF       ${r.spf.record ?? 'none'}${r.spf.error ? ` (${r.spf.error})` : ''}`);
  L.push(`  DMARC     ${r.dmarc.record ?? 'none'}${r.dmarc.orgRecord ? ' (organizational domain)' : ''}${r.dmarc.error ? ` (${r.dmarc.error})` : ''}`);
  if (r.dkim.source !== null && r.dkim.selectors.length === 0) L.push(`  DKIM      no key for ${r.domain} in ${r.dkim.source}`);
  for (const d of r.dkim.selectors) {
    const what = d.status === 'match' ? 'published, matches our key' : d.status === 'different-key' ? 'DIFFERENT KEY published' : d.status === 'missing' ? 'NOT published' : d.status === 'malformed' ? 'MALFORMED record' : 'lookup failed';
    L.push(`  DKIM      ${d.name} (${d.algorithm}${d.active ? ', active' : ', retired'}): ${what}${d.detail && d.status !== 'missing' ? ` (${d.detail})` : ''}`);
    if (d.fix) L.push(`            publish: ${d.fix}`);
  }
  for (const h of r.hosts) L.push('', '-'.repeat(72), renderHostReport(h).trimEnd());
  return L.join('\n') + '\n';
}
