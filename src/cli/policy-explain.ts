/**
 * `postseal policy explain DOMAIN [--json] [--connect]`: what this sender would do for mail to
 * DOMAIN and why (policy/explain.ts). Parsing and printing only. Settings come from a serve
 * config (--config: relay.tlsPolicy, defaultTls, dns, ca, mtaSts, dane, smtpPort) and these flags
 * over it; with --data the MTA-STS cache is serve's store (as the relay would see it), else a
 * fresh one. Exit status: 0 delivery would go ahead, 1 it would be deferred or fail, 2 usage.
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { UsageError } from '../errors.js';
import { defaultConfig, loadConfigFile, relayPolicyContext } from '../config.js';
import { isTlsLevel, TLS_LEVELS, uniformTimeouts, type TlsLevel } from '../client/index.js';
import { memoryMtaStsCache } from '../policy/context.js';
import { explainDomain, type Explanation } from '../policy/explain.js';
import type { MtaStsCache } from '../policy/types.js';
import { STORE_ENV } from '../config.js';
import { collect, withStore } from './common.js';
import { hostPortOption } from './policy.js';

interface ExplainFlags {
  config?: string;
  data?: string;
  store?: string;
  dns: string[];
  ca?: string;
  mtaStsEndpoint?: string;
  smtpPort?: string;
  tls?: string;
  mtaSts?: boolean;
  dane?: boolean;
  connect?: boolean;
  helo?: string;
  timeout: string;
  json?: boolean;
}

export function registerPolicyExplain(policy: Command): void {
  policy
    .command('explain')
    .description('what this sender would do for mail to DOMAIN and why: MX set, TLSA, MTA-STS, table entry, level per MX, the deciding rule')
    .argument('<domain>', 'recipient domain')
    .option('--config <file>', 'serve config file whose relay settings apply (relay.tlsPolicy, defaultTls, dns, ca, mtaSts, dane, smtpPort)')
    .option('--data <dir>', "use serve's store for the MTA-STS cache (default: a fresh cache, the policy is fetched)")
    .option('--store <url>', `use this store for the MTA-STS cache: postgres://USER@HOST:PORT/DB or sqlite:DIR (also $${STORE_ENV})`)
    .option('--dns <host:port>', 'DNS server (its AD bit is trusted; repeatable)', collect, [])
    .option('--ca <file>', 'extra trusted CA (PEM) for verify and the MTA-STS fetch')
    .option('--mta-sts-endpoint <host:port>', 'fetch every MTA-STS policy from here (tests only)')
    .option('--smtp-port <port>', 'port of the MX hosts (tests only)')
    .option('--tls <level>', `a TLS table entry for DOMAIN: ${TLS_LEVELS.join(' | ')}`)
    .option('--no-mta-sts', 'as with MTA-STS off')
    .option('--no-dane', 'as with DANE off')
    .option('--connect', 'also make the TLS session per MX host (EHLO, STARTTLS, handshake, verification; no MAIL)')
    .option('--helo <name>', 'EHLO name for --connect', 'localhost')
    .option('--timeout <seconds>', 'one timeout for every network step of --connect', '30')
    .option('--json', 'JSON output')
    .action(async (domain: string, flags: ExplainFlags) => {
      const e = await runExplain(domain, flags);
      if (flags.json === true) process.stdout.write(JSON.stringify(e, null, 2) + '\n');
      else process.stdout.write(explainText(e));
      const deliverable = flags.connect === true ? e.hosts.some((h) => h.connect?.some((c) => c.wouldDeliver)) : e.hosts.some((h) => h.allowed);
      process.exitCode = deliverable ? 0 : 1;
    });
}

async function runExplain(domainArg: string, flags: ExplainFlags): Promise<Explanation> {
  const domain = domainArg.trim().toLowerCase().replace(/\.$/, '');
  if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(domain)) throw new UsageError(`${JSON.stringify(domainArg)} is not a domain name`);
  const r = (flags.config !== undefined ? loadConfigFile(flags.config) : defaultConfig()).relay;
  if (flags.tls !== undefined && !isTlsLevel(flags.tls)) throw new UsageError(`--tls ${JSON.stringify(flags.tls)}: expected one of ${TLS_LEVELS.join(', ')}`);
  if (flags.mtaStsEndpoint !== undefined) hostPortOption(flags.mtaStsEndpoint, '--mta-sts-endpoint');
  for (const d of flags.dns) hostPortOption(d.includes(':') ? d : `${d}:53`, '--dns');
  let port = r.smtpPort;
  if (flags.smtpPort !== undefined) {
    port = Number(flags.smtpPort);
    if (!/^[0-9]+$/.test(flags.smtpPort) || port < 1 || port > 65535) throw new UsageError(`--smtp-port ${JSON.stringify(flags.smtpPort)}: expected a port 1-65535`);
  }
  const seconds = Number(flags.timeout);
  if (!Number.isFinite(seconds) || seconds <= 0) throw new UsageError(`--timeout ${JSON.stringify(flags.timeout)}: expected seconds > 0`);
  const caFile = flags.ca ?? r.ca;
  let ca: string | null = null;
  if (caFile !== null && caFile !== undefined) {
    try {
      ca = readFileSync(caFile, 'utf8');
    } catch (err) {
      throw new UsageError(`cannot read ${caFile}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  const dns = flags.dns.length > 0 ? flags.dns : r.dns;
  const overrides = {
    dns,
    mtaSts: { enabled: r.mtaSts.enabled && flags.mtaSts !== false, endpoint: flags.mtaStsEndpoint ?? r.mtaSts.endpoint },
    dane: { enabled: r.dane.enabled && flags.dane !== false },
    port,
  };
  const run = async (cache: MtaStsCache): Promise<Explanation> => {
    const ctx = relayPolicyContext(r, ca, cache, overrides);
    return explainDomain(domain, ctx, {
      connect: flags.connect === true,
      ...(flags.tls !== undefined ? { table: flags.tls as TlsLevel } : {}),
      helo: flags.helo ?? 'localhost',
      ...(ca !== null ? { tls: { ca } } : {}),
      timeouts: uniformTimeouts(Math.round(seconds * 1000)),
    });
  };
  const env = process.env[STORE_ENV];
  const useStore = flags.store !== undefined || flags.data !== undefined || (env !== undefined && env !== '');
  return useStore ? withStore(flags, run) : run(memoryMtaStsCache());
}

function explainText(e: Explanation): string {
  const out: string[] = [];
  out.push(`${e.domain}: MX ${e.mx.kind}, ${e.mx.secure ? 'DNSSEC-secure' : 'not DNSSEC-secure'}`);
  const s = e.mtaSts;
  if (!s.enabled) out.push('MTA-STS  off');
  else if (s.mode === null) out.push(`MTA-STS  no policy${s.failure ? ` (${s.failure})` : ''}`);
  else out.push(`MTA-STS  mode ${s.mode}, id ${s.id ?? '?'} (${s.from}), mx ${s.mx.join(', ')}, expires ${s.expiresAt ?? '?'}${s.failure ? `; ${s.failure}` : ''}`);
  out.push(`DANE     ${e.dane.enabled ? 'on' : 'off'}`);
  out.push(`table    ${e.table ?? 'no entry'}; default level ${e.defaultLevel}`);
  for (const h of e.hosts) {
    out.push(`mx ${h.host} (preference ${h.preference}): ${h.addresses.join(', ') || 'no address'}${h.addressesSecure ? ' (secure)' : ''}`);
    if (h.tlsa !== null) {
      out.push(`   TLSA ${h.tlsa.status}${h.tlsa.detail ? ` (${h.tlsa.detail})` : ''}`);
      for (const t of h.tlsa.records) out.push(`     ${t.record} ${t.usable ? 'usable' : `unusable: ${t.why ?? ''}`}`);
    }
    if (h.matchesPolicy !== null) out.push(`   MTA-STS: ${h.matchesPolicy ? 'matches' : 'does not match'} the policy`);
    out.push(`   ${h.allowed ? `level ${h.level}, certificate name ${h.verifyName}` : 'not used'} [${h.source}]`);
    out.push(`   rule: ${h.rule}`);
    for (const c of h.connect ?? []) out.push(`   connect ${c.address}: ${c.wouldDeliver ? 'would deliver' : 'would not deliver'}, reached ${c.reached}${c.protocol ? ` ${c.protocol}` : ''}${c.verifyError ? `, not verified: ${c.verifyError}` : ''}${c.error ? `; ${c.error}` : ''}`);
  }
  out.push(e.summary);
  return out.join('\n') + '\n';
}
