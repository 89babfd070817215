/**
 * From facts to findings: a pure function over a HostReport. Every finding id, its severity and
 * the rule that raises it are in FINDING_RULES (and in SCHEMA.md); nothing else invents ids.
 *
 * Invariants: findings come out ordered by severity (critical first), then by id; the same
 * report always gives the same findings; 'not-tested' never raises a finding (only 'inconclusive'
 * raises an info finding, so a reader knows a probe could not decide).
 */
import { SEVERITIES, type CertProblem, type Finding, type HostReport, type Severity } from './types.js';

export const FINDING_RULES = {
  'starttls.missing': { severity: 'critical', title: 'No STARTTLS: mail to this server travels in plaintext' },
  'starttls.not-advertised': { severity: 'high', title: 'STARTTLS works but is not advertised in EHLO (stripped?): senders will not use it' },
  'tls.handshake-failed': { severity: 'critical', title: 'STARTTLS accepted but the TLS handshake failed' },
  'tls.protocol-old': { severity: 'high', title: 'Negotiated protocol is older than TLS 1.2 (RFC 8996)' },
  'starttls.injection': { severity: 'critical', title: 'STARTTLS command injection: a plaintext command pipelined after STARTTLS was executed inside TLS' },
  'starttls.injection-partial': { severity: 'critical', title: 'STARTTLS command injection: a plaintext partial line was joined to data sent inside TLS' },
  'starttls.bytes-after-220': { severity: 'high', title: 'Bytes arrived after the 220 to STARTTLS (response injection risk or a broken server)' },
  'starttls.state-kept': { severity: 'high', title: 'MAIL FROM given before STARTTLS is still in effect after it (RFC 3207 §4.2)' },
  'starttls.offered-again': { severity: 'medium', title: 'STARTTLS is offered again after TLS (RFC 3207 §4.2)' },
  'starttls.again-accepted': { severity: 'medium', title: 'A second STARTTLS inside TLS is answered 220 (RFC 3207 §4.2: it must be refused)' },
  'starttls.argument-accepted': { severity: 'low', title: 'STARTTLS with an argument is accepted (RFC 3207 §4: 501 expected)' },
  'auth.before-tls': { severity: 'high', title: 'AUTH is offered before TLS: passwords can be sent in plaintext' },
  'submission.mail-before-tls': { severity: 'high', title: 'Submission port accepts MAIL before STARTTLS (RFC 3207 §4: 530 expected)' },
  'tls.version.tls1': { severity: 'medium', title: 'TLS 1.0 accepted (RFC 8996)' },
  'tls.version.tls1_1': { severity: 'medium', title: 'TLS 1.1 accepted (RFC 8996)' },
  'tls.no-tls1_3': { severity: 'low', title: 'TLS 1.3 not supported (RFC 9325 §3.1.1)' },
  'tls.cipher.null': { severity: 'critical', title: 'NULL (unencrypted) cipher suites accepted' },
  'tls.cipher.export': { severity: 'critical', title: 'EXPORT cipher suites accepted' },
  'tls.cipher.rc4': { severity: 'critical', title: 'RC4 cipher suites accepted (RFC 7465)' },
  // Medium, not critical: only a client that offers anonymous suites (so verifies nothing anyway)
  // can end up on one; Postfix enables them by default for opportunistic TLS.
  'tls.cipher.anon': { severity: 'medium', title: 'Anonymous (unauthenticated) cipher suites accepted' },
  'tls.cipher.3des': { severity: 'high', title: '3DES cipher suites accepted (Sweet32)' },
  'tls.cipher.rsa-kx': { severity: 'medium', title: 'RSA key exchange accepted: no forward secrecy (RFC 9325 §4.1)' },
  'tls.cipher.cbc-sha1': { severity: 'low', title: 'CBC cipher suites with SHA-1 MAC accepted (RFC 9325 §4.2)' },
  'tls.dh-insecure': { severity: 'high', title: 'DHE/ADH suites use a Diffie-Hellman group under 1024 bits (Logjam)' },
  'tls.dh-small': { severity: 'medium', title: 'DHE/ADH suites use a Diffie-Hellman group under 2048 bits (Logjam; RFC 9325 asks for at least 2048)' },
  'tls.cipher-order-client': { severity: 'info', title: 'The server does not impose its cipher order: the client\'s preference decides' },
  'tls.renegotiation-client': { severity: 'low', title: 'Client-initiated renegotiation accepted (RFC 9325 §3.5)' },
  'cert.expired': { severity: 'high', title: 'Certificate expired' },
  'cert.not-yet-valid': { severity: 'high', title: 'Certificate not yet valid' },
  'cert.self-signed': { severity: 'high', title: 'Certificate is self-signed' },
  'cert.untrusted': { severity: 'high', title: 'Certificate chain is not trusted' },
  'cert.name-mismatch': { severity: 'high', title: 'Certificate does not match the host name checked' },
  'cert.expires-soon': { severity: 'medium', title: 'Certificate expires within 14 days' },
  'cert.weak-key': { severity: 'high', title: 'Certificate key is too small (RSA < 2048, EC < 256 bits)' },
  'cert.sha1-signature': { severity: 'medium', title: 'Certificate signed with SHA-1 or MD5' },
  'cert.no-sni-different': { severity: 'info', title: 'Without SNI the server presents a different certificate' },
  'smuggling.end-of-data': { severity: 'high', title: 'SMTP smuggling: a non-standard end-of-data sequence ended the message' },
  'probe.inconclusive': { severity: 'info', title: 'A probe could not reach a verdict' },
  // Domain mode (where = the domain, or the MX host).
  'mx.null': { severity: 'info', title: 'Null MX (RFC 7505): the domain accepts no mail' },
  'mx.none': { severity: 'low', title: 'No MX records: senders fall back to the A/AAAA of the domain (RFC 5321 §5.1)' },
  'mx.no-address': { severity: 'high', title: 'An MX host has no A or AAAA record' },
  'host.unreachable': { severity: 'high', title: 'An MX address could not be checked' },
  'downgrade.unprotected': { severity: 'medium', title: 'No MTA-STS (enforce) and no DANE: STARTTLS can be stripped by anyone on the path' },
  'mta-sts.txt-invalid': { severity: 'medium', title: 'The _mta-sts TXT record is invalid' },
  'mta-sts.policy-unavailable': { severity: 'high', title: 'The MTA-STS TXT record exists but the policy could not be fetched' },
  'mta-sts.policy-invalid': { severity: 'high', title: 'The MTA-STS policy is invalid' },
  'mta-sts.testing': { severity: 'info', title: 'MTA-STS is in testing mode: failures are reported, not enforced' },
  'mta-sts.mx-not-covered': { severity: 'high', title: 'An MX host is not covered by the MTA-STS mx: patterns' },
  'mta-sts.cert-invalid': { severity: 'high', title: 'An MX certificate would fail MTA-STS validation (untrusted or wrong name)' },
  'mta-sts.max-age-short': { severity: 'low', title: 'MTA-STS max_age is under one day' },
  'tlsrpt.missing': { severity: 'low', title: 'No TLS-RPT record: nobody hears about TLS failures (RFC 8460)' },
  'tlsrpt.invalid': { severity: 'low', title: 'The TLS-RPT record is invalid' },
  'dane.mismatch': { severity: 'critical', title: 'DANE TLSA records do not match the served certificate: DANE senders will not deliver' },
  'dane.unusable': { severity: 'medium', title: 'TLSA records with usages unusable for SMTP (RFC 7672 §3.1.3)' },
  'dane.lookup-failed': { severity: 'high', title: 'The TLSA lookup failed (SERVFAIL: DNSSEC bogus or a broken zone): DANE senders defer mail to this MX (RFC 7672 §2.2)' },
  'dns.lookup-failed': { severity: 'medium', title: 'A DNS lookup failed: that part of the check could not complete' },
  'dane.not-validated': { severity: 'info', title: 'TLSA records found but the resolver gave no DNSSEC validation (AD bit): not validated' },
  'spf.missing': { severity: 'low', title: 'No SPF record' },
  'spf.invalid': { severity: 'low', title: 'The SPF record is invalid' },
  'dmarc.missing': { severity: 'low', title: 'No DMARC record' },
  'dmarc.invalid': { severity: 'low', title: 'The DMARC record is invalid' },
  'dmarc.policy-none': { severity: 'info', title: 'DMARC policy is p=none (monitoring only)' },
  // DKIM keys of the data directory against DNS (check/dkim.ts); the detail carries the record to publish.
  'dkim.missing': { severity: 'high', title: 'A DKIM key we sign with is not published: receivers cannot verify our signatures' },
  'dkim.mismatch': { severity: 'high', title: 'A DKIM selector is published with a different key: our signatures with it fail' },
  'dkim.malformed': { severity: 'high', title: 'A DKIM key record is malformed: our signatures with it fail' },
  'dkim.inactive-missing': { severity: 'low', title: 'A retired DKIM key (not signing any more) is no longer published: mail signed with it earlier cannot be verified' },
  'dkim.no-key': { severity: 'info', title: 'No DKIM key for this domain in the data directory (postseal dkim keygen)' },
} as const satisfies Record<string, { severity: Severity; title: string }>;

