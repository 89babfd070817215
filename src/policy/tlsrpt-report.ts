/**
 * The TLS-RPT aggregate report (RFC 8460 §4.4) made from stored counters, its file name (§5.1)
 * and the report message for `mailto:` rua (§5.3). Pure: no I/O (gzip is node:zlib, in memory).
 *
 * Invariants: one report covers one policy domain and one UTC day (§4.1, or the part of today up
 * to now when the operator sends early); one `policies[]` entry per applied policy (policy type
 * and policy strings); a counter with result 'success' counts in the summary only, every other
 * result is both in the summary and in failure-details (§4.4); numbers are integers ≥ 0.
 */
import { randomBytes } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { rfc5322Date } from '../protocol/date.js';
import type { TlsRptCount } from '../store/tlsrpt.js';

/** RFC 8460 §4.4 failure-details entry (the fields we can fill; all but result-type and count are optional). */
export interface TlsRptFailureDetails {
  'result-type': string;
  'sending-mta-ip'?: string;
  'receiving-mx-hostname'?: string;
  'receiving-ip'?: string;
  'failed-session-count': number;
  'additional-information'?: string;
  'failure-reason-code'?: string;
}

export interface TlsRptPolicyEntry {
  policy: {
    'policy-type': 'sts' | 'tlsa' | 'no-policy-found';
    'policy-string'?: string[];
    'policy-domain': string;
    'mx-host'?: string[];
  };
  summary: { 'total-successful-session-count': number; 'total-failure-session-count': number };
  'failure-details'?: TlsRptFailureDetails[];
}

/** The JSON report (RFC 8460 §4.4). */
export interface TlsRptReport {
  'organization-name': string;
  'date-range': { 'start-datetime': string; 'end-datetime': string };
  'contact-info': string;
  'report-id': string;
  policies: TlsRptPolicyEntry[];
}

export interface ReportIdentity {
  /** organization-name (§4.4). */
  organizationName: string;
  /** contact-info (§4.4): an email address or URI. */
  contactInfo: string;
  /** The reporting host or domain (TLS-Report-Submitter, the file name's sender, §5.1/§5.3). */
  submitter: string;
}

export interface BuildReportInput extends ReportIdentity {
  policyDomain: string;
  /** ms since epoch; end exclusive. */
  startAt: number;
  endAt: number;
  reportId: string;
  counts: readonly TlsRptCount[];
}

