/**
 * deliverToDomain(): resolve a domain's MX set and try its hosts in preference order with
 * deliver(), the way an MTA does for one message and the recipients of one domain.
 *
 * Invariants: the next host is tried only after a temporary failure (network, TLS, 4xx); a
 * permanent answer (5xx, null MX, no such domain) stops the walk; each host is checked against
 * its own MX name (the name in DNS, never an address), which is what `verify` means for MX.
 */
import { isIP } from 'node:net';
import { deliver, type DeliverOptions, type DeliveryResult } from './deliver.js';
import { resolveMxHosts, systemResolver, type MxResult, type Resolver } from './resolver.js';

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
  const r0 = resolver ?? systemResolver();
  hosts: for (const host of mx.hosts) {
    // Addresses come from the same resolver as the MX records (RFC 5321 §5.1: each address of a
    // host is tried in turn); the certificate is still checked against the MX name.
    const addresses = await hostAddresses(host.name, r0);
    if (addresses.length === 0) continue;
    for (const address of addresses) {
      const r = await deliver({ ...opts, host: address, serverName: host.name });
      attempts.push(r);
      if (r.ok || (r.error !== null && r.error.permanent) || r.recipients.some((x) => x.status === 'delivered')) break hosts;
    }
  }
  if (attempts.length === 0) return none(`no address found for the MX hosts of ${domain}`, false);
  const final = attempts[attempts.length - 1] ?? null;
  return { domain, mx, attempts, final, ok: final?.ok ?? false, reason: final?.error?.message ?? null, permanent: final?.error?.permanent ?? false };
}

/** IPv4 then IPv6 addresses of an MX host; a name that is an address literal is used as is. */
async function hostAddresses(name: string, resolver: Resolver): Promise<string[]> {
  if (isIP(name) !== 0) return [name];
  const [v4, v6] = await Promise.all([resolver.resolve4(name).catch(() => [] as string[]), resolver.resolve6(name).catch(() => [] as string[])]);
  return [...v4, ...v6];
}