export type FindingId = keyof typeof FINDING_RULES;

export function finding(id: FindingId, detail: string, where: string): Finding {
  const rule = FINDING_RULES[id];
  return { id, severity: rule.severity, title: rule.title, detail, where };
}

export function sortFindings(list: Finding[]): Finding[] {
  const rank = (s: Severity): number => SEVERITIES.indexOf(s);
  return [...list].sort((a, b) => rank(a.severity) - rank(b.severity) || a.id.localeCompare(b.id) || a.where.localeCompare(b.where));
}

const PROBLEM_IDS: Readonly<Record<CertProblem, FindingId>> = {
  expired: 'cert.expired',
  'not-yet-valid': 'cert.not-yet-valid',
  'self-signed': 'cert.self-signed',
  untrusted: 'cert.untrusted',
  'name-mismatch': 'cert.name-mismatch',
};

export function deriveHostFindings(r: HostReport): Finding[] {
  const where = `${r.target.address === r.target.host ? r.target.host : `${r.target.host} [${r.target.address}]`}:${r.target.port}`;
  const out: Finding[] = [];
  const add = (id: FindingId, detail: string): void => void out.push(finding(id, detail, where));
  const s = r.smtp;
  if (r.target.mode === 'starttls') {
    const st = s.starttlsReply;
    if (!s.starttlsAdvertised && r.tls !== null) add('starttls.not-advertised', `EHLO did not list STARTTLS, yet STARTTLS answered ${st?.code ?? '?'} and TLS worked`);
    else if (r.tls === null && (st === null || st.code !== 220)) add('starttls.missing', s.starttlsAdvertised ? `STARTTLS advertised but answered ${st ? `${st.code} ${st.text}` : 'nothing'}` : `EHLO did not list STARTTLS; STARTTLS answered ${st ? `${st.code} ${st.text}` : 'nothing'}`);
    else if (r.tls === null) add('tls.handshake-failed', st?.text ?? '');
    if (s.authBeforeTls.length > 0) add('auth.before-tls', `plaintext EHLO lists AUTH ${s.authBeforeTls.join(' ')}`);
    if (s.bytesAfterStarttls !== null) add('starttls.bytes-after-220', `received before the handshake: "${s.bytesAfterStarttls}"`);
  }
  if (s.starttlsOfferedAgain === true) add('starttls.offered-again', 'EHLO inside TLS still lists STARTTLS');
  const p = r.probes;
  if (p.injectionWholeLine.outcome === 'executed') add('starttls.injection', p.injectionWholeLine.evidence);
  if (p.injectionPartialLine.outcome === 'executed') add('starttls.injection-partial', p.injectionPartialLine.evidence);
  if (p.stateReset.outcome === 'kept') add('starttls.state-kept', p.stateReset.evidence);
  if (p.starttlsAgain.outcome === 'accepted') add('starttls.again-accepted', p.starttlsAgain.evidence);
  if (p.starttlsArgument.outcome === 'accepted') add('starttls.argument-accepted', p.starttlsArgument.evidence);
  // The early talker is a fact, not a finding: most servers answer (Postfix without postscreen,
  // postseal); refusing early talkers is an anti-spam defence, not a property of TLS.
  const decided = [
    ['whole-line injection', p.injectionWholeLine], ['partial-line injection', p.injectionPartialLine], ['state reset', p.stateReset],
    ['second STARTTLS', p.starttlsAgain], ['STARTTLS with an argument', p.starttlsArgument], ['early talker', p.earlyTalker],
    ...(p.smuggling ?? []).map((sm) => [`smuggling ${sm.variant}`, sm] as const),
  ] as const;
  for (const [name, res] of decided) {
    if (res.outcome === 'inconclusive') add('probe.inconclusive', `${name}: ${res.evidence}`);
  }
  if (r.target.submission && r.target.mode === 'starttls' && p.mailBeforeTls !== null && p.mailBeforeTls.code >= 200 && p.mailBeforeTls.code < 300) {
    add('submission.mail-before-tls', `MAIL FROM:<> before STARTTLS answered ${p.mailBeforeTls.code} ${p.mailBeforeTls.text}`);
  }
  for (const sm of p.smuggling ?? []) {
    if (sm.outcome === 'end-of-data') add('smuggling.end-of-data', `${sm.variant}: ${sm.evidence}`);
  }
  const t = r.tls;
  if (t !== null) {
    if (t.protocol === 'TLSv1' || t.protocol === 'TLSv1.1' || t.protocol.startsWith('SSL')) add('tls.protocol-old', `negotiated ${t.protocol}`);
    if (t.versions.TLSv1 === 'accepted') add('tls.version.tls1', 'a handshake limited to TLS 1.0 succeeded');
    if (t.versions['TLSv1.1'] === 'accepted') add('tls.version.tls1_1', 'a handshake limited to TLS 1.1 succeeded');
    if (t.versions['TLSv1.3'] === 'refused') add('tls.no-tls1_3', 'a handshake limited to TLS 1.3 was refused');
    const classes = [['null', 'tls.cipher.null'], ['export', 'tls.cipher.export'], ['rc4', 'tls.cipher.rc4'], ['anon', 'tls.cipher.anon'], ['3des', 'tls.cipher.3des'], ['rsa-kx', 'tls.cipher.rsa-kx'], ['cbc-sha1', 'tls.cipher.cbc-sha1']] as const;
    for (const [cls, id] of classes) {
      const c = t.cipherClasses[cls];
      if (c.outcome === 'accepted') add(id, `server chose ${c.cipher ?? '?'} when offered only this class`);
    }
    if (t.clientRenegotiation === 'accepted') add('tls.renegotiation-client', 'a TLS 1.2 renegotiation started by the client completed');
    const dh = t.dhe;
    if (dh.outcome === 'accepted' && dh.bits !== null && dh.bits < 2048) add(dh.bits < 1024 ? 'tls.dh-insecure' : 'tls.dh-small', `${dh.cipher ?? '?'} with a ${dh.bits}-bit group`);
    if (t.cipherOrder.outcome === 'client') add('tls.cipher-order-client', t.cipherOrder.evidence);
    if (t.cipherOrder.outcome === 'inconclusive') add('probe.inconclusive', `cipher order: ${t.cipherOrder.evidence}`);
  }
  const c = r.certificate;
  if (c !== null) {
    // Every problem, not only the one OpenSSL stopped at (an expired certificate from an unknown
    // CA is both expired and untrusted).
    for (const p of c.problems) {
      if (p === 'name-mismatch') add('cert.name-mismatch', c.nameError ?? `names do not cover ${r.target.host}`);
      else if (p === 'expired' || p === 'not-yet-valid') add(PROBLEM_IDS[p], `valid ${c.chain[0]?.notBefore ?? '?'} to ${c.chain[0]?.notAfter ?? '?'}${c.verifyError ? `; verification: ${c.verifyError}` : ''}`);
      else add(PROBLEM_IDS[p], p === 'untrusted' && c.verifyError !== null && (c.verifyError === 'CERT_HAS_EXPIRED' || c.verifyError === 'CERT_NOT_YET_VALID') ? `no path to a trusted CA by signature (OpenSSL stopped at ${c.verifyError})` : `verification: ${c.verifyError ?? 'failed'}`);
    }
    if (c.daysLeft !== null && c.daysLeft >= 0 && c.daysLeft < 14) add('cert.expires-soon', `${c.daysLeft} days left`);
    const leaf = c.chain[0];
    if (leaf) {
      const bits = leaf.key.bits ?? 0;
      const weak = leaf.key.type === 'rsa' || leaf.key.type === 'rsa-pss' ? bits < 2048 : leaf.key.type === 'ec' ? bits < 256 : leaf.key.type === 'dsa';
      if (weak) add('cert.weak-key', `${leaf.key.type} ${bits} bits`);
    }
    // The self-signature of a root is not checked by anyone, so only non-root certificates count.
    for (const cert of c.chain.filter((x) => !x.selfSigned)) {
      if (/sha1|md5/i.test(cert.signatureAlgorithm.name)) add('cert.sha1-signature', `${cert.subject}: ${cert.signatureAlgorithm.name}`);
    }
    if (c.noSni?.same === false) add('cert.no-sni-different', `without SNI: ${c.noSni.subject ?? '?'}`);
  }
  return sortFindings(out);
}
