/**
 * deliverToDomain() and deliverBatchToDomain(): resolve a domain's MX set and try its hosts in
 * preference order, the way an MTA does for the recipients of one domain — one message with
 * deliver(), or several over reused connections with deliverBatch().
 *
 * Invariants: a message goes to the next host only after a temporary failure (network, TLS,
 * 4xx) with nothing delivered; a permanent answer (5xx, null MX, no such domain) stops its walk;
 * each host is checked against its own MX name (the name in DNS, never an address), which is
 * what `verify` means for MX.
 */
import { isIP } from 'node:net';
import { deliverBatch, type BatchMessage, type BatchOptions, type DeliverOptions, type DeliveryResult } from './deliver.js';
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

export interface DomainBatchDelivery {
  domain: string;
  mx: MxResult;
  /** One per message, in the order given. */
  deliveries: DomainDelivery[];
  /** TCP connections opened for the whole batch, over every host tried. */
  connections: number;
}

export async function deliverToDomain(domain: string, opts: Omit<DeliverOptions, 'host' | 'serverName'>, resolver?: Resolver): Promise<DomainDelivery> {
  const { from, to, message, requireTls, mailParams, rcptParams, ...session } = opts;
  const b = await deliverBatchToDomain(domain, { ...session, maxPerConnection: 1 }, [{ from, to, message, requireTls, mailParams, rcptParams }], resolver);
  const d = b.deliveries[0];
  if (d === undefined) throw new Error('deliverBatchToDomain returned no delivery for the message');
  return d;
}

export async function deliverBatchToDomain(domain: string, opts: Omit<BatchOptions, 'host' | 'serverName'>, messages: BatchMessage[], resolver?: Resolver): Promise<DomainBatchDelivery> {
  const mx = await resolveMxHosts(domain, resolver);
  const none = (reason: string, permanent: boolean): DomainBatchDelivery => ({
    domain,
    mx,
    deliveries: messages.map(() => ({ domain, mx, attempts: [], final: null, ok: false, reason, permanent })),
    connections: 0,
  });
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
  const attempts: DeliveryResult[][] = messages.map(() => []);
  let remaining = messages.map((_, i) => i);
  let connections = 0;
  const r0 = resolver ?? systemResolver();
  hosts: for (const host of mx.hosts) {
    // Addresses come from the same resolver as the MX records (RFC 5321 §5.1: each address of a
    // host is tried in turn); the certificate is still checked against the MX name.
    const addresses = await hostAddresses(host.name, r0);
    for (const address of addresses) {
      const batch = await deliverBatch({ ...opts, host: address, serverName: host.name }, remaining.map((i) => messages[i] as BatchMessage));
      connections += batch.connections;
      const next: number[] = [];
      remaining.forEach((i, k) => {
        const r = batch.results[k];
        if (r === undefined) return;
        attempts[i]?.push(r);
        const decided = r.ok || (r.error !== null && r.error.permanent) || r.recipients.some((x) => x.status === 'delivered');
        if (!decided) next.push(i);
      });
      remaining = next;
      if (remaining.length === 0) break hosts;
    }
  }
  const deliveries = messages.map((_, i): DomainDelivery => {
    const tried = attempts[i] ?? [];
    if (tried.length === 0) return { domain, mx, attempts: [], final: null, ok: false, reason: `no address found for the MX hosts of ${domain}`, permanent: false };
    const final = tried[tried.length - 1] ?? null;
    return { domain, mx, attempts: tried, final, ok: final?.ok ?? false, reason: final?.error?.message ?? null, permanent: final?.error?.permanent ?? false };
  });
  return { domain, mx, deliveries, connections };
}

/** IPv4 then IPv6 addresses of an MX host; a name that is an address literal is used as is. */
async function hostAddresses(name: string, resolver: Resolver): Promise<string[]> {
  if (isIP(name) !== 0) return [name];
  const [v4, v6] = await Promise.all([resolver.resolve4(name).catch(() => [] as string[]), resolver.resolve6(name).catch(() => [] as string[])]);
  return [...v4, ...v6];
}
