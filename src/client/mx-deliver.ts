/**
 * deliverToDomain() and deliverBatchToDomain(): resolve a domain's MX set and try its hosts in
 * preference order, the way an MTA does for the recipients of one domain — one message with
 * deliver(), or several over reused connections with deliverBatch().
 *
 * Invariants: a message goes to the next host only after a temporary failure (network, TLS,
 * 4xx) with nothing delivered; a permanent answer (5xx, null MX, no such domain) stops its walk;
 * each host is checked against its own MX name (the name in DNS, never an address), which is
 * what `verify` means for MX. With a plan (DomainPlan, from the sending policy: policy/decide.ts)
 * the MX set is the one the policy looked at, and each host is used only if the plan allows it,
 * at the plan's level, against the plan's name; a host the plan refuses is skipped, and when
 * no host could be used the messages wait (temporary), they are never sent another way.
 */
import { isIP } from 'node:net';
import { deliverBatch, type BatchMessage, type BatchOptions, type DeliverOptions, type DeliveryResult } from './deliver.js';
import { resolveMxHosts, systemResolver, type MxHost, type MxResult, type Resolver } from './resolver.js';
import type { SessionOptions } from './open-session.js';

/** What the sending policy says about one MX host (policy/engine.ts MxDecision, as the client needs it). */
export type MxPlan =
  | {
      allowed: true;
      /** The session settings for this host: level, serverName (the name to verify), TLSA at dane. */
      session: Pick<SessionOptions, 'level' | 'serverName'> & Partial<SessionOptions>;
      /** Addresses already resolved by the policy's lookup; absent: resolved here. */
      addresses?: string[];
    }
  | { allowed: false; reason: string };

/** The per-MX hook: an MX set resolved by the caller, and the plan for each of its hosts. */
export interface DomainPlan {
  mx: MxResult;
  planFor(host: MxHost): MxPlan;
}

/** A host the plan did not allow. */
export interface SkippedHost {
  host: string;
  reason: string;
}

export interface DomainDelivery {
  domain: string;
  mx: MxResult;
  /** One result per host tried, in order. */
  attempts: DeliveryResult[];
  /** The attempt that decided (the last one), or null when DNS decided. */
  final: DeliveryResult | null;
  ok: boolean;
  /** Why nothing was tried, when DNS (or the plan) decided. */
  reason: string | null;
  permanent: boolean;
  /** Hosts the plan did not allow, in MX order. */
  skipped: SkippedHost[];
}

export interface DomainBatchDelivery {
  domain: string;
  mx: MxResult;
  /** One per message, in the order given. */
  deliveries: DomainDelivery[];
  /** TCP connections opened for the whole batch, over every host tried. */
  connections: number;
  /** Hosts the plan did not allow, in MX order. */
  skipped: SkippedHost[];
}

export async function deliverToDomain(domain: string, opts: Omit<DeliverOptions, 'host' | 'serverName'>, resolver?: Resolver, plan?: DomainPlan): Promise<DomainDelivery> {
  const { from, to, message, requireTls, mailParams, rcptParams, ...session } = opts;
  const b = await deliverBatchToDomain(domain, { ...session, maxPerConnection: 1 }, [{ from, to, message, requireTls, mailParams, rcptParams }], resolver, plan);
  const d = b.deliveries[0];
  if (d === undefined) throw new Error('deliverBatchToDomain returned no delivery for the message');
  return d;
}

/**
 * `onResult` (BatchOptions) is called once per message when its DomainDelivery is final, with the
 * message's index in `messages`, and awaited before the next message is sent (see decided below
 * for when that is); a throw ends the walk and is rethrown.
 */
