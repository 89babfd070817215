/**
 * The sending policy's lookups built from settings (relay.dns, relay.ca, relay.mtaSts,
 * relay.dane for serve; the same flags for `send` and `policy explain`): the one AD-aware DNS
 * client, the MTA-STS lookup over a cache, the TLSA lookup. Each kill-switch off means that
 * lookup is null and the engine skips its rule.
 *
 * Invariants: one DnsResolver for MX, addresses, TLSA and the MTA-STS TXT (the AD bit is trusted
 * from these servers only); with DANE and MTA-STS both off, no AD-aware client is made and MX
 * resolution is the plain resolver's, exactly as before the policy engine.
 */
import { ConfigError } from '../errors.js';
import { parseHostPort } from '../protocol/host-port.js';
import { lookupTlsa } from './dane.js';
import { DnsResolver } from './dns.js';
import { getMtaStsPolicy } from './mta-sts.js';
import type { MtaStsCache, MtaStsLookup, MtaStsPolicy, TlsaLookup } from './types.js';

export interface PolicySettings {
  /** DNS servers HOST:PORT (empty: the system's). */
  dns: string[];
  /** Extra trusted CA (PEM text) for the MTA-STS fetch. */
  ca: string | null;
  mtaSts: { enabled: boolean; endpoint: string | null };
  dane: { enabled: boolean };
}

export interface PolicyLookups {
  dns: DnsResolver | null;
  mtaSts: ((domain: string) => Promise<MtaStsLookup>) | null;
  tlsa: ((host: string, port: number) => Promise<TlsaLookup>) | null;
}

function server(text: string, what: string): { host: string; port: number } {
  const r = parseHostPort(text, { defaultPort: 53 });
  if (!r.ok) throw new ConfigError(`${what} ${JSON.stringify(text)}: expected HOST[:PORT]: ${r.problem}`);
  return { host: r.host, port: r.port };
}

/** The one DNS client for the relay's lookups: relay.dns, or the system's servers. */
export function resolverFor(dns: readonly string[]): DnsResolver {
  return dns.length > 0 ? new DnsResolver(dns.map((d) => server(d, 'relay.dns'))) : DnsResolver.system();
}

export function policyLookups(s: PolicySettings, cache: MtaStsCache, opts: { force?: boolean } = {}): PolicyLookups {
  if (!s.mtaSts.enabled && !s.dane.enabled) return { dns: null, mtaSts: null, tlsa: null };
  const dns = resolverFor(s.dns);
  const endpoint = s.mtaSts.endpoint !== null ? server(s.mtaSts.endpoint, 'relay.mtaSts.endpoint') : null;
  const ca = s.ca !== null ? [s.ca] : [];
  return {
    dns,
    mtaSts: s.mtaSts.enabled ? (domain) => getMtaStsPolicy(domain, { dns, cache, endpoint, ca, ...(opts.force === true ? { force: true } : {}) }) : null,
    tlsa: s.dane.enabled ? (host, port) => lookupTlsa(dns, host, port) : null,
  };
}

/** A cache for one process (`send`, `policy explain` without a data directory): nothing persists. */
export function memoryMtaStsCache(): MtaStsCache {
  const m = new Map<string, MtaStsPolicy>();
  return {
    getMtaSts: (d) => m.get(d) ?? null,
    putMtaSts: async (p) => {
      if (p.mode === 'none') m.delete(p.domain);
      else m.set(p.domain, p);
    },
    forgetMtaSts: async (d) => m.delete(d),
  };
}