/** RFC 3339 date-time in UTC without fractions, as the RFC's example writes it. */
function dateTime(ms: number): string {
  return new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** A fresh report-id (§4.4: any unique string; §5.3 puts it in the Subject between < >). */
export function newReportId(submitter: string, now: number = Date.now()): string {
  return `${new Date(now).toISOString().slice(0, 10).replace(/-/g, '')}.${randomBytes(8).toString('hex')}@${submitter}`;
}

/** The day's bounds in ms: [00:00:00Z, next 00:00:00Z). */
export function dayBounds(day: string): { startAt: number; endAt: number } {
  const startAt = Date.parse(`${day}T00:00:00Z`);
  return { startAt, endAt: startAt + 86_400_000 };
}

/** The `mx:` patterns of an MTA-STS policy's lines (RFC 8461 §3.2), for the policy's mx-host. */
function stsMxPatterns(lines: readonly string[]): string[] {
  return lines.flatMap((l) => {
    const m = /^mx\s*:\s*(\S+)\s*$/i.exec(l);
    return m?.[1] !== undefined ? [m[1]] : [];
  });
}

export function buildTlsRptReport(input: BuildReportInput): TlsRptReport {
  const groups = new Map<string, TlsRptCount[]>();
  for (const c of input.counts) {
    const key = JSON.stringify([c.policyType, c.policyStrings]);
    const list = groups.get(key) ?? [];
    list.push(c);
    groups.set(key, list);
  }
  const policies: TlsRptPolicyEntry[] = [];
  for (const counts of groups.values()) {
    const first = counts[0];
    if (first === undefined) continue;
    let ok = 0;
    let failed = 0;
    const details = new Map<string, TlsRptFailureDetails>();
    for (const c of counts) {
      if (c.result === 'success') {
        ok += c.count;
        continue;
      }
      failed += c.count;
      const key = JSON.stringify([c.result, c.mxHost, c.receivingIp]);
      const d = details.get(key);
      if (d !== undefined) {
        d['failed-session-count'] += c.count;
        if (c.detail !== null) d['failure-reason-code'] = c.detail;
        continue;
      }
      details.set(key, {
        'result-type': c.result,
        ...(c.mxHost !== '' ? { 'receiving-mx-hostname': c.mxHost } : {}),
        ...(c.receivingIp !== '' ? { 'receiving-ip': c.receivingIp } : {}),
        'failed-session-count': c.count,
        // §4.4: failure-reason-code is free text for a TLS error code or message.
        ...(c.detail !== null ? { 'failure-reason-code': c.detail } : {}),
      });
    }
    // §4.4 mx-host: for "sts" the policy's MX patterns; for "tlsa" the MX host the records are for.
    const mxHosts =
      first.policyType === 'sts' ? stsMxPatterns(first.policyStrings) : [...new Set(counts.map((c) => c.mxHost).filter((h) => h !== ''))].sort();
    policies.push({
      policy: {
        'policy-type': first.policyType,
        ...(first.policyType !== 'no-policy-found' ? { 'policy-string': [...first.policyStrings] } : {}),
        'policy-domain': input.policyDomain,
        ...(mxHosts.length > 0 && first.policyType !== 'no-policy-found' ? { 'mx-host': mxHosts } : {}),
      },
      summary: { 'total-successful-session-count': ok, 'total-failure-session-count': failed },
      ...(details.size > 0 ? { 'failure-details': [...details.values()] } : {}),
    });
  }
  return {
    'organization-name': input.organizationName,
    // §4.4: the period the report covers; the RFC's example ends at 23:59:59Z.
    'date-range': { 'start-datetime': dateTime(input.startAt), 'end-datetime': dateTime(input.endAt - 1000) },
    'contact-info': input.contactInfo,
    'report-id': input.reportId,
    policies,
  };
}

export function gzipReport(report: TlsRptReport): Buffer {
  return gzipSync(Buffer.from(JSON.stringify(report), 'utf8'));
}

/**
 * RFC 8460 §5.1: `sender "!" policy-domain "!" begin-timestamp "!" end-timestamp ["!" unique-id]
 * "." extension`, timestamps in seconds since the epoch, extension "json.gz" when gzipped.
 */
export function reportFileName(submitter: string, policyDomain: string, startAt: number, endAt: number, uniqueId?: string): string {
  const unique = uniqueId !== undefined ? `!${uniqueId.replace(/[^A-Za-z0-9]/g, '')}` : '';
  return `${submitter}!${policyDomain}!${Math.floor(startAt / 1000)}!${Math.floor((endAt - 1000) / 1000)}${unique}.json.gz`;
}

export interface ReportMessageInput {
  from: string;
  to: string;
  submitter: string;
  policyDomain: string;
  reportId: string;
  startAt: number;
  endAt: number;
  gz: Buffer;
  date: Date;
}

/** Folds a header field at spaces so no line passes 78 characters (RFC 5322 §2.2.3). */
function fold(field: string): string {
  const words = field.split(' ');
  const lines: string[] = [];
  let line = '';
  for (const w of words) {
    if (line !== '' && line.length + 1 + w.length > 78) {
      lines.push(line);
      line = ` ${w}`;
    } else line = line === '' ? w : `${line} ${w}`;
  }
  lines.push(line);
  return lines.join('\r\n');
}

/**
 * The report as an Internet message (RFC 8460 §5.3): TLS-Report-Domain and TLS-Report-Submitter
 * header fields, the suggested Subject, multipart/report; report-type="tlsrpt" with a short
 * text/plain part and the gzipped report as application/tlsrpt+gzip (§5.1, §6.4), base64.
 * CRLF line endings throughout.
 */
export function buildReportMessage(m: ReportMessageInput): Buffer {
  const boundary = `----=_tlsrpt_${randomBytes(12).toString('hex')}`;
  const file = reportFileName(m.submitter, m.policyDomain, m.startAt, m.endAt, m.reportId.split('@')[0]);
  const b64 = m.gz.toString('base64').replace(/.{1,76}/g, '$&\r\n');
  const lines = [
    `From: <${m.from}>`,
    `To: <${m.to}>`,
    `Date: ${rfc5322Date(m.date)}`,
    `Message-ID: <${m.reportId}>`,
    // §5.3: "Report Domain: {policy domain} Submitter: {submitter} Report-ID: <{report id}>".
    fold(`Subject: Report Domain: ${m.policyDomain} Submitter: ${m.submitter} Report-ID: <${m.reportId}>`),
    `TLS-Report-Domain: ${m.policyDomain}`,
    `TLS-Report-Submitter: ${m.submitter}`,
    // RFC 3834 §5: a machine-made message; auto-responders stay quiet.
    'Auto-Submitted: auto-generated',
    'MIME-Version: 1.0',
    `Content-Type: multipart/report; report-type="tlsrpt";\r\n boundary="${boundary}"`,
    '',
    'This is a multipart message in MIME format.',
    '',
    `--${boundary}`,
    'Content-Type: text/plain; charset="us-ascii"',
    'Content-Transfer-Encoding: 7bit',
    '',
    `This is an aggregate TLS report from ${m.submitter} for ${m.policyDomain}`,
    `covering ${dateTime(m.startAt)} to ${dateTime(m.endAt - 1000)} (RFC 8460).`,
    '',
    `--${boundary}`,
    'Content-Type: application/tlsrpt+gzip',
    'Content-Transfer-Encoding: base64',
    `Content-Disposition: attachment;\r\n filename="${file}"`,
    '',
  ];
  return Buffer.from(`${lines.join('\r\n')}\r\n${b64}--${boundary}--\r\n`, 'latin1');
}
