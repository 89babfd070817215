/**
 * The text report: what a mail admin reads in ten seconds. Grade and findings first, then TLS
 * facts, the probes, the certificate, and the conversation with the TLS upgrade marked.
 *
 * Invariants: pure (report in, string out); every line received before TLS is labelled
 * "plain" with a note that it is unauthenticated; no colour codes (pipes and logs stay clean).
 */
import type { CertificateFacts, Finding, HostReport, ProbeOutcome, TranscriptEntry } from './types.js';

const SEV_LABEL: Readonly<Record<Finding['severity'], string>> = {
  critical: 'CRITICAL', high: 'HIGH', medium: 'MEDIUM', low: 'LOW', info: 'INFO',
};

export function renderFindings(findings: readonly Finding[], showWhere: boolean): string[] {
  if (findings.length === 0) return ['  none'];
  const out: string[] = [];
  for (const f of findings) {
    out.push(`  ${SEV_LABEL[f.severity].padEnd(8)} ${f.title}${showWhere ? `  [${f.where}]` : ''}`);
    if (f.detail) out.push(`           ${f.detail}`);
  }
  return out;
}

const OUTCOME_WORD: Readonly<Record<ProbeOutcome, string>> = {
  accepted: 'accepted', refused: 'refused', 'not-tested': 'not tested', 'not-testable': 'not testable here',
};

function yes(b: boolean): string {
  return b ? 'yes' : 'NO';
}

export function renderCertificate(c: CertificateFacts): string[] {
  const out: string[] = [];
  const leaf = c.chain[0];
  if (!leaf) return ['  (no certificate)'];
  out.push(`  subject    ${leaf.subject}`);
  out.push(`  names      ${leaf.subjectAltNames.map((n) => n.value).join(', ') || '(no SAN)'}`);
  out.push(`  issuer     ${leaf.issuer}`);
  out.push(`  valid      ${leaf.notBefore.slice(0, 10)} to ${leaf.notAfter.slice(0, 10)} (${c.daysLeft ?? '?'} days left)`);
  out.push(`  key        ${leaf.key.type} ${leaf.key.bits ?? '?'}${leaf.key.curve ? ` (${leaf.key.curve})` : ''}, signed ${leaf.signatureAlgorithm.name}`);
  out.push(`  trusted    ${yes(c.trusted)}${c.verifyError ? ` (${c.verifyError})` : ''}    name matches: ${yes(c.nameMatches)}`);
  if (c.problems.length > 0) out.push(`  problems   ${c.problems.join(', ')}`);
  if (c.noSni) out.push(`  no SNI     ${c.noSni.same === true ? 'same certificate' : c.noSni.same === false ? `different: ${c.noSni.subject ?? '?'}` : 'unknown'}`);
  for (const [i, cert] of c.chain.slice(1).entries()) out.push(`  chain[${i + 1}]   ${cert.subject} (issuer ${cert.issuer})`);
  out.push(`  sha256     ${leaf.fingerprint256}`);
  return out;
}

export function renderTranscript(t: readonly TranscriptEntry[]): string[] {
  const out: string[] = [];
  let upgraded = false;
  for (const e of t) {
    if (e.dir === 'event' && e.text === '--- TLS upgrade ---') continue;
    if (e.tls && !upgraded) {
      upgraded = true;
      out.push('  ======== TLS upgrade: everything below is encrypted ========');
    }
    const where = e.tls ? 'tls  ' : 'plain';
    const who = e.dir === 'client' ? 'C:' : e.dir === 'server' ? 'S:' : '--';
    out.push(`  ${where} ${who} ${e.text}`);
  }
  return out;
}

