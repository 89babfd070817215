/**
 * The DNS records a domain that sends through postseal should publish: MX, SPF, the DKIM keys in
 * the data directory, DMARC, MTA-STS (TXT and the policy file) and TLS-RPT. Suggestions: SPF and
 * DMARC start permissive enough not to lose mail (`p=none`, MTA-STS `mode: testing`); the DKIM
 * records are the exact text of our keys.
 */
import { checkDomain, listKeys, zoneLine } from './dkim-keys.js';

export interface DnsRecordSuggestion {
  kind: 'MX' | 'SPF' | 'DKIM' | 'DMARC' | 'MTA-STS' | 'MTA-STS-POLICY' | 'TLS-RPT';
  /** Owner name, fully qualified with the final dot; for the policy file: its URL. */
  name: string;
  /** A zone-file line (or, for the MTA-STS policy, the file's text). */
  text: string;
  note: string;
}

export function dnsRecords(domainIn: string, opts: { dataDir: string; hostname?: string; now?: Date }): DnsRecordSuggestion[] {
  const domain = checkDomain(domainIn);
  const host = (opts.hostname ?? `mail.${domain}`).toLowerCase().replace(/\.$/, '');
  const id = (opts.now ?? new Date()).toISOString().replace(/[^0-9]/g, '').slice(0, 14);
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
    { kind: 'MTA-STS', name: `_mta-sts.${domain}.`, text: `_mta-sts.${domain}. IN TXT "v=STSv1; id=${id}"`, note: 'change id= whenever the policy file changes' },
    {
      kind: 'MTA-STS-POLICY',
      name: `https://mta-sts.${domain}/.well-known/mta-sts.txt`,
      text: `version: STSv1\nmode: testing\nmx: ${host}\nmax_age: 86400\n`,
      note: `served over HTTPS with a valid certificate for mta-sts.${domain} (RFC 8461 §3.3); mode: enforce once TLS-RPT reports are clean`,
    },
    // RFC 8460 §3.
    { kind: 'TLS-RPT', name: `_smtp._tls.${domain}.`, text: `_smtp._tls.${domain}. IN TXT "v=TLSRPTv1; rua=mailto:tlsrpt@${domain}"`, note: 'daily TLS reports from senders' },
  );
  return out;
}
