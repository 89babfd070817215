/**
 * decide(): gathers the facts the engine needs for one destination domain — the MX set and each
 * host's addresses (with their DNSSEC status), TLSA per host, the MTA-STS policy — and hands them
 * to the pure engine (engine.ts). The queue runner, `postseal send` and `postseal policy explain`
 * all come through here, so they cannot disagree.
 *
 * Invariants: the MX set is resolved once (the client is handed this result, never resolves
 * again); TLSA is asked for only where DANE could apply (DANE on, MX RRset and the host's
 * addresses secure: RFC 7672 §2.2.1, §2.2.2); without the AD-aware DNS client (`dns: null`)
 * nothing is secure, so DANE never applies; lookups run in parallel per host.
 */
import { isIP } from 'node:net';
import type dnsPacket from 'dns-packet';
import { resolveMxHosts, type MxResult, type Resolver } from '../client/resolver.js';
import type { TlsLevel } from '../client/levels.js';
import { decidePolicy, type MxFacts, type PolicyDecision, type PolicyInput, type PolicyLevel } from './engine.js';
import type { MtaStsLookup, TlsaLookup } from './types.js';

/** The part of the one DNS client (policy/dns.ts) used here: a query with the AD bit. */
export interface AdDns {
  query(name: string, type: 'MX' | 'A' | 'AAAA'): Promise<{ rcode: string; ad: boolean; answers: dnsPacket.Answer[] }>;
}

/** What decide() is given (serve builds it from relay.*, send from its flags). */
export interface PolicyContext {
  /** The AD-aware DNS client, or null: MX and addresses through `resolver`, nothing secure. */
  dns: AdDns | null;
  /** node:dns-style resolver, used when `dns` is null. */
  resolver: Resolver;
  /** The operator's TLS table (relay.tlsPolicy). */
  table: Record<string, PolicyLevel>;
  defaultLevel: TlsLevel;
  /** MX port (25; tests: their receiver's). */
  port: number;
  /** MTA-STS lookup (policy/mta-sts.ts getMtaStsPolicy), or null when relay.mtaSts is off. */
  mtaSts: ((domain: string) => Promise<MtaStsLookup>) | null;
  /** TLSA lookup (policy/dane.ts lookupTlsa), or null when relay.dane is off. */
  tlsa: ((host: string, port: number) => Promise<TlsaLookup>) | null;
}

export interface Decided {
  mx: MxResult;
  input: PolicyInput;
  decision: PolicyDecision;
}

/**
 * The decision for mail to `domain`. `table` overrides the context's table for this call
 * (`send --tls LEVEL`); `requireTls` for a REQUIRETLS message.
 */
export async function decide(domain: string, ctx: PolicyContext, opts: { requireTls?: boolean; table?: PolicyLevel | null } = {}): Promise<Decided> {
  const d = domain.toLowerCase().replace(/\.$/, '');
  const [mxr, sts] = await Promise.all([lookupMx(d, ctx), ctx.mtaSts ? ctx.mtaSts(d).catch((e: unknown) => stsThrew(e)) : Promise.resolve(null)]);
  const hosts = mxr.mx.kind === 'hosts' ? mxr.mx.hosts : [];
  const facts = await Promise.all(
    hosts.map(async (h): Promise<MxFacts> => {
      const a = await lookupAddresses(h.name, ctx);
      // RFC 7672 §2.2.1, §2.2.2: TLSA only behind a secure MX RRset and secure addresses.
      const tlsa = ctx.tlsa && mxr.secure && a.secure ? await ctx.tlsa(h.name, ctx.port).catch((e: unknown) => tlsaThrew(e)) : null;
      return { name: h.name, preference: h.preference, implicit: h.implicit, addresses: a.addresses, addressesSecure: a.secure, tlsa };
    }),
  );
  const input: PolicyInput = {
    domain: d,
    mxSecure: mxr.secure,
    mx: facts,
    table: opts.table !== undefined ? opts.table : (ctx.table[d] ?? null),
    defaultLevel: ctx.defaultLevel,
    dane: ctx.tlsa !== null,
    mtaSts: sts,
    requireTls: opts.requireTls === true,
  };
  return { mx: mxr.mx, input, decision: decidePolicy(input) };
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** A lookup that threw is a failed lookup, never a missing policy that lets mail go weaker. */
function stsThrew(e: unknown): MtaStsLookup {
  return { policy: null, from: 'none', failure: { type: 'sts-policy-fetch-error', detail: message(e) } };
}

/** RFC 7672 §2.2: a TLSA lookup that failed where DANE may apply: the host waits. */
function tlsaThrew(e: unknown): TlsaLookup {
  return { status: 'error', records: [], usable: [], detail: message(e) };
}

class DnsCodeError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

/** The MX set through the one MX routine (resolver.ts), fed by the AD-aware client when given. */
async function lookupMx(domain: string, ctx: PolicyContext): Promise<{ mx: MxResult; secure: boolean }> {
  const dns = ctx.dns;
  if (dns === null) return { mx: await resolveMxHosts(domain, ctx.resolver), secure: false };
  let secure = false;
  const adapter: Resolver = {
    resolveMx: async (name) => {
      const r = await dns.query(name, 'MX');
      secure = r.ad;
      if (r.rcode === 'NXDOMAIN') throw new DnsCodeError('ENOTFOUND', `${name} does not exist`);
      if (r.rcode !== 'NOERROR') throw new DnsCodeError(`E${r.rcode}`, `MX lookup for ${name}: ${r.rcode}`);
      const records = r.answers.flatMap((a) => (a.type === 'MX' ? [{ exchange: a.data.exchange, priority: a.data.preference ?? 0 }] : []));
      if (records.length === 0) throw new DnsCodeError('ENODATA', `no MX for ${name}`);
      return records;
    },
    resolve4: async (name) => (await addressQuery(dns, name, 'A')).addresses,
    resolve6: async (name) => (await addressQuery(dns, name, 'AAAA')).addresses,
  };
  const mx = await resolveMxHosts(domain, adapter);
  return { mx, secure: mx.kind === 'hosts' && secure };
}

async function addressQuery(dns: AdDns, name: string, type: 'A' | 'AAAA'): Promise<{ addresses: string[]; secure: boolean }> {
  const r = await dns.query(name, type);
  if (r.rcode !== 'NOERROR' && r.rcode !== 'NXDOMAIN') throw new DnsCodeError(`E${r.rcode}`, `${type} lookup for ${name}: ${r.rcode}`);
  return { addresses: r.answers.flatMap((a) => (a.type === type ? [a.data] : [])), secure: r.ad };
}

/** IPv4 then IPv6 addresses of a host; secure only when both answers (or denials) carried AD. */
async function lookupAddresses(name: string, ctx: PolicyContext): Promise<{ addresses: string[]; secure: boolean }> {
  if (isIP(name) !== 0) return { addresses: [name], secure: false };
  const dns = ctx.dns;
  if (dns === null) {
    const [v4, v6] = await Promise.all([ctx.resolver.resolve4(name).catch(() => [] as string[]), ctx.resolver.resolve6(name).catch(() => [] as string[])]);
    return { addresses: [...v4, ...v6], secure: false };
  }
  const none = { addresses: [] as string[], secure: false };
  const [v4, v6] = await Promise.all([addressQuery(dns, name, 'A').catch(() => none), addressQuery(dns, name, 'AAAA').catch(() => none)]);
  return { addresses: [...v4.addresses, ...v6.addresses], secure: v4.secure && v6.secure };
}