export function renderHostReport(r: HostReport): string {
  const t = r.target;
  const name = t.address === t.host ? t.host : `${t.host} [${t.address}]`;
  const lines: string[] = [];
  lines.push(`postseal check ${name} port ${t.port} (${t.mode === 'implicit' ? 'implicit TLS' : 'STARTTLS'}${t.submission ? ', submission' : ''})`);
  if (r.status === 'error') {
    lines.push(`  could not check: ${r.error?.code ?? 'ERROR'}: ${r.error?.message ?? ''}`);
    return lines.join('\n') + '\n';
  }
  const tl = r.tls;
  lines.push(`Grade ${r.grade ?? '-'}   ${tl ? `${tl.protocol} ${tl.cipher}${tl.group ? ` ${tl.group}` : ''}` : 'no TLS'}` +
    (r.certificate ? `   certificate ${r.certificate.trusted ? 'trusted' : 'NOT trusted'}, name ${r.certificate.nameMatches ? 'ok' : 'MISMATCH'}` : ''));
  lines.push('', 'Findings');
  lines.push(...renderFindings(r.findings, false));
  lines.push('', 'SMTP');
  const s = r.smtp;
  if (s.greeting) lines.push(`  greeting   ${s.greeting.code} ${s.greeting.text} (${s.greetingMs ?? '?'} ms)`);
  if (s.ehlo) lines.push(`  EHLO       ${Object.keys(s.ehlo).join(' ')}   (plaintext)`);
  if (t.mode === 'starttls') lines.push(`  STARTTLS   ${s.starttlsAdvertised ? 'advertised' : 'NOT advertised'}; reply ${s.starttlsReply ? `${s.starttlsReply.code} ${s.starttlsReply.text}` : '-'}`);
  if (s.ehloAfterTls) lines.push(`  EHLO (TLS) ${Object.keys(s.ehloAfterTls).join(' ')}`);
  lines.push(`  AUTH       before TLS: ${s.authBeforeTls.join(' ') || 'none'}; inside TLS: ${s.authAfterTls?.join(' ') || 'none'}`);
  if (tl) {
    lines.push('', 'TLS');
    lines.push(`  versions   ${Object.entries(tl.versions).map(([v, o]) => `${v} ${OUTCOME_WORD[o]}`).join(', ')}`);
    const weak = Object.entries(tl.cipherClasses).map(([c, o]) => `${c} ${OUTCOME_WORD[o.outcome]}`);
    lines.push(`  weak       ${weak.join(', ')}`);
    lines.push(`  renegotiation  client-initiated ${OUTCOME_WORD[tl.clientRenegotiation]}; RFC 5746 secure renegotiation not tested (Node does not expose it)`);
    lines.push(`  DHE/ADH    ${OUTCOME_WORD[tl.dhe.outcome]}${tl.dhe.outcome === 'accepted' ? ` (${tl.dhe.cipher ?? '?'}, ${tl.dhe.bits ?? '?'}-bit group)` : ''}`);
    lines.push(`  cipher order  ${tl.cipherOrder.outcome === 'server' ? "server's" : tl.cipherOrder.outcome === 'client' ? "client's (the server does not impose its own)" : tl.cipherOrder.outcome}${tl.cipherOrder.evidence ? ` (${tl.cipherOrder.evidence})` : ''}`);
  }
  const p = r.probes;
  lines.push('', 'Probes (no mail sent)');
  lines.push(`  injection, whole line    ${p.injectionWholeLine.outcome}${p.injectionWholeLine.evidence ? ` (${p.injectionWholeLine.evidence})` : ''}`);
  lines.push(`  injection, partial line  ${p.injectionPartialLine.outcome}${p.injectionPartialLine.evidence ? ` (${p.injectionPartialLine.evidence})` : ''}`);
  lines.push(`  state across STARTTLS    ${p.stateReset.outcome}${p.stateReset.evidence ? ` (${p.stateReset.evidence})` : ''}`);
  if (p.mailBeforeTls) lines.push(`  MAIL before STARTTLS     ${p.mailBeforeTls.code} ${p.mailBeforeTls.text}`);
  for (const [label, res] of [['STARTTLS inside TLS     ', p.starttlsAgain], ['STARTTLS with argument  ', p.starttlsArgument], ['EHLO before greeting    ', p.earlyTalker]] as const) {
    if (res.outcome !== 'not-tested' || res.evidence) lines.push(`  ${label} ${res.outcome}${res.evidence ? ` (${res.evidence})` : ''}`);
  }
  if (p.smuggling) {
    lines.push('', 'SMTP smuggling (test mails sent)');
    for (const sm of p.smuggling) lines.push(`  ${sm.variant.padEnd(14)} ${sm.outcome}  ${sm.evidence}`);
  }
  if (r.certificate) lines.push('', 'Certificate', ...renderCertificate(r.certificate));
  lines.push('', 'Conversation ("plain" lines are unauthenticated: anyone on the path could read or change them)');
  lines.push(...renderTranscript(r.transcript));
  return lines.join('\n') + '\n';
}
