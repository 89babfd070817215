/**
 * The DNS records a domain that sends through postseal should publish: MX, SPF, the DKIM keys in
 * the data directory, DMARC, MTA-STS (TXT and the policy file) and TLS-RPT. Suggestions: SPF and
 * DMARC start permissive enough not to lose mail (`p=none`, MTA-STS `mode: testing`); the DKIM
 * records are the exact text of our keys.
 *
 * The MTA-STS policy text and its id come from one function, mtaStsPolicy(), used both here and
 * by the HTTP server that serves the policy (src/http/mta-sts.ts): the id is a hash of the policy
 * text, so the TXT record printed here and the file served there agree, and the id changes
 * exactly when the policy does (RFC 8461 §3.1).
 */
import { createHash } from 'node:crypto';
import { checkDomain, listKeys, zoneLine } from './dkim-keys.js';

/** The policy we publish (config `http.mtaSts`); mx: the MX host names (patterns allowed by RFC 8461 §3.2). */
export interface OwnMtaStsPolicy {
  mode: 'testing' | 'enforce';
  maxAge: number;
  mx: string[];
}

/** Defaults of `http.mtaSts` (config/schema.ts): testing, one week (RFC 8461 §3.2 suggests weeks), mx: the hostname. */
export const MTA_STS_DEFAULT_MODE = 'testing';
export const MTA_STS_DEFAULT_MAX_AGE = 604_800;

/**
 * The policy file (RFC 8461 §3.2: `key: value` lines ended by LF, which the ABNF allows beside
 * CRLF) and its id: the first 20 hex digits of SHA-256 over the text
 * (§3.1: id is 1-32 alphanumerics and MUST change when the policy changes).
 */
export function mtaStsPolicy(p: OwnMtaStsPolicy): { text: string; id: string } {
  const mx = p.mx.map((m) => m.toLowerCase().replace(/\.$/, ''));
  const text = ['version: STSv1', `mode: ${p.mode}`, ...mx.map((m) => `mx: ${m}`), `max_age: ${p.maxAge}`, ''].join('\n');
  const id = createHash('sha256').update(text).digest('hex').slice(0, 20);
  return { text, id };
}

export interface DnsRecordSuggestion {
  kind: 'MX' | 'SPF' | 'DKIM' | 'DMARC' | 'MTA-STS' | 'MTA-STS-POLICY' | 'TLS-RPT';
  /** Owner name, fully qualified with the final dot; for the policy file: its URL. */
  name: string;
  /** A zone-file line (or, for the MTA-STS policy, the file's text). */
  text: string;
  note: string;
}

/**
 * `mtaSts`: the policy serve publishes (config `http.mtaSts`); without it the defaults with
 * mx: the mail host — the same policy serve serves when its hostname is that host.
 */
export function dnsRecords(domainIn: string, opts: { dataDir: string; hostname?: string; mtaSts?: Partial<OwnMtaStsPolicy> }): DnsRecordSuggestion[] {
  const domain = checkDomain(domainIn);
  const host = (opts.hostname ?? `mail.${domain}`).toLowerCase().replace(/\.$/, '');
  const sts = mtaStsPolicy({
    mode: opts.mtaSts?.mode ?? MTA_STS_DEFAULT_MODE,
    maxAge: opts.mtaSts?.maxAge ?? MTA_STS_DEFAULT_MAX_AGE,
    mx: opts.mtaSts?.mx !== undefined && opts.mtaSts.mx.length > 0 ? opts.mtaSts.mx : [host],
  });
  const out: DnsRecordSuggestion[] = [
    { kind: 'MX', name: `${domain}.`, text: `${domain}. IN MX 10 ${host}.`, note: 'mail for the domain goes to this host' },
    // RFC 7208 §5.4: `mx` lets the MX hosts send; `-all` fails everything else.
    { kind: 'SPF', name: `${domain}.`, text: `${domain}. IN TXT "v=spf1 mx -all"`, note: 'suggestion: add ip4:/ip6:/include: for any other host that sends as the domain' },
  ];
  const keys = listKeys(opts.dataDir, domain);
  for (const k of keys) {
    out.push({ kind: 'DKIM', name: `${k.selector}._domainkey.${domain}.`, text: zoneLine(k), note: `${k.algorithm}${k.active ? ', active (signing)' : ', not active: keep published while mail signed with it may still be checked'}` });
  }
  if (keys.length === 0) out.push({ kind: 'DKIM', name: `_domainkey.${domain}.`, text: `; no DKIM key: postseal dkim keygen ${domain}`, note: 'no key in the data directory' });
  out.push(
    // RFC 7489 §6.3: start with p=none and aggregate reports, tighten once the reports are clean.
    { kind: 'DMARC', name: `_dmarc.${domain}.`, text: `_dmarc.${domain}. IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@${domain}"`, note: 'raise p= to quarantine/reject once reports show only aligned mail' },
    // RFC 8461 §3.1: the id changes whenever the policy file changes.
    { kind: 'MTA-STS', name: `_mta-sts.${domain}.`, text: `_mta-sts.${domain}. IN TXT "v=STSv1; id=${sts.id}"`, note: 'id= is a hash of the policy file: it changes when the policy (http.mtaSts) does' },
    {
      kind: 'MTA-STS-POLICY',
      name: `https://mta-sts.${domain}/.well-known/mta-sts.txt`,
      text: sts.text,
      note: `served by serve's HTTP listener when http.mtaSts is configured, over HTTPS with a valid certificate for mta-sts.${domain} (RFC 8461 §3.3); mode: enforce once TLS-RPT reports are clean`,
    },
    // RFC 8460 §3.
    { kind: 'TLS-RPT', name: `_smtp._tls.${domain}.`, text: `_smtp._tls.${domain}. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@${domain}"`, note: 'daily TLS reports from senders' },
  );
  return out;
}
