/**
 * Grading: pure functions from findings (and a few facts) to grades.
 *
 * Encryption grade (one host), first matching row wins:
 *
 * | rule                                                                  | grade |
 * |-----------------------------------------------------------------------|-------|
 * | any critical finding (no STARTTLS, injection, NULL/EXPORT/RC4, DANE)  | F     |
 * | two or more high findings                                             | D     |
 * | one high finding (untrusted/expired/mismatched cert, state kept, ...) | C     |
 * | any medium finding (TLS 1.0/1.1, RSA kx, anonymous suites, SHA-1 ...) | B     |
 * | any low finding (no TLS 1.3, CBC-SHA1, client renegotiation)          | A-    |
 * | TLS 1.3 accepted, certificate trusted and matching, nothing above     | A+    |
 * | otherwise                                                             | A     |
 *
 * Info findings never lower a grade. A domain's encryption grade is the worst of its hosts.
 *
 * Downgrade resistance (domain mode), strongest first: 'dane' (TLSA records published, DNSSEC
 * validated by the resolver (AD bit), and every MX certificate matches them), 'mta-sts-enforce'
 * (a valid policy in mode enforce: senders that apply it never fall back to plaintext or an
 * unverified peer; an MX that fails it is not downgraded but skipped, which the findings
 * mta-sts.mx-not-covered / mta-sts.cert-invalid say), 'mta-sts-testing' (a valid policy in
 * testing mode), 'none'.
 */
import { GRADES, type Finding, type Grade, type HostReport, type Severity } from './types.js';

export function gradeFromFindings(findings: readonly Finding[], bonus: boolean): Grade {
  const count = (s: Severity): number => findings.filter((f) => f.severity === s).length;
  if (count('critical') > 0) return 'F';
  if (count('high') >= 2) return 'D';
  if (count('high') === 1) return 'C';
  if (count('medium') > 0) return 'B';
  if (count('low') > 0) return 'A-';
  return bonus ? 'A+' : 'A';
}

/** Encryption grade of one host report (null when it could not be checked). */
export function gradeHost(r: HostReport): Grade | null {
  if (r.status !== 'checked') return null;
  const c = r.certificate;
  const bonus = r.tls !== null && r.tls.versions['TLSv1.3'] === 'accepted' && c !== null && c.trusted && c.nameMatches;
  return gradeFromFindings(r.findings, bonus);
}

/** The worse of two grades. */
export function worstGrade(a: Grade, b: Grade): Grade {
  return GRADES.indexOf(a) >= GRADES.indexOf(b) ? a : b;
}

export const DOWNGRADE_LEVELS = ['none', 'mta-sts-testing', 'mta-sts-enforce', 'dane'] as const;
export type DowngradeLevel = (typeof DOWNGRADE_LEVELS)[number];

export interface DowngradeInputs {
  mtaSts: { mode: 'enforce' | 'testing' | 'none'; valid: boolean; allMxMatch: boolean; allCertsValid: boolean } | null;
  dane: { published: boolean; validated: boolean; allMatch: boolean };
}

export function gradeDowngrade(i: DowngradeInputs): DowngradeLevel {
  if (i.dane.published && i.dane.validated && i.dane.allMatch) return 'dane';
  const m = i.mtaSts;
  if (m === null || !m.valid || m.mode === 'none') return 'none';
  // RFC 8461 §5: in enforce mode a sender does not deliver to an MX that fails the policy; that
  // is a delivery failure (reported as its own finding), not a weaker downgrade resistance.
  if (m.mode === 'enforce') return 'mta-sts-enforce';
  return 'mta-sts-testing';
}
