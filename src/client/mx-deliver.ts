/**
 * deliverToDomain(): resolve a domain's MX set and try its hosts in preference order with
 * deliver(), the way an MTA does for one message and the recipients of one domain.
 *
 * Invariants: the next host is tried only after a temporary failure (network, TLS, 4xx); a
 * permanent answer (5xx, null MX, no such domain) stops the walk; each host is checked against
 * its own MX name (the name in DNS, never an address), which is what `verify` means for MX.
 */
import { deliver, type DeliverOptions, type DeliveryResult } from './deliver.js';
import { resolveMxHosts, type MxResult, type Resolver } from './resolver.js';

export interface DomainDelivery {
  domain: string;
  mx: MxResult;
  /** One result per host tried, in order. */
  attempts: DeliveryResult[];
  /** The attempt that decided (the last one), or null when DNS decided. */
  final: DeliveryResult | null;
  ok: boolean;
  /** Why nothing was tried, when DNS decided. */
  reason: string | null;
  permanent: boolean;
}

export async function deliverToDomain(domain: string, opts: Omit<DeliverOptions, 'host' | 'serverName'>, resolver?: Resolver): Promise<DomainDelivery> {
  const mx = await resolveMxHosts(domain, resolver);
  const none = (reason: string, permanent: boolean): DomainDelivery => ({ domain, mx, attempts: [], final: null, ok: false, reason, permanent });
  switch (mx.kind) {
    case 'null-mx':
      return none(`${domain} accepts no mail (null MX, RFC 7505; 556 5.1.10)`, true);
    case 'no-such-domain':
      return none(`${domain} does not exist (NXDOMAIN)`, true);
    case 'no-address':
      return none(`${domain} has no MX and no address record (RFC 5321 §5.1)`, true);
    case 'temporary':
      return none(mx.message, false);
    case 'hosts':
      break;
  }
  const attempts: DeliveryResult[] = [];
  for (const host of mx.hosts) {
    const r = await deliver({ ...opts, host: host.name, serverName: host.name });
    attempts.push(r);
    if (r.ok || (r.error !== null && r.error.permanent) || r.recipients.some((x) => x.status === 'delivered')) break;
  }
  const final = attempts[attempts.length - 1] ?? null;
  return { domain, mx, attempts, final, ok: final?.ok ?? false, reason: final?.error?.message ?? null, permanent: final?.error?.permanent ?? false };
}
