/**
 * MX resolution behind one swappable interface (RFC 5321 §5.1, RFC 7505), for `postseal send`
 * and the queue runner. Tests give their own Resolver (or a node:dns Resolver pointed at a test
 * DNS server); nothing else here touches DNS.
 *
 * Invariants: MX hosts come back sorted by preference, equal preferences shuffled (§5.1); no MX
 * records but an address record → the domain itself is the one host (§5.1 implicit MX); a
 * domain that does not exist is permanent; a single "." MX is a null MX (RFC 7505 §3: the domain
 * accepts no mail, permanent, 556 5.1.10); DNS trouble is temporary.
 */
import { Resolver as DnsResolver } from 'node:dns/promises';

export interface Resolver {
  resolveMx(domain: string): Promise<Array<{ exchange: string; priority: number }>>;
  resolve4(name: string): Promise<string[]>;
  resolve6(name: string): Promise<string[]>;
}

export interface MxHost {
  /** Host name to connect to; also the name the certificate must carry at `verify`. */
  name: string;
  preference: number;
  /** True when there was no MX and the domain itself is used (RFC 5321 §5.1). */
  implicit: boolean;
}

export type MxResult =
  | { kind: 'hosts'; hosts: MxHost[] }
  | { kind: 'null-mx' }
  | { kind: 'no-such-domain' }
  | { kind: 'no-address' }
  | { kind: 'temporary'; message: string };

/** node:dns, optionally pointed at given servers ("127.0.0.1:5353"). */
export function systemResolver(servers?: string[]): Resolver {
  const r = new DnsResolver();
  if (servers && servers.length > 0) r.setServers(servers);
  return r;
}

const NOT_FOUND = new Set(['ENOTFOUND', 'NXDOMAIN']);
const NO_DATA = new Set(['ENODATA', 'NODATA', 'ENOTFOUND_NODATA']);

function codeOf(err: unknown): string {
  return typeof err === 'object' && err !== null && 'code' in err ? String((err as { code: unknown }).code) : '';
}

export async function resolveMxHosts(domain: string, resolver: Resolver = systemResolver()): Promise<MxResult> {
  let records: Array<{ exchange: string; priority: number }>;
  try {
    records = await resolver.resolveMx(domain);
  } catch (err) {
    const code = codeOf(err);
    if (NOT_FOUND.has(code)) return { kind: 'no-such-domain' };
    if (!NO_DATA.has(code)) return { kind: 'temporary', message: `MX lookup for ${domain} failed: ${code || String(err)}` };
    records = [];
  }
  // RFC 7505 §3: one MX, preference 0, exchange "." (Node gives ''): no mail for this domain.
  if (records.some((r) => r.exchange === '' || r.exchange === '.')) {
    if (records.length === 1) return { kind: 'null-mx' };
    records = records.filter((r) => r.exchange !== '' && r.exchange !== '.');
  }
  if (records.length > 0) {
    const shuffled = records.map((r) => ({ r, k: Math.random() }));
    shuffled.sort((a, b) => a.r.priority - b.r.priority || a.k - b.k);
    return { kind: 'hosts', hosts: shuffled.map(({ r }) => ({ name: r.exchange.replace(/\.$/, ''), preference: r.priority, implicit: false })) };
  }
  // RFC 5321 §5.1: no MX → the domain itself, if it has an address record.
  const [v4, v6] = await Promise.all([resolver.resolve4(domain).catch(() => []), resolver.resolve6(domain).catch(() => [])]);
  if (v4.length + v6.length === 0) return { kind: 'no-address' };
  return { kind: 'hosts', hosts: [{ name: domain, preference: 0, implicit: true }] };
}