export async function deliverBatchToDomain(
  domain: string,
  opts: Omit<BatchOptions, 'host' | 'serverName' | 'onResult'> & { onResult?: (index: number, delivery: DomainDelivery) => void | Promise<void> },
  messages: BatchMessage[],
  resolver?: Resolver,
  plan?: DomainPlan,
): Promise<DomainBatchDelivery> {
  const { onResult, ...batchOpts } = opts;
  const mx = plan?.mx ?? (await resolveMxHosts(domain, resolver));
  const skipped: SkippedHost[] = [];
  const none = async (reason: string, permanent: boolean): Promise<DomainBatchDelivery> => {
    const deliveries = messages.map((): DomainDelivery => ({ domain, mx, attempts: [], final: null, ok: false, reason, permanent, skipped }));
    // DNS decided for every message: each is final now.
    if (onResult) for (const [i, d] of deliveries.entries()) await onResult(i, d);
    return { domain, mx, deliveries, connections: 0, skipped };
  };
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
  const deliveryOf = (tried: DeliveryResult[]): DomainDelivery => {
    if (tried.length === 0) {
      // RFC 8461 §5, RFC 7672 §2.2: no host the policy allows: wait (4.7.5), never plaintext, never a bounce now.
      const reason =
        skipped.length > 0
          ? `4.7.5 no MX host of ${domain} may be used: ${skipped.map((x) => `${x.host}: ${x.reason}`).join('; ')}`
          : `no address found for the MX hosts of ${domain}`;
      return { domain, mx, attempts: [], final: null, ok: false, reason, permanent: false, skipped };
    }
    const final = tried[tried.length - 1] ?? null;
    return { domain, mx, attempts: tried, final, ok: final?.ok ?? false, reason: final?.error?.message ?? null, permanent: final?.error?.permanent ?? false, skipped };
  };
  const reported: boolean[] = messages.map(() => false);
  // `last`: the attempt that made the message final, reported before deliverBatch() returns it.
  const report = async (i: number, last: DeliveryResult | null = null): Promise<void> => {
    if (onResult === undefined || reported[i] === true) return;
    reported[i] = true;
    await onResult(i, { ...deliveryOf([...(attempts[i] ?? []), ...(last ? [last] : [])]), skipped: [...skipped] });
  };
  let remaining = messages.map((_, i) => i);
  let connections = 0;
  const r0 = resolver ?? systemResolver();
  hosts: for (const [h, host] of mx.hosts.entries()) {
    const p: MxPlan = plan?.planFor(host) ?? { allowed: true, session: { level: batchOpts.level, serverName: host.name } };
    if (!p.allowed) {
      skipped.push({ host: host.name, reason: p.reason });
      continue;
    }
    // Addresses come from the same resolver as the MX records (RFC 5321 §5.1: each address of a
    // host is tried in turn); the certificate is still checked against the MX name.
    const addresses = p.addresses ?? (await hostAddresses(host.name, r0));
    for (const [a, address] of addresses.entries()) {
      // No address or host after this one: whatever this attempt answers is the message's last word.
      const lastTry = h === mx.hosts.length - 1 && a === addresses.length - 1;
      const sent = remaining;
      const decidedOf = (r: DeliveryResult): boolean =>
        // RFC 8689 §4.2.1: a host without REQUIRETLS is not the end: the next MX may offer it.
        r.ok || (r.error !== null && r.error.permanent && r.error.code !== 'REQUIRETLS_NOT_SUPPORTED') || r.recipients.some((x) => x.status === 'delivered');
      const batch = await deliverBatch(
        {
          ...batchOpts,
          ...p.session,
          host: address,
          ...(onResult === undefined
            ? {}
            : {
                onResult: async (k: number, r: DeliveryResult): Promise<void> => {
                  const i = sent[k];
                  if (i === undefined) return;
                  // Final here means: this message will not be sent to another address or MX host
                  // in this walk — it was delivered (to at least one recipient), refused for good,
                  // or this was the last address of the last host. A temporary failure with hosts
                  // still to try is not final (the next host may take it); it is reported when
                  // the walk ends (below), with the attempt that decided.
                  if (!decidedOf(r) && !lastTry) return;
                  await report(i, r);
                },
              }),
        },
        sent.map((i) => messages[i] as BatchMessage),
      );
      connections += batch.connections;
      const next: number[] = [];
      sent.forEach((i, k) => {
        const r = batch.results[k];
        if (r === undefined) return;
        attempts[i]?.push(r);
        if (!decidedOf(r)) next.push(i);
      });
      remaining = next;
      if (remaining.length === 0) break hosts;
    }
  }
  // The walk is over: every message not reported yet (deferred everywhere, or never tried) is final now.
  for (let i = 0; i < messages.length; i++) await report(i);
  const deliveries = messages.map((_, i): DomainDelivery => deliveryOf(attempts[i] ?? []));
  return { domain, mx, deliveries, connections, skipped };
}

/** IPv4 then IPv6 addresses of an MX host; a name that is an address literal is used as is. */
async function hostAddresses(name: string, resolver: Resolver): Promise<string[]> {
  if (isIP(name) !== 0) return [name];
  const [v4, v6] = await Promise.all([resolver.resolve4(name).catch(() => [] as string[]), resolver.resolve6(name).catch(() => [] as string[])]);
  return [...v4, ...v6];
}
