/**
 * `postseal policy refresh|forget DOMAIN`: the operator's hands on the persistent MTA-STS cache
 * (RFC 8461 §5.1) — fetch a domain's policy now, or purge a stale one. Parsing and printing only;
 * the work is policy/mta-sts.ts. registerPolicy() returns the `policy` command group so other
 * subcommands (`policy explain`) are added to the same group: `registerX(registerPolicy(program))`.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { parseHostPort, HOST_PORT_SYNTAX } from '../protocol/host-port.js';
import { DnsResolver, type DnsServerAddress } from '../policy/dns.js';
import { forgetMtaStsPolicy, getMtaStsPolicy } from '../policy/mta-sts.js';
import type { MtaStsLookup } from '../policy/types.js';
import { collect, withStore, DATA_FLAG, STORE_FLAG, type StoreFlags } from './common.js';

/** HOST:PORT from a flag, through the one HOST:PORT parser. */
export function hostPortOption(text: string, flag: string): DnsServerAddress {
  const r = parseHostPort(text);
  if (!r.ok) throw new UsageError(`${flag} needs ${HOST_PORT_SYNTAX}, got ${JSON.stringify(text)}: ${r.problem}`);
  return { host: r.host, port: r.port };
}

/** The resolver of --dns (repeatable; the first one is asked first) or the system's. */
export function resolverOption(dns: string[] | undefined, timeoutMs?: number): DnsResolver {
  const servers = (dns ?? []).map((d) => hostPortOption(d, '--dns'));
  return servers.length > 0 ? new DnsResolver(servers, timeoutMs) : DnsResolver.system(timeoutMs);
}

function checkDomain(domain: string): string {
  const d = domain.trim().toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)+$/.test(d)) throw new UsageError(`${JSON.stringify(domain)} is not a domain name`);
  return d;
}

function lookupText(domain: string, r: MtaStsLookup): string {
  const out: string[] = [];
  const p = r.policy;
  if (p === null) out.push(`${domain}: no MTA-STS policy`);
  else {
    out.push(`${domain}: MTA-STS mode ${p.mode}, id ${p.id} (${r.from === 'fetched' ? 'fetched now' : 'from the cache'})`);
    if (p.mx.length > 0) out.push(`  mx: ${p.mx.join(', ')}`);
    out.push(`  max_age ${p.maxAge} s, fetched ${new Date(p.fetchedAt).toISOString()}, expires ${new Date(p.expiresAt).toISOString()}`);
    if (p.mode === 'none') out.push('  mode none: the cached policy, if any, was removed');
  }
  if (r.failure !== null) out.push(`  failure: ${r.failure.type}: ${r.failure.detail}`);
  return out.join('\n') + '\n';
}

interface RefreshFlags extends StoreFlags {
  dns?: string[];
  ca?: string[];
  mtaStsEndpoint?: string;
  timeout: string;
  json?: boolean;
}

export function registerPolicy(program: Command): Command {
  const policy = program.command('policy').description('the sending policy: MTA-STS cache (refresh, forget)');
  policy
    .command('refresh')
    .description('fetch the MTA-STS policy of DOMAIN now and store it (a failure keeps the unexpired cached one)')
    .argument('<domain>', 'policy domain (the recipient domain)')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--dns <host:port>', 'DNS resolver to ask (repeatable; default: the system resolver)', collect)
    .option('--ca <file>', 'also trust the CA certificates in this PEM file for the HTTPS fetch (repeatable)', collect)
    .option('--mta-sts-endpoint <host:port>', 'fetch the policy from here instead of mta-sts.DOMAIN:443 (tests; the name verified stays mta-sts.DOMAIN)')
    .option('--timeout <ms>', 'deadline of the HTTPS fetch and of each DNS exchange', '15000')
    .option('--json', 'JSON output')
    .action(async (domainArg: string, flags: RefreshFlags) => {
      const domain = checkDomain(domainArg);
      const timeoutMs = Number(flags.timeout);
      if (!Number.isInteger(timeoutMs) || timeoutMs < 1) throw new UsageError(`--timeout ${flags.timeout} is not a number of milliseconds`);
      const ca = (flags.ca ?? []).map((f) => readFileSync(f, 'utf8'));
      const endpoint = flags.mtaStsEndpoint === undefined ? null : hostPortOption(flags.mtaStsEndpoint, '--mta-sts-endpoint');
      const dns = resolverOption(flags.dns, Math.min(timeoutMs, 5000));
      await withStore(flags, async (store) => {
        const r = await getMtaStsPolicy(domain, { dns, cache: store, ca, endpoint, timeoutMs, force: true });
        if (flags.json) process.stdout.write(JSON.stringify({ domain, ...r }, null, 2) + '\n');
        else process.stdout.write(lookupText(domain, r));
        if (r.failure !== null) process.exitCode = 1;
      });
    });
  policy
    .command('forget')
    .description('remove the cached MTA-STS policy of DOMAIN (the next delivery fetches it afresh)')
    .argument('<domain>', 'policy domain')
    .option(...DATA_FLAG)
    .option(...STORE_FLAG)
    .option('--json', 'JSON output')
    .action(async (domainArg: string, flags: StoreFlags & { json?: boolean }) => {
      const domain = checkDomain(domainArg);
      await withStore(flags, async (store) => {
        const removed = await forgetMtaStsPolicy(domain, store);
        if (flags.json) process.stdout.write(JSON.stringify({ domain, removed }) + '\n');
        else process.stdout.write(removed ? `${domain}: cached MTA-STS policy removed\n` : `${domain}: no cached MTA-STS policy\n`);
      });
    });
  return policy;
}
